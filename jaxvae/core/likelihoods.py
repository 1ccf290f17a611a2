"""Likelihoods p_theta(x|z): Bernoulli, continuous Bernoulli, Gaussian, discretized logistic mixture, or your own.

Each is a :class:`Likelihood`: small pure functions that say how the decoder's raw output
``[..., *output_shape]`` becomes the parameters of p_theta(x|z), how those parameters score
data (the maths is in :mod:`jaxvae.core.distributions`), and what the model sees of the stored data:

================================  ===========================  ===================================
likelihood                        the model's x                log p_theta(x|z)
================================  ===========================  ===================================
``bernoulli``                     x ~ Bernoulli(v / 255)       binarized data (Burda et al.)
``continuous-bernoulli``          v / 255, or the values       a density on [0, 1]^D (intensities)
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

from jaxvae.core import distributions as D, rng
from jaxvae.core.data import as_intensities, as_real, as_uint8, check_shape, dynamic_binarize
from jaxvae.core.registry import Registry
from jaxvae.errors import JaxvaeError

#: The built-in likelihoods p_theta(x|z) by the names ``--likelihood`` accepts (factories returning a
#: :class:`Likelihood`).
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
  """p_theta(x|z) = prod_i Bernoulli(x_i; sigmoid(l_i)) (:func:`jaxvae.bernoulli_log_prob`).

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
    check=lambda array, what: as_uint8(array, what, "discretized-logistic"),
    eight_bit=True,
    data_range=(-1.0, 1.0),
  )


def _log_normalizer(logits: jax.Array) -> jax.Array:
  """log C(lambda) of the continuous Bernoulli, lambda = sigmoid(l), stably for every logit l.

  C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) = l / tanh(l / 2)  (C = 2 at l = 0), so
  log C = log|l| - log tanh(|l| / 2), with log tanh(a / 2) = log(-expm1(-a)) - log1p(exp(-a));
  for |l| < 0.1, where the two logs' gradients cancel, the series log 2 + l^2/12 - 7 l^4/1440 + 31 l^6/90720.
  """
  small = jnp.abs(logits) < 0.1
  a = jnp.abs(jnp.where(small, 1.0, logits))
  exact = jnp.log(a) - (jnp.log(-jnp.expm1(-a)) - jnp.log1p(jnp.exp(-a)))
  series = math.log(2.0) + logits**2 / 12.0 - 7.0 * logits**4 / 1440.0 + 31.0 * logits**6 / 90720.0
  return jnp.where(small, series, exact)


def _continuous_bernoulli_mean(logits: jax.Array) -> jax.Array:
  """E[x] = lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda)) = 1/2 + 1 / (2 tanh(l/2)) - 1 / l (1/2 at l = 0);
  for |l| < 0.1, where the exact form cancels, the series 1/2 + l/12 - l^3/720 + l^5/30240."""
  small = jnp.abs(logits) < 0.1
  l = jnp.where(small, 1.0, logits)
  exact = 0.5 + 0.5 / jnp.tanh(0.5 * l) - 1.0 / l
  return jnp.where(small, 0.5 + logits / 12.0 - logits**3 / 720.0 + logits**5 / 30240.0, exact)


def _unit_interval(array: np.ndarray, what: str) -> np.ndarray:
  """Data on [0, 1]: uint8 intensities (read as v / 255), bool, or floats in [0, 1] (kept as they are)."""
  array = check_shape(array, what)
  if array.dtype in (np.uint8, np.bool_):
    return array
  if not np.issubdtype(array.dtype, np.floating):
    raise JaxvaeError(f"{what} have dtype {array.dtype}: give uint8 intensities 0..255 or floats in [0, 1]")
  lo, hi = float(np.min(array)), float(np.max(array))
  if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
    raise JaxvaeError(
      f"{what} have values in [{lo:g}, {hi:g}]: the continuous Bernoulli models data in [0, 1]; rescale them, "
      "or use --likelihood gaussian for real values"
    )
  return array


def _to_unit_interval(key: jax.Array, data: jax.Array) -> jax.Array:
  """x = v / 255 for uint8 intensities; bool and float data are x as they are."""
  del key
  return data.astype(jnp.float32) / 255.0 if data.dtype == jnp.uint8 else data.astype(jnp.result_type(float))


def continuous_bernoulli(data_shape: tuple[int, ...]) -> Likelihood:
  """p_theta(x|z) = prod_i C(lambda_i) lambda_i^x_i (1 - lambda_i)^(1 - x_i) for x_i in [0, 1], lambda_i = sigmoid(l_i).

  The continuous Bernoulli of Loaiza-Ganem & Cunningham (2019): the Bernoulli "likelihood" that
  VAEs often put on grey levels is not a density on [0, 1] (it integrates to less than one);
  the normalizer C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) makes it one, so the ELBO
  is a bound on a log-density of the data as they are, without binarization:

    log p(x | l) = sum_i [ x_i l_i - softplus(l_i) + log C(l_i) ],   C(l) = l / tanh(l / 2).

  Its mean, E[x] = lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda)), is what pictures show.
  Stored data are uint8 intensities (x = v / 255) or floats in [0, 1]; the decoder outputs one
  logit per element: ``output_shape = data_shape``. x is continuous, so bits/dim do not apply.

  References:
    G. Loaiza-Ganem, J. P. Cunningham. The continuous Bernoulli: fixing a pervasive error in
    variational autoencoders. NeurIPS 2019.
  """
  data_shape = tuple(data_shape)
  event_ndim = len(data_shape)

  def log_prob(x, logits):
    return D.bernoulli_log_prob(x, logits, event_ndim) + jnp.sum(
      D.flatten_event(_log_normalizer(logits), event_ndim), -1
    )

  return Likelihood(
    name="continuous-bernoulli",
    output_shape=data_shape,
    init=lambda: {},
    outputs=lambda params, raw: raw,
    log_prob=log_prob,
    mean=_continuous_bernoulli_mean,
    preprocess=_to_unit_interval,
    check=_unit_interval,
    data_range=(0.0, 1.0),
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
LIKELIHOODS.register("continuous-bernoulli", continuous_bernoulli, help="(intensities in [0, 1] as they are)")
