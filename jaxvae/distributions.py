"""Distributions as small pure functions: sample, log-density, KL.

Conventions. A diagonal Gaussian is a :class:`Gaussian` (mean and log standard
deviation, both ``[..., d]``); its log-density and KL are summed over the last
(latent) axis. A likelihood over images takes ``x`` of shape ``[..., H, W, C]``
and sums over the three image axes. Every value is in nats.

References:
  Kingma & Welling (2014), "Auto-Encoding Variational Bayes", arXiv:1312.6114,
  Appendix B (the Gaussian KL) and C (Bernoulli and Gaussian MLPs).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxvae import rng

LOG_2PI = math.log(2.0 * math.pi)


class Gaussian(NamedTuple):
  """A diagonal Gaussian N(mean, diag(exp(log_scale)^2)).

  Attributes:
    mean: ``[..., d]`` float, the mean mu.
    log_scale: ``[..., d]`` float, log sigma (the log standard deviation).
  """

  mean: jax.Array
  log_scale: jax.Array


def flatten_image(values: jax.Array) -> jax.Array:
  """``[..., H, W, C] -> [..., H*W*C]`` (a free reshape).

  Per-pixel terms are computed and summed on the flat view: XLA's CPU backend
  vectorizes a flat minor axis, not a minor axis of size C = 1 (several times
  faster for MNIST-shaped arrays).
  """
  return values.reshape(values.shape[:-3] + (-1,))


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
  var_ratio = jnp.exp(2.0 * (q.log_scale - p.log_scale))
  t = (q.mean - p.mean) * jnp.exp(-p.log_scale)
  return 0.5 * jnp.sum(var_ratio + t * t - 1.0 - 2.0 * (q.log_scale - p.log_scale), axis=-1)


def gaussian_kl_to_standard_normal_per_dim(q: Gaussian) -> jax.Array:
  """Closed-form KL(q || N(0, I)) of each dimension: ``[..., d]``, each >= 0.

  KL_i = 1/2 [ mu_i^2 + sigma_i^2 - 1 - 2 log sigma_i ]
  (Kingma & Welling 2014, Appendix B, with the sign of -D_KL in their eq. 10.)
  """
  return 0.5 * (q.mean * q.mean + jnp.exp(2.0 * q.log_scale) - 1.0 - 2.0 * q.log_scale)


def gaussian_kl_to_standard_normal(q: Gaussian) -> jax.Array:
  """Closed-form KL(q || N(0, I)) = sum_i KL_i, summed over the last axis: ``[...]`` nats."""
  return jnp.sum(gaussian_kl_to_standard_normal_per_dim(q), axis=-1)


def bernoulli_log_prob(x: jax.Array, logits: jax.Array) -> jax.Array:
  """log Bernoulli(x; sigmoid(l)) from logits l, summed over the image axes.

  log p(x | l) = sum_pixels [ x l - softplus(l) ]
               = sum_pixels [ x log sigmoid(l) + (1 - x) log sigmoid(-l) ],
  with softplus(l) = max(l, 0) + log(1 + exp(-|l|)), which is finite for every
  finite l (no log(0) from a saturated sigmoid).

  Args:
    x: ``[..., H, W, C]`` with values in {0, 1} (float).
    logits: ``[..., H, W, C]``, the same shape as ``x``.

  Returns:
    ``[...]`` log-likelihoods in nats.
  """
  x, logits = flatten_image(x), flatten_image(logits)
  softplus = jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  return jnp.sum(x * logits - softplus, axis=-1)


def bernoulli_mean(logits: jax.Array) -> jax.Array:
  """E[x] = sigmoid(l), the pixel intensities a Bernoulli decoder shows."""
  return jax.nn.sigmoid(logits)


def bernoulli_sample(key: jax.Array, probs: jax.Array, dtype=jnp.float32) -> jax.Array:
  """x ~ Bernoulli(probs), elementwise, as ``dtype`` 0/1 values."""
  return jax.random.bernoulli(key, probs).astype(dtype)
