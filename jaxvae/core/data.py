"""Data as a value: arrays ``[N, *event_shape]`` on the host, their checks, and binarization.

A :class:`Dataset` holds host numpy arrays: images ``[N, H, W, C]`` (uint8 0..255, bool, or
floats) or any other examples ``[N, D]``, ``[N, ...]`` (floats), with integer labels (-1 where
there are none). What the model sees of them (binarized, dequantized, scaled) is its
likelihood's business (:mod:`jaxvae.core.likelihoods`); the checks here turn bad arrays into
one-line errors before anything is written. Datasets by name (MNIST, TFDS, .npz, .npy, a folder of images) are read by
:mod:`jaxvae.runs.sources`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core import rng
from jaxvae.errors import JaxvaeError


class Dataset(NamedTuple):
  """A dataset as host arrays.

  Attributes:
    name: how to load it again (``"mnist"``, ``"tfds:NAME"``, ``"npz:PATH"``, ``"npy:PATH"``,
      ``"folder:PATH"``), or a label
      for arrays handed over in Python.
    train: ``[N, *event_shape]`` training examples.
    train_labels: ``[N]`` int32 (-1 where there are no labels).
    test: ``[M, *event_shape]`` test examples.
    test_labels: ``[M]`` int32.

  Example:
    >>> data = Dataset.from_arrays(train=np.random.randn(5000, 2), test=np.random.randn(500, 2))
    >>> data.event_shape
    (2,)
  """

  name: str
  train: np.ndarray
  train_labels: np.ndarray
  test: np.ndarray
  test_labels: np.ndarray

  @property
  def event_shape(self) -> tuple[int, ...]:
    """The shape of one example, e.g. (28, 28, 1) or (2,)."""
    return tuple(self.train.shape[1:])

  @classmethod
  def from_arrays(cls, train, test, train_labels=None, test_labels=None, name: str = "arrays") -> Dataset:
    """A dataset from any arrays ``[N, *event_shape]`` (labels default to -1)."""
    train, test = np.asarray(train), np.asarray(test)

    def labels(given, n):
      return np.full(n, -1, np.int32) if given is None else np.asarray(given).astype(np.int32).reshape(-1)

    return cls(name, train, labels(train_labels, len(train)), test, labels(test_labels, len(test)))


# ---------------------------------------------------------------------------
# Checks: every array a run reads goes through one of these.
# ---------------------------------------------------------------------------


def check_shape(array: np.ndarray, what: str, event_shape: tuple[int, ...] | None = None) -> np.ndarray:
  """A non-empty ``[N, *event_shape]`` array (``event_shape`` of at least one axis), else a one-line error."""
  array = np.asarray(array)
  if array.ndim < 2 or 0 in array.shape:
    raise JaxvaeError(
      f"{what} have shape {array.shape}: jaxvae needs a non-empty [N, ...] array "
      "(e.g. [N, H, W, C] images or [N, D] vectors)"
    )
  if event_shape is not None and tuple(array.shape[1:]) != tuple(event_shape):
    raise JaxvaeError(
      f"{what} have examples of shape {array.shape[1:]} but the model expects {tuple(event_shape)}: "
      "build the model for this data (or pass --image-size to resize images)"
    )
  if array.ndim == 4 and array.shape[1] in (1, 3, 4) and array.shape[3] not in (1, 3, 4):
    raise JaxvaeError(
      f"{what} have shape {array.shape}, channel-first [N, C, H, W] (PyTorch's layout): jaxvae reads images "
      "as [N, H, W, C]: pass x.transpose(0, 2, 3, 1)"
    )
  return array


def _finite(array: np.ndarray, what: str) -> None:
  if not np.all(np.isfinite(array)):
    raise JaxvaeError(f"{what} contain NaN or infinite values: clean or drop those examples")


def as_intensities(array: np.ndarray, what: str, likelihood: str = "bernoulli") -> np.ndarray:
  """Data for a likelihood of pixel intensities: uint8 0..255, bool (binary), or floats in [0, 1].

  Floats are rounded to uint8 intensities (exact for 0/1 data and for 8-bit data divided by 255).
  """
  array = check_shape(array, what)
  if array.dtype in (np.uint8, np.bool_):
    return array
  if np.issubdtype(array.dtype, np.floating):
    _finite(array, what)
    lo, hi = float(array.min()), float(array.max())
    if lo < 0.0 or hi > 1.0:
      raise JaxvaeError(
        f"{what} are floats in [{lo:g}, {hi:g}], and the {likelihood} likelihood models intensities in [0, 1] "
        "(or uint8 0..255): for real-valued data use --likelihood gaussian (in Python: "
        "likelihoods.gaussian(data_shape, eight_bit=False))"
      )
    return np.round(array * 255.0).astype(np.uint8)
  raise JaxvaeError(f"{what} have dtype {array.dtype}: give uint8 intensities 0..255 or floats in [0, 1]")


def as_uint8(array: np.ndarray, what: str, likelihood: str = "8-bit gaussian") -> np.ndarray:
  """8-bit data: uint8 0..255, or floats in [0, 1] (rounded to 0..255)."""
  array = check_shape(array, what)
  if array.dtype == np.bool_:
    raise JaxvaeError(f"{what} are binary (bool): model 8-bit data here, or binary data with --likelihood bernoulli")
  return as_intensities(array, what, likelihood)


def as_real(array: np.ndarray, what: str) -> np.ndarray:
  """Real-valued data: any finite numbers (floats keep their precision; integers become float32)."""
  array = check_shape(array, what)
  if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
    raise JaxvaeError(f"{what} have dtype {array.dtype}: give real numbers (float or integer arrays)")
  if not np.issubdtype(array.dtype, np.floating):
    array = array.astype(np.float32)
  _finite(array, what)
  return array


# ---------------------------------------------------------------------------
# Binarization.
# ---------------------------------------------------------------------------


def dynamic_binarize(key: jax.Array, images: jax.Array) -> jax.Array:
  """x ~ Bernoulli(pixel / 255), drawn afresh at every use (Burda et al. 2015).

  One fused kernel (:func:`jaxvae.core.rng.bernoulli_from_uint8`) on the flat view of
  the examples; P(x = 1) = pixel / 255 up to a factor 1 - 2^-32.

  Args:
    key: a PRNG key.
    images: ``[N, *event_shape]`` uint8 intensities.

  Returns:
    float32 0/1 values of the same shape.
  """
  flat = images.reshape(images.shape[:1] + (-1,)) if images.ndim > 1 else images  # a flat minor axis vectorizes on CPU
  return rng.bernoulli_from_uint8(key, flat).astype(jnp.float32).reshape(images.shape)


def static_binarize(images: np.ndarray, key: jax.Array) -> np.ndarray:
  """One fixed Bernoulli(pixel / 255) draw of every pixel, as a host bool array (already binary data).

  Drawn with JAX's counter-based PRNG, so the same key gives the same set on any platform.
  """
  return np.asarray(jax.jit(dynamic_binarize)(key, images)).astype(np.bool_)
