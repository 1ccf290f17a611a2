"""Datasets: the embedded MNIST (offline), any TFDS image dataset, and binarization.

Every dataset is held as ``uint8`` images ``[N, H, W, C]`` (0..255) and integer labels:
small enough for MNIST-sized data to live on the accelerator for the whole run.

MNIST: Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten
digits", the four standard IDX files, shipped in ``jaxvae/datasets/mnist`` under
CC BY-SA 3.0 (see the README there).
"""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import rng
from jaxvae.config import Config, JaxvaeError

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ImageDataset(NamedTuple):
  """A dataset of images (host numpy arrays).

  Attributes:
    name: its name as given to :func:`load_dataset`.
    train_images: ``[N, H, W, C]`` uint8.
    train_labels: ``[N]`` int32 (-1 where the dataset has no labels).
    test_images: ``[M, H, W, C]`` uint8.
    test_labels: ``[M]`` int32.
  """

  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_images.shape[1:])


def read_idx(data: bytes) -> np.ndarray:
  """Decodes an IDX file (the MNIST format): magic 0x0000 | dtype code | ndim, big-endian dims, data.

  Args:
    data: the uncompressed bytes.

  Returns:
    The array, with the file's shape and a native-endian dtype.
  """
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise JaxvaeError("not an IDX file (bad magic number): the MNIST files are damaged, reinstall jaxvae")
  ndim = data[3]
  dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[data[2]])
  offset = 4 + 4 * ndim
  if len(data) != offset + int(np.prod(dims)) * dtype.itemsize:
    raise JaxvaeError("IDX file has the wrong length: the MNIST files are damaged, reinstall jaxvae")
  return np.frombuffer(data, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist() -> ImageDataset:
  """MNIST from the IDX files inside the package: 60,000 + 10,000 images of 28x28x1, no network."""
  folder = importlib.resources.files("jaxvae") / "datasets" / "mnist"
  arrays = {}
  for key, filename in MNIST_FILES.items():
    with gzip.open(folder.joinpath(filename).open("rb")) as f:
      arrays[key] = read_idx(f.read())
  return ImageDataset(
      name="mnist",
      train_images=arrays["train_images"][..., None],
      train_labels=arrays["train_labels"].astype(np.int32),
      test_images=arrays["test_images"][..., None],
      test_labels=arrays["test_labels"].astype(np.int32),
  )


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
  """``[H, W, C]`` uint8 -> ``[size, size, C]``: a centre crop to a square, then an area-averaging resize."""
  from PIL import Image

  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  crop = image[top : top + side, left : left + side]
  if side == size:
    return crop
  pil = Image.fromarray(crop[..., 0] if crop.shape[-1] == 1 else crop)
  out = np.asarray(pil.resize((size, size), Image.Resampling.BOX))
  return out[..., None] if out.ndim == 2 else out


def _read_tfds_split(source, name: str, image_size: int | None) -> tuple[np.ndarray, np.ndarray]:
  images, labels = [], []
  for i in range(len(source)):
    example = source[i]
    image = np.asarray(example["image"])
    if image.ndim == 2:
      image = image[..., None]
    if image.dtype != np.uint8:
      raise JaxvaeError(f"TFDS dataset {name!r} has {image.dtype} images: jaxvae reads 8-bit (uint8) images")
    images.append(resize_image(image, image_size) if image_size else image)
    labels.append(int(example["label"]) if "label" in example else -1)
  if len({im.shape for im in images}) > 1:
    raise JaxvaeError(f"TFDS dataset {name!r} has images of several sizes: pass --image-size N to crop and resize them")
  return np.stack(images), np.asarray(labels, np.int32)


def load_tfds(name: str, data_dir: str | None = None, image_size: int | None = None) -> ImageDataset:
  """Any TFDS image dataset with an ``image`` feature, read with TFDS's random-access data source.

  Reading a prepared dataset needs no TensorFlow. Preparing one (its first use,
  online) encodes images with TensorFlow: with ``pip install 'jaxvae[prepare]'``
  this function prepares it in ``data_dir``; without, it says so.

  Args:
    name: a TFDS name such as ``fashion_mnist`` (optionally ``name:version``).
    data_dir: the TFDS data folder (TFDS's default when None).
    image_size: crop every image to a centred square and resize it to this size.
  """
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    raise JaxvaeError(f"TFDS has no dataset {name!r}: check the name in the TFDS catalog (e.g. tfds:fashion_mnist)") from None

  def read(split: str) -> tuple[np.ndarray, np.ndarray]:
    return _read_tfds_split(builder.as_data_source(split=split), name, image_size)

  try:
    train = read("train")
  except Exception as e:  # not prepared, or prepared in another file format.
    if builder.is_prepared() or importlib.util.find_spec("tensorflow") is None:
      raise JaxvaeError(
          f"TFDS dataset {name!r} cannot be read from {builder.data_dir} ({type(e).__name__}): prepare it once online "
          f"with `pip install 'jaxvae[prepare]'` and rerun, or pass --tfds-data-dir to a folder where it is prepared"
      ) from None
    builder.download_and_prepare()
    train = read("train")
  test_split = "test" if "test" in builder.info.splits else "validation"
  test = read(test_split)
  if train[0].ndim != 4:
    raise JaxvaeError(f"TFDS dataset {name!r} has images of shape {train[0].shape[1:]}: jaxvae needs [H, W, C] images")
  return ImageDataset(f"tfds:{name}", train[0], train[1], test[0], test[1])


def load_dataset(name: str, tfds_data_dir: str | None = None, image_size: int | None = None) -> ImageDataset:
  """``"mnist"`` (embedded) or ``"tfds:NAME"``, optionally resized; anything else is a :class:`JaxvaeError`."""
  if name == "mnist":
    data = load_mnist()
    if image_size and image_size != 28:
      resize = lambda images: np.stack([resize_image(im, image_size) for im in images])  # noqa: E731
      data = data._replace(train_images=resize(data.train_images), test_images=resize(data.test_images))
    return data
  if name.startswith("tfds:") and len(name) > 5:
    return load_tfds(name[5:], tfds_data_dir, image_size)
  raise JaxvaeError(f"dataset {name!r} is unknown: use 'mnist' or 'tfds:NAME' (e.g. tfds:fashion_mnist)")


def dynamic_binarize(key: jax.Array, images: jax.Array) -> jax.Array:
  """x ~ Bernoulli(pixel / 255), drawn afresh at every use (Burda et al. 2015).

  One fused kernel (:func:`jaxvae.rng.bernoulli_from_uint8`) on the flat view of
  the images; P(x = 1) = pixel / 255 up to a factor 1 - 2^-32.

  Args:
    key: a PRNG key.
    images: ``[..., H, W, C]`` uint8 intensities.

  Returns:
    float32 0/1 images of the same shape.
  """
  flat = images.reshape(images.shape[:-3] + (-1,))  # a flat minor axis vectorizes on CPU
  return rng.bernoulli_from_uint8(key, flat).astype(jnp.float32).reshape(images.shape)


def static_binarize(images: np.ndarray, key: jax.Array) -> np.ndarray:
  """One fixed Bernoulli(pixel / 255) draw of every pixel, as host uint8 0/1 images.

  Drawn with JAX's counter-based PRNG, so the same key gives the same set on any platform.
  """
  return np.asarray(jax.jit(dynamic_binarize)(key, images)).astype(np.uint8)


def check_images(images: np.ndarray, what: str) -> np.ndarray:
  """Checks images for the Bernoulli pipeline and returns them as uint8 intensities.

  Accepts ``[N, H, W, C]`` uint8 (0..255), or floats in [0, 1] (rounded to 0..255).
  Raises :class:`JaxvaeError` naming the problem and the fix for anything else.
  """
  images = np.asarray(images)
  if images.ndim != 4 or 0 in images.shape:
    raise JaxvaeError(f"{what} have shape {images.shape}: jaxvae needs a non-empty [N, H, W, C] array")
  if images.dtype == np.uint8:
    return images
  if np.issubdtype(images.dtype, np.floating):
    if not np.all(np.isfinite(images)):
      raise JaxvaeError(f"{what} contain NaN or infinite pixels: clean or drop those images")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
      raise JaxvaeError(
          f"{what} have values in [{lo:g}, {hi:g}]: Bernoulli data must lie in [0, 1] (or be uint8 0..255)"
      )
    return np.round(images * 255.0).astype(np.uint8)
  raise JaxvaeError(f"{what} have dtype {images.dtype}: give uint8 intensities 0..255 or floats in [0, 1]")


def prepare_test_set(config: Config, dataset: ImageDataset) -> np.ndarray:
  """The test set as evaluation reads it: ``[M, H, W, C]`` float32, fixed once.

  One draw from ``binarization_seed`` alone (a Bernoulli draw per pixel, or one
  dequantization, per :func:`jaxvae.likelihoods.fixed_test_images`), so every run
  (whatever its ``seed``) and every later evaluation see the same test set.
  """
  from jaxvae.likelihoods import fixed_test_images

  test = check_images(dataset.test_images[: config.n_test], "test images")
  return fixed_test_images(config, test)


def prepare_data(config: Config, dataset: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
  """The training images as the step reads them and the test set as evaluation reads it.

  Returns:
    ``train``: ``[N, H, W, C]`` uint8: intensities, or for static binarization of a
    Bernoulli model one fixed 0/1 draw;
    ``test``: ``[M, H, W, C]`` float32 (:func:`prepare_test_set`).
  """
  train = check_images(dataset.train_images[: config.n_train], "training images")
  if train.shape[0] < config.batch_size:
    raise JaxvaeError(
        f"batch_size={config.batch_size} is larger than the training set ({train.shape[0]} images): "
        "lower --batch-size or use more training images"
    )
  if config.net == "conv":
    factor = 2 ** len(config.conv_channels)
    if train.shape[1] % factor or train.shape[2] % factor:
      raise JaxvaeError(
          f"images of {train.shape[1]}x{train.shape[2]} do not halve {len(config.conv_channels)} times: "
          f"use --image-size with a multiple of {factor}, or fewer --conv-channels"
      )
  if config.likelihood == "discretized-logistic" and train.shape[-1] not in (1, 3):
    raise JaxvaeError(f"the discretized logistic mixture models 1 or 3 channels, not {train.shape[-1]}")
  if config.likelihood == "bernoulli" and config.binarization == "static":
    train = static_binarize(train, jax.random.fold_in(jax.random.key(config.binarization_seed), 0))
  return train, prepare_test_set(config, dataset)
