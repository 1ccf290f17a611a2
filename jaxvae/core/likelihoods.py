"""Likelihoods p_theta(x|z): Bernoulli, Gaussian, discretized mixture of logistics, or your own.

Each is a :class:`Likelihood`: small pure functions that say how the decoder's raw output
``[..., *output_shape]`` becomes the parameters of p_theta(x|z), how those parameters score
data (the maths is in :mod:`jaxvae.core.distributions`), and what the model sees of the stored data:

================================  ===========================  ===================================
likelihood                        the model's x                log p_theta(x|z)
================================  ===========================  ===================================
``bernoulli``                     x ~ Bernoulli(v / 255)       binarized data (Burda et al.)
``gaussian`` (8-bit data)         (v + u) / 256, u ~ U[0,1)    8-bit data via uniform dequantization
``gaussian`` (real-valued data)   the values                   a density of real vectors
``discretized-logistic``          v / 127.5 - 1                8-bit images, exactly (PixelCNN++)
================================  ===========================  ===================================

For 8-bit data, ELBO and log p(x) are in nats of the discrete data, and bits/dim =
-log p(x) / (D ln 2) compares them with the literature.

A likelihood of your own is a :class:`Likelihood` too: its log-density, its mean for pictures,
and how the stored data become x; hand it to :meth:`jaxvae.VAE.from_modules`. The built-in ones
are registered in :data:`LIKELIHOODS` under the names ``--likelihood`` accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core import distributions as D
from jaxvae.core import rng
from jaxvae.core.data import as_intensities, as_real, as_uint8, dynamic_binarize
from jaxvae.core.registry import Registry
from jaxvae.errors import JaxvaeError

LIKELIHOODS = Registry("likelihood")
GAUSSIAN_SCALES = ("fixed", "global", "per-pixel")


def _float_data(key: jax.Array, data: jax.Array) -> jax.Array:
  """Real-valued data as they are (integers as float32)."""
  del key
  return data if jnp.issubdtype(data.dtype, jnp.floating) else data.astype(jnp.float32)


class Likelihood(NamedTuple):
  """The observation model p_theta(x|z) as pure functions.

  Attributes:
    name: a short name (``"bernoulli"``, ...), shown in run folders.
    output_shape: the shape of the decoder's raw output for one example, e.g. (28, 28, 1)
      Bernoulli logits or (28, 28, F) per-pixel features.
    init: ``() -> params`` of the likelihood itself (e.g. a learned scale), maybe ``{}``;
      they live in ``params["likelihood"]``.
    outputs: ``(params, raw [..., *output_shape]) -> distribution parameters`` (a pytree).
    log_prob: ``(x, outputs) -> [...]`` log p_theta(x|z), summed over the event axes, in nats.
    mean: ``outputs -> [..., *data_shape]`` E[x|z], in [0, 1] for images (pictures).
    preprocess: ``(key, stored data [B, ...]) -> x [B, ...]`` float, the model's view of the
      data, drawn afresh at every use where it is random (default: the values, as floats).
    check: ``(host array [N, ...], what) -> array``: validates stored data (one-line
      :class:`JaxvaeError` naming the fix) and returns them as ``preprocess`` reads them
      (default: finite real numbers).
    eight_bit: whether log_prob is a likelihood of 8-bit data (then bits/dim apply).
    data_range: the range of x, for values that live in data space (the VampPrior's
      pseudo-inputs); None if unbounded.
    binarizes: whether x is a Bernoulli(v / 255) draw of each stored intensity v, so that x is
      0/1 and the draw can be made once for the whole training set (``binarization="static"``).
  """

  name: str
  output_shape: tuple[int, ...]
  init: Callable[[], Any]
  outputs: Callable[[Any, jax.Array], Any]
  log_prob: Callable[[jax.Array, Any], jax.Array]
  mean: Callable[[Any], jax.Array]
  preprocess: Callable[[jax.Array, jax.Array], jax.Array] = _float_data
  check: Callable[[np.ndarray, str], np.ndarray] = as_real
  eight_bit: bool = False
  data_range: tuple[float, float] | None = None
  binarizes: bool = False


def dequantize(key: jax.Array, images: jax.Array) -> jax.Array:
  """x = (v + u) / 256 with u ~ U[0, 1) per element: uint8 intensities to a density's support."""
  flat = images.reshape(images.shape[:1] + (-1,))
  u = rng.uniform(key, flat.shape)
  return ((flat.astype(jnp.float32) + u) / 256.0).reshape(images.shape)


def _binarize(key: jax.Array, data: jax.Array) -> jax.Array:
  """uint8 intensities: a fresh Bernoulli(v / 255) draw; bool (or float) data are x already."""
  if data.dtype == jnp.uint8:
    return dynamic_binarize(key, data)
  return data.astype(jnp.float32)


def bernoulli(data_shape: tuple[int, ...]) -> Likelihood:
  """p_theta(x|z) = prod_i Bernoulli(x_i; sigmoid(l_i)) (:func:`distributions.bernoulli_log_prob`).

  Stored data are uint8 intensities, binarized afresh at every use (x ~ Bernoulli(v / 255),
  dynamic binarization), or bool arrays, binary already (static binarization, binary data).
  The decoder outputs one logit per element: ``output_shape = data_shape``.
  """
  data_shape = tuple(data_shape)
  event_ndim = len(data_shape)
  return Likelihood(
    name="bernoulli",
    output_shape=data_shape,
    init=lambda: {},
    outputs=lambda params, raw: raw,
    log_prob=lambda x, logits: D.bernoulli_log_prob(x, logits, event_ndim),
    mean=D.bernoulli_mean,
    preprocess=_binarize,
    check=as_intensities,
    data_range=(0.0, 1.0),
    binarizes=True,
  )


