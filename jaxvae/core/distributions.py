"""Distributions as small pure functions: sample, log-density, KL.

Conventions. A diagonal Gaussian is a :class:`Gaussian` (mean and log standard
deviation, both ``[..., d]``); its log-density and KL are summed over the last
(latent) axis. A likelihood over data takes ``x`` of shape ``[..., *event_shape]``
and sums over the ``event_ndim`` event axes (3 for images ``[H, W, C]``, 1 for
vectors). Every value is in nats.

References:
  Kingma & Welling (2014), "Auto-Encoding Variational Bayes", arXiv:1312.6114,
  Appendix B (the Gaussian KL) and C (Bernoulli and Gaussian MLPs).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxvae.core import rng

LOG_2PI = math.log(2.0 * math.pi)


class Gaussian(NamedTuple):
  """A diagonal Gaussian N(mean, diag(exp(log_scale)^2)).

  Attributes:
    mean: ``[..., d]`` float, the mean mu.
    log_scale: ``[..., d]`` float, log sigma (the log standard deviation).
  """

  mean: jax.Array
  log_scale: jax.Array


def flatten_event(values: jax.Array, event_ndim: int = 3) -> jax.Array:
  """``[..., *event_shape] -> [..., prod(event_shape)]`` (a free reshape), e.g. ``[..., H*W*C]``.

  Per-element terms are computed and summed on the flat view: XLA's CPU backend
  vectorizes a flat minor axis, not a minor axis of size C = 1 (several times
  faster for MNIST-shaped arrays).
  """
  return values.reshape(values.shape[: values.ndim - event_ndim] + (-1,))


def standard_normal(shape: tuple[int, ...], dtype=jnp.float32) -> Gaussian:
  """The standard normal N(0, I) as a :class:`Gaussian` of the given shape."""
  zeros = jnp.zeros(shape, dtype)
  return Gaussian(zeros, zeros)


def gaussian_sample(key: jax.Array, q: Gaussian, sample_shape: tuple[int, ...] = ()) -> jax.Array:
  """Reparameterized sample z = mu + sigma * eps, eps ~ N(0, I).

  The sample is a differentiable function of (mu, log sigma): the
  reparameterization trick of Kingma & Welling (2014), Section 2.4.

  Args:
    key: a PRNG key.
    q: the Gaussian, ``[..., d]``.
    sample_shape: leading shape of independent draws.

  Returns:
    ``[*sample_shape, ..., d]`` samples.
  """
  shape = sample_shape + q.mean.shape
  eps = rng.normal(key, shape, q.mean.dtype)
  return jnp.broadcast_to(q.mean, shape) + jnp.broadcast_to(jnp.exp(q.log_scale), shape) * eps


def gaussian_log_prob(q: Gaussian, z: jax.Array) -> jax.Array:
  """log N(z; mu, diag(sigma^2)), summed over the last axis.

  log q(z) = -1/2 sum_i [ ((z_i - mu_i) / sigma_i)^2 + 2 log sigma_i + log(2 pi) ]

  Args:
    q: the Gaussian, ``[..., d]``.
    z: ``[..., d]``, of the same rank as ``q``'s fields (size-1 axes broadcast).

  Returns:
    ``[...]`` log-densities in nats.
  """
  u = (z - q.mean) * jnp.exp(-q.log_scale)
  return -0.5 * jnp.sum(u * u + 2.0 * q.log_scale + LOG_2PI, axis=-1)


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
  """log N(z; 0, I) = -1/2 sum_i (z_i^2 + log(2 pi)), summed over the last axis."""
  return -0.5 * jnp.sum(z * z + LOG_2PI, axis=-1)


def gaussian_kl(q: Gaussian, p: Gaussian) -> jax.Array:
  """Closed-form KL(q || p) between diagonal Gaussians, summed over the last axis.

  KL = sum_i [ log sigma_p,i - log sigma_q,i
               + (sigma_q,i^2 + (mu_q,i - mu_p,i)^2) / (2 sigma_p,i^2) - 1/2 ]

  Args:
    q: ``[..., d]``.
    p: ``[..., d]``, of the same rank as ``q`` (size-1 axes broadcast).

  Returns:
    ``[...]`` KL divergences in nats, >= 0.
  """
  return jnp.sum(gaussian_kl_per_dim(q, p), axis=-1)


def gaussian_kl_per_dim(q: Gaussian, p: Gaussian) -> jax.Array:
  """Closed-form KL(q || p) of each dimension of diagonal Gaussians: ``[..., d]`` (summed: :func:`gaussian_kl`)."""
  var_ratio = jnp.exp(2.0 * (q.log_scale - p.log_scale))
  t = (q.mean - p.mean) * jnp.exp(-p.log_scale)
  return 0.5 * (var_ratio + t * t - 1.0 - 2.0 * (q.log_scale - p.log_scale))


def gaussian_kl_to_standard_normal_per_dim(q: Gaussian) -> jax.Array:
  """Closed-form KL(q || N(0, I)) of each dimension: ``[..., d]``, each >= 0.

  KL_i = 1/2 [ mu_i^2 + sigma_i^2 - 1 - 2 log sigma_i ]
  (Kingma & Welling 2014, Appendix B, with the sign of -D_KL in their eq. 10.)
  """
  return 0.5 * (q.mean * q.mean + jnp.exp(2.0 * q.log_scale) - 1.0 - 2.0 * q.log_scale)


def gaussian_kl_to_standard_normal(q: Gaussian) -> jax.Array:
  """Closed-form KL(q || N(0, I)) = sum_i KL_i, summed over the last axis: ``[...]`` nats."""
  return jnp.sum(gaussian_kl_to_standard_normal_per_dim(q), axis=-1)


def bernoulli_log_prob(x: jax.Array, logits: jax.Array, event_ndim: int = 3) -> jax.Array:
  """log Bernoulli(x; sigmoid(l)) from logits l, summed over the event axes.

  In nats::

    log p(x | l) = sum_pixels [ x l - softplus(l) ]
                 = sum_pixels [ x log sigmoid(l) + (1 - x) log sigmoid(-l) ],

  with ``softplus(l) = max(l, 0) + log(1 + exp(-|l|))``, which is finite for every
  finite l (no log(0) from a saturated sigmoid).

  Args:
    x: ``[..., *event_shape]`` with values in {0, 1} (float), e.g. ``[..., H, W, C]``.
    logits: the same shape as ``x``.
    event_ndim: the number of event axes (3 for images).

  Returns:
    ``[...]`` log-likelihoods in nats.
  """
  x, logits = flatten_event(x, event_ndim), flatten_event(logits, event_ndim)
  softplus = jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  return jnp.sum(x * logits - softplus, axis=-1)


def bernoulli_mean(logits: jax.Array) -> jax.Array:
  """E[x] = sigmoid(l), the pixel intensities a Bernoulli decoder shows."""
  return jax.nn.sigmoid(logits)


def bernoulli_sample(key: jax.Array, probs: jax.Array, dtype=jnp.float32) -> jax.Array:
  """x ~ Bernoulli(probs), elementwise, as ``dtype`` 0/1 values."""
  return jax.random.bernoulli(key, probs).astype(dtype)


def gaussian_mixture_log_prob(
  z: jax.Array, means: jax.Array, log_scales: jax.Array, log_weights: jax.Array
) -> jax.Array:
  """log sum_k pi_k N(z; mu_k, diag(sigma_k^2)) for a mixture of K diagonal Gaussians.

  log N(z; mu_k, sigma_k) = -1/2 sum_i [ z_i^2 a_ki - 2 z_i mu_ki a_ki + mu_ki^2 a_ki ]
                            - sum_i log sigma_ki - d/2 log(2 pi),      a_ki = sigma_ki^-2,

  so the [N, K] table of component log-densities is two matrix products, never an
  [N, K, d] array: memory stays bounded for thousands of components and samples, and on
  a CPU it is 35x faster than forming the differences (forward and backward, K = 500).
  The products run at full float32 precision (no TF32/bf16 passes on accelerators), with
  coordinates taken relative to the components' centroid, and the squared distance is
  floored at 0: the expansion cancels when a component is much narrower than its
  distance from the origin, and an optimizer would otherwise exploit a negative
  "distance" (log p(z) -> +inf).

  Args:
    z: ``[..., d]`` points.
    means, log_scales: ``[K, d]`` the components.
    log_weights: ``[K]`` log pi_k (normalized: logsumexp = 0).

  Returns:
    ``[...]`` log-densities in nats.
  """
  d = z.shape[-1]
  center = jax.lax.stop_gradient(jnp.mean(means, axis=0, keepdims=True))  # [1, d]
  flat = z.reshape(-1, d) - center
  mu = means - center
  a = jnp.exp(-2.0 * log_scales)  # [K, d]
  hi = jax.lax.Precision.HIGHEST
  quad = (
    jnp.matmul(flat * flat, a.T, precision=hi)
    - 2.0 * jnp.matmul(flat, (mu * a).T, precision=hi)
    + jnp.sum(mu * mu * a, axis=-1)[None]
  )
  log_comp = -0.5 * jnp.maximum(quad, 0.0) - jnp.sum(log_scales, axis=-1)[None] - 0.5 * d * LOG_2PI + log_weights[None]
  return jax.nn.logsumexp(log_comp, axis=-1).reshape(z.shape[:-1])


def gaussian_image_log_prob(
  x: jax.Array, mean: jax.Array, log_scale: jax.Array, bins: int | None = 256, event_ndim: int = 3
) -> jax.Array:
  """log-likelihood of data under a diagonal Gaussian density, summed over the event axes.

  Real-valued data (``bins=None``): sum_i log N(x_i; mu_i, sigma_i^2).

  8-bit data (``bins=256``): the data are x_int in {0..255}; the model sees
  x = (x_int + u) / bins, u ~ U[0, 1) (uniform dequantization, Theis et al. 2016). For a
  density p on [0, 1]^D,

    log P(x_int) >= E_u[ log p(x) ] - D log(bins),

  so sum_i [ log N(x_i; mu_i, sigma_i^2) ] - D log(bins) is a bound in nats of the discrete
  8-bit data, comparable with :func:`discretized_logistic_mixture_log_prob`.

  Args:
    x: ``[..., *event_shape]``: dequantized intensities in [0, 1), or real values.
    mean, log_scale: of the same shape.
    bins: the number of values of the discrete data, or None for real-valued data.
    event_ndim: the number of event axes (3 for images).

  Returns:
    ``[...]`` nats.
  """
  flat = lambda v: flatten_event(v, event_ndim)  # noqa: E731
  x, mean, log_scale = flat(x), flat(mean), flat(log_scale)
  u = (x - mean) * jnp.exp(-log_scale)
  per_pixel = -0.5 * (u * u + LOG_2PI) - log_scale
  if bins is not None:
    per_pixel = per_pixel - math.log(bins)
  return jnp.sum(per_pixel, axis=-1)


class LogisticMixture(NamedTuple):
  """Parameters of a discretized mixture of logistics per pixel (PixelCNN++), K components.

  Attributes:
    logit_weights: ``[..., H, W, K]`` mixture logits (shared by the channels of a pixel).
    means: ``[..., H, W, C, K]`` in the data range [-1, 1].
    log_scales: ``[..., H, W, C, K]``.
    coeffs: ``[..., H, W, C, K]`` channel coupling for C = 3: the mean of green is
      mu_g + c_0 x_red, of blue mu_b + c_1 x_red + c_2 x_green (zeros for C = 1).
  """

  logit_weights: jax.Array
  means: jax.Array
  log_scales: jax.Array
  coeffs: jax.Array


def discretized_logistic_mixture_log_prob(x: jax.Array, mix: LogisticMixture, bins: int = 256) -> jax.Array:
  """log P(x) of 8-bit images under a discretized mixture of logistics, summed over pixels.

  With x scaled to [-1, 1] (x = x_int / 127.5 - 1), bin half-width h = 1 / (bins - 1), and
  sigma(.) the logistic CDF, one channel's probability under component k is

    P(x | k) = sigma((x + h - mu_k) / s_k) - sigma((x - h - mu_k) / s_k),

  with the edge bins taking all the mass below -1 + h or above 1 - h:
  P(x = -1 | k) = sigma((-1 + h - mu_k) / s_k),  P(x = 1 | k) = 1 - sigma((1 - h - mu_k) / s_k).
  A pixel's channels share the mixture weight; for colour, the green and blue means depend
  linearly on the red and green values (Salimans et al. 2017). The sum over the 256 values
  of every channel is 1 exactly (tested).

  Args:
    x: ``[..., H, W, C]`` in [-1, 1], on the grid of 8-bit values.
    mix: :class:`LogisticMixture` parameters.

  Returns:
    ``[...]`` nats.
  """
  h = 1.0 / (bins - 1)
  xc = x[..., None]  # [..., H, W, C, 1]
  c = x.shape[-1]
  means = mix.means
  if c == 3:
    r, g = xc[..., 0:1, :], xc[..., 1:2, :]
    m = mix.means
    cf = mix.coeffs
    means = jnp.concatenate(
      [
        m[..., 0:1, :],
        m[..., 1:2, :] + cf[..., 0:1, :] * r,
        m[..., 2:3, :] + cf[..., 1:2, :] * r + cf[..., 2:3, :] * g,
      ],
      axis=-2,
    )
  inv_s = jnp.exp(-mix.log_scales)
  centred = xc - means
  plus, minus = inv_s * (centred + h), inv_s * (centred - h)
  cdf_delta = jax.nn.sigmoid(plus) - jax.nn.sigmoid(minus)
  log_cdf_plus = plus - jax.nn.softplus(plus)  # log sigma(plus): the lowest bin
  log_one_minus_cdf_minus = -jax.nn.softplus(minus)  # log(1 - sigma(minus)): the highest bin
  # Where the bin is too narrow for the difference of CDFs, use the density at the centre times 2h.
  mid = inv_s * centred
  log_pdf_mid = mid - mix.log_scales - 2.0 * jax.nn.softplus(mid) + math.log(2.0 * h)
  log_mid = jnp.where(cdf_delta > 1e-5, jnp.log(jnp.maximum(cdf_delta, 1e-12)), log_pdf_mid)
  log_probs = jnp.where(xc < -0.999, log_cdf_plus, jnp.where(xc > 0.999, log_one_minus_cdf_minus, log_mid))
  log_probs = jnp.sum(log_probs, axis=-2) + jax.nn.log_softmax(mix.logit_weights, axis=-1)  # [..., H, W, K]
  per_pixel = jax.nn.logsumexp(log_probs, axis=-1)  # [..., H, W]
  return jnp.sum(per_pixel.reshape(per_pixel.shape[:-2] + (-1,)), axis=-1)


def logistic_mixture_mean(mix: LogisticMixture) -> jax.Array:
  """The mixture's mean intensity per channel, mapped from [-1, 1] to [0, 1] for display.

  E[x] = sum_k pi_k mu_k per channel (the colour coupling's contribution is left out).
  """
  weights = jax.nn.softmax(mix.logit_weights, axis=-1)[..., None, :]
  mean = jnp.sum(weights * jnp.clip(mix.means, -1.0, 1.0), axis=-1)
  return (mean + 1.0) / 2.0
