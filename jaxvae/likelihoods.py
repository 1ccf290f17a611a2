"""Likelihoods p_theta(x|z) for images: Bernoulli, Gaussian, discretized mixture of logistics.

Each is a :class:`Likelihood`: small pure functions that say how raw decoder outputs
``[..., H, W, F]`` become the parameters of p_theta(x|z), how those parameters score data
(the maths is in :mod:`jaxvae.distributions`), and what the model sees of a uint8 image:

================================  ========================  ==================================
likelihood                        the model's x             log p_theta(x|z)
================================  ========================  ==================================
``bernoulli``                     x ~ Bernoulli(v / 255)    binarized pixels (Burda et al.)
``gaussian``                      (v + u) / 256, u ~ U[0,1)  8-bit data via uniform dequantization
``discretized-logistic``          v / 127.5 - 1             8-bit data, exactly (PixelCNN++)
================================  ========================  ==================================

For the last two, ELBO and log p(x) are in nats of the 8-bit data, and bits/dim =
-log p(x) / (H W C ln 2) compares them with the literature.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import distributions as D
from jaxvae import rng
from jaxvae.config import Config
from jaxvae.data import dynamic_binarize


class Likelihood(NamedTuple):
  """The observation model p_theta(x|z) as pure functions.

  Attributes:
    name: one of :data:`jaxvae.config.LIKELIHOODS`.
    features: F, the decoder's output features per pixel.
    init: ``() -> params`` of the likelihood itself (e.g. a learned scale), maybe ``{}``.
    outputs: ``(params, raw [..., H, W, F]) -> distribution parameters`` (a pytree).
    log_prob: ``(x, outputs) -> [...]`` log p_theta(x|z), summed over pixels, in nats.
    mean: ``outputs -> [..., H, W, C]`` E[x|z] in [0, 1], for pictures.
    preprocess: ``(key, uint8 images) -> x``, the model's view of the data, drawn afresh
      at every use where it is random.
    eight_bit: whether log_prob is a likelihood of the 8-bit data (then bits/dim apply).
  """

  name: str
  features: int
  init: Callable[[], Any]
  outputs: Callable[[Any, jax.Array], Any]
  log_prob: Callable[[jax.Array, Any], jax.Array]
  mean: Callable[[Any], jax.Array]
  preprocess: Callable[[jax.Array, jax.Array], jax.Array]
  eight_bit: bool


def dequantize(key: jax.Array, images: jax.Array) -> jax.Array:
  """x = (v + u) / 256 with u ~ U[0, 1) per pixel: uint8 intensities to a density's support."""
  flat = images.reshape(images.shape[:-3] + (-1,))
  u = rng.uniform(key, flat.shape)
  return ((flat.astype(jnp.float32) + u) / 256.0).reshape(images.shape)


def bernoulli(channels: int = 1, binarization: str = "dynamic") -> Likelihood:
  """p_theta(x|z) = prod_pixels Bernoulli(x; sigmoid(l)), x binarized (:func:`distributions.bernoulli_log_prob`)."""
  if binarization == "dynamic":
    preprocess = dynamic_binarize
  else:  # the images are already one fixed 0/1 draw
    preprocess = lambda key, images: images.astype(jnp.float32)  # noqa: E731
  return Likelihood(
      name="bernoulli",
      features=channels,
      init=lambda: {},
      outputs=lambda params, raw: raw,
      log_prob=D.bernoulli_log_prob,
      mean=D.bernoulli_mean,
      preprocess=preprocess,
      eight_bit=False,
  )


def gaussian(image_shape: tuple[int, int, int], scale: str = "global", sigma: float = 0.1) -> Likelihood:
  """p_theta(x|z) = prod_pixels N(x; mu(z), sigma^2) on dequantized 8-bit intensities.

  Args:
    image_shape: (H, W, C) of x.
    scale: ``"fixed"`` (sigma as given), ``"global"`` (one learned log sigma) or
      ``"per-pixel"`` (a learned log sigma per pixel and channel, not a function of z).
    sigma: the fixed scale, and the initial one of the learned scales.
  """
  log_sigma = float(np.log(sigma))

  def init():
    if scale == "fixed":
      return {}
    shape = () if scale == "global" else tuple(image_shape)
    return {"log_scale": jnp.full(shape, log_sigma, jnp.float32)}

  def outputs(params, raw):
    log_scale = params["log_scale"] if scale != "fixed" else jnp.float32(log_sigma)
    return D.Gaussian(raw, jnp.broadcast_to(log_scale, raw.shape))

  return Likelihood(
      name="gaussian",
      features=image_shape[-1],
      init=init,
      outputs=outputs,
      log_prob=lambda x, g: D.gaussian_image_log_prob(x, g.mean, g.log_scale),
      mean=lambda g: jnp.clip(g.mean, 0.0, 1.0),
      preprocess=dequantize,
      eight_bit=True,
  )


def discretized_logistic(channels: int = 1, mixtures: int = 10) -> Likelihood:
  """p_theta(x|z): a discretized mixture of ``mixtures`` logistics per pixel (Salimans et al. 2017).

  Features per pixel: K mixture logits, then per channel K means and K log-scales, and for
  colour 3K channel-coupling coefficients (tanh): F = K (1 + 2C) (+ 3K if C = 3).
  """
  k, c = mixtures, channels
  if c not in (1, 3):
    raise ValueError(f"the discretized logistic mixture models 1 or 3 channels, not {c}")

  def outputs(params, raw):
    del params
    lead = raw.shape[:-1]
    logits = raw[..., :k]
    rest = raw[..., k : k + 2 * c * k].reshape(lead + (2, c, k))
    means, log_scales = rest[..., 0, :, :], jnp.maximum(rest[..., 1, :, :], -7.0)
    coeffs = jnp.tanh(raw[..., k + 2 * c * k :].reshape(lead + (c, k))) if c == 3 else jnp.zeros_like(means)
    return D.LogisticMixture(logits, means, log_scales, coeffs)

  return Likelihood(
      name="discretized-logistic",
      features=k * (1 + 2 * c) + (3 * k if c == 3 else 0),
      init=lambda: {},
      outputs=outputs,
      log_prob=D.discretized_logistic_mixture_log_prob,
      mean=D.logistic_mixture_mean,
      preprocess=lambda key, images: images.astype(jnp.float32) / 127.5 - 1.0,
      eight_bit=True,
  )


def make_likelihood(config: Config, image_shape: tuple[int, int, int] = (28, 28, 1)) -> Likelihood:
  """The likelihood of ``config.likelihood`` for images of ``image_shape``."""
  if config.likelihood == "gaussian":
    return gaussian(tuple(image_shape), config.gaussian_scale, config.gaussian_sigma)
  if config.likelihood == "discretized-logistic":
    return discretized_logistic(image_shape[-1], config.mixtures)
  return bernoulli(image_shape[-1], config.binarization)


def fixed_test_images(config: Config, images: np.ndarray) -> np.ndarray:
  """The fixed test set of ``config``'s likelihood: one draw, from ``binarization_seed``, float32.

  Bernoulli: one Bernoulli draw per pixel; Gaussian: one dequantization; discretized
  logistic: the deterministic scaling. Every run and every evaluation see the same set.
  """
  key = jax.random.fold_in(jax.random.key(config.binarization_seed), 1)
  if config.likelihood == "bernoulli":
    from jaxvae.data import static_binarize

    return static_binarize(images, key).astype(np.float32)
  return np.asarray(jax.jit(make_likelihood(config, images.shape[1:]).preprocess)(key, images), np.float32)