def gaussian(
  data_shape: tuple[int, ...], scale: str = "global", sigma: float = 0.1, eight_bit: bool = True
) -> Likelihood:
  """p_theta(x|z) = prod_i N(x_i; mu_i(z), sigma_i^2): on dequantized 8-bit data, or on real values.

  Args:
    data_shape: the shape of one example.
    scale: ``"fixed"`` (sigma as given), ``"global"`` (one learned log sigma) or
      ``"per-pixel"`` (a learned log sigma per element, not a function of z).
    sigma: the fixed scale, and the initial one of the learned scales.
    eight_bit: the data are uint8 (x = (v + u) / 256, and log p is a bound on the discrete
      8-bit likelihood: :func:`distributions.gaussian_image_log_prob`); else real values.
  """
  if scale not in GAUSSIAN_SCALES:
    raise JaxvaeError(f"gaussian scale {scale!r} is unknown: use one of {', '.join(GAUSSIAN_SCALES)}")
  data_shape = tuple(data_shape)
  event_ndim = len(data_shape)
  log_sigma = float(np.log(sigma))
  bins = 256 if eight_bit else None

  def init():
    if scale == "fixed":
      return {}
    shape = () if scale == "global" else data_shape
    return {"log_scale": jnp.full(shape, log_sigma, jnp.result_type(float))}

  def outputs(params, raw):
    log_scale = params["log_scale"] if scale != "fixed" else jnp.asarray(log_sigma, raw.dtype)
    return D.Gaussian(raw, jnp.broadcast_to(log_scale, raw.shape))

  return Likelihood(
    name="gaussian",
    output_shape=data_shape,
    init=init,
    outputs=outputs,
    log_prob=lambda x, g: D.gaussian_image_log_prob(x, g.mean, g.log_scale, bins, event_ndim),
    mean=(lambda g: jnp.clip(g.mean, 0.0, 1.0)) if eight_bit else (lambda g: g.mean),
    preprocess=dequantize if eight_bit else _float_data,
    check=as_uint8 if eight_bit else as_real,
    eight_bit=eight_bit,
    data_range=(0.0, 1.0) if eight_bit else None,
  )


def discretized_logistic(data_shape: tuple[int, ...], mixtures: int = 10) -> Likelihood:
  """p_theta(x|z): a discretized mixture of ``mixtures`` logistics per pixel (Salimans et al. 2017).

  Images ``[H, W, C]`` with C = 1 or 3. Features per pixel: K mixture logits, then per
  channel K means and K log-scales, and for colour 3K channel-coupling coefficients (tanh):
  F = K (1 + 2C) (+ 3K if C = 3), so ``output_shape = (H, W, F)``.
  """
  data_shape = tuple(data_shape)
  if len(data_shape) != 3 or data_shape[-1] not in (1, 3):
    raise JaxvaeError(
      f"the discretized logistic mixture models images [H, W, C] with 1 or 3 channels, "
      f"not examples of shape {data_shape}"
    )
  k, c = mixtures, data_shape[-1]

  def outputs(params, raw):
    del params
    lead = raw.shape[:-1]
    logits = raw[..., :k]
    rest = raw[..., k : k + 2 * c * k].reshape(lead + (2, c, k))
    means, log_scales = rest[..., 0, :, :], jnp.maximum(rest[..., 1, :, :], -7.0)
    coeffs = jnp.tanh(raw[..., k + 2 * c * k :].reshape(lead + (c, k))) if c == 3 else jnp.zeros_like(means)
    return D.LogisticMixture(logits, means, log_scales, coeffs)

  features = k * (1 + 2 * c) + (3 * k if c == 3 else 0)
  return Likelihood(
    name="discretized-logistic",
    output_shape=data_shape[:2] + (features,),
    init=lambda: {},
    outputs=outputs,
    log_prob=D.discretized_logistic_mixture_log_prob,
    mean=D.logistic_mixture_mean,
    preprocess=lambda key, images: images.astype(jnp.float32) / 127.5 - 1.0,
    check=as_uint8,
    eight_bit=True,
    data_range=(-1.0, 1.0),
  )


def bits_per_dim(log_p: float, data_shape: tuple[int, ...]) -> float:
  """-log p / (D ln 2): nats per example as bits per dimension."""
  return -log_p / (math.prod(data_shape) * math.log(2.0))


# ---------------------------------------------------------------------------
# The built-in likelihoods, by the names a config gives.
# ---------------------------------------------------------------------------

LIKELIHOODS.register("bernoulli", bernoulli, help="(binarized data)")


@LIKELIHOODS.register("gaussian", help="(8-bit data dequantized, or real-valued data)")
def _gaussian(data_shape: tuple[int, ...], dtype=np.uint8, gaussian_scale: str = "global", gaussian_sigma: float = 0.1):
  """``--likelihood gaussian``: of 8-bit data, unless the stored data are floats (then of real values)."""
  eight_bit = not np.issubdtype(np.dtype(dtype), np.floating)
  return gaussian(data_shape, gaussian_scale, gaussian_sigma, eight_bit=eight_bit)


LIKELIHOODS.register("discretized-logistic", discretized_logistic, help="(8-bit data)")
