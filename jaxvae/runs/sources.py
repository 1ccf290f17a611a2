"""Datasets by name: the embedded MNIST, any prepared TFDS image dataset, an .npz file.

``load_dataset("mnist" | "tfds:NAME" | "npz:PATH")`` returns a :class:`jaxvae.Dataset` of host
arrays; what a model sees of them is its likelihood's business (:mod:`jaxvae.core.likelihoods`).
A config's ``dataset`` names one of these (:func:`jaxvae.runs.build.load_data`).

MNIST: Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits",
the four standard IDX files, shipped in ``jaxvae/datasets/mnist`` under CC BY-SA 3.0.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import importlib.resources
import importlib.util
import io
import os

import numpy as np

from jaxvae.core.data import Dataset
from jaxvae.errors import JaxvaeError, first_line

MNIST_FILES = {
  "train_images": "train-images-idx3-ubyte.gz",
  "train_labels": "train-labels-idx1-ubyte.gz",
  "test_images": "t10k-images-idx3-ubyte.gz",
  "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
READ_THREADS = os.cpu_count() or 1  # threads that read and decode TFDS records


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


def load_mnist() -> Dataset:
  """MNIST from the IDX files inside the package: 60,000 + 10,000 images of 28x28x1, no network."""
  folder = importlib.resources.files("jaxvae") / "datasets" / "mnist"
  arrays = {}
  for key, filename in MNIST_FILES.items():
    with gzip.open(folder.joinpath(filename).open("rb")) as f:
      arrays[key] = read_idx(f.read())
  return Dataset(
    name="mnist",
    train=arrays["train_images"][..., None],
    train_labels=arrays["train_labels"].astype(np.int32),
    test=arrays["test_images"][..., None],
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


@contextlib.contextmanager
def _quiet_absl():
  """TFDS logs absl warnings (OpenCV, dataset_info.json) on every read: only errors while jaxvae reads."""
  from absl import logging as absl_logging

  level = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    yield
  finally:
    absl_logging.set_verbosity(level)


def _image(encoded, name: str, image_size: int | None) -> np.ndarray:
  """One record's image as ``[H, W, C]`` uint8: PNG/JPEG bytes decoded with PIL, or an array as TFDS gave it."""
  if isinstance(encoded, bytes):
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(encoded)))
  else:
    image = np.asarray(encoded)
  if image.ndim == 2:
    image = image[..., None]
  if image.dtype != np.uint8:
    raise JaxvaeError(f"TFDS dataset {name!r} has {image.dtype} images: jaxvae reads 8-bit (uint8) images")
  return resize_image(image, image_size) if image_size else image


def _read_tfds_split(builder, split: str, name: str, image_size: int | None, limit: int | None):
  """The first ``limit`` records of a split as ``(images [n, H, W, C] uint8, labels [n] int32)``.

  Records are read in batches of 1024 (array_record reads a batch in one call, 20x faster per
  record than one by one) with their image bytes left encoded, and each batch is decoded with
  PIL, batches in parallel threads. Data sources that cannot read batches or skip decoding
  (``tfds.testing.mock_data``'s) are read record by record instead.
  """
  import tensorflow_datasets as tfds

  try:
    source = builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    n = len(source) if limit is None else min(limit, len(source))
    read = source.__getitems__
    read([0])
  except (TypeError, ImportError, NotImplementedError):  # a mock data source
    source = builder.as_data_source(split=split)
    n = len(source) if limit is None else min(limit, len(source))
    read = lambda keys: [source[i] for i in keys]  # noqa: E731

  def batch(start: int) -> list[tuple[np.ndarray, int]]:
    records = read(list(range(start, min(start + 1024, n))))
    if records and "image" not in records[0]:
      raise JaxvaeError(
        f"TFDS dataset {name!r} has no 'image' feature (it has {sorted(records[0])}): jaxvae reads images"
      )
    return [(_image(r["image"], name, image_size), int(r["label"]) if "label" in r else -1) for r in records]

  with concurrent.futures.ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
    examples = [e for part in pool.map(batch, range(0, n, 1024)) for e in part]
  images = [image for image, _ in examples]
  if len({im.shape for im in images}) > 1:
    raise JaxvaeError(f"TFDS dataset {name!r} has images of several sizes: pass --image-size N to crop and resize them")
  return np.stack(images), np.asarray([label for _, label in examples], np.int32)


def load_tfds(
  name: str,
  data_dir: str | None = None,
  image_size: int | None = None,
  n_train: int | None = None,
  n_test: int | None = None,
) -> Dataset:
  """Any TFDS image dataset with an ``image`` feature, read with TFDS's random-access data source.

  Reading a prepared dataset needs no TensorFlow, and only the first ``n_train`` / ``n_test``
  records are read and decoded. Preparing one (its first use, online) encodes images with
  TensorFlow: with ``pip install 'jaxvae[prepare]'`` this function prepares it in ``data_dir``;
  without, it says where it looked and what to do.

  Args:
    name: a TFDS name such as ``fashion_mnist`` (optionally ``name:version``).
    data_dir: the TFDS data folder (TFDS's default when None).
    image_size: crop every image to a centred square and resize it to this size.
    n_train, n_test: read only the first this many records of each split (None: all).
  """
  import tensorflow_datasets as tfds

  with _quiet_absl():
    try:
      builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError:
      where = data_dir or tfds.core.constants.DATA_DIR
      raise JaxvaeError(
        f"TFDS has no dataset {name!r}: it is not in the TFDS catalog and not prepared in {where}; "
        "check the name in the TFDS catalog (e.g. tfds:fashion_mnist) or --tfds-data-dir"
      ) from None

    def read(split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
      return _read_tfds_split(builder, split, name, image_size, limit)

    try:
      train = read("train", n_train)
    except JaxvaeError:
      raise
    except Exception as e:  # not prepared, prepared in another file format, or damaged
      if builder.is_prepared():
        raise JaxvaeError(
          f"TFDS dataset {name!r} in {builder.data_dir} cannot be read ({type(e).__name__}: {first_line(e, 160)}): "
          "prepare it in the array_record format (TFDS's default) or pass another --tfds-data-dir"
        ) from None
      if importlib.util.find_spec("tensorflow") is None:
        raise JaxvaeError(
          f"TFDS dataset {name!r} is not prepared in {builder.data_dir}: prepare it once online with "
          "`pip install 'jaxvae[prepare]'` and rerun, or pass --tfds-data-dir to a folder where it is prepared"
        ) from None
      builder.download_and_prepare()
      train = read("train", n_train)
    test = read("test" if "test" in builder.info.splits else "validation", n_test)
  if train[0].ndim != 4:
    raise JaxvaeError(f"TFDS dataset {name!r} has images of shape {train[0].shape[1:]}: jaxvae needs [H, W, C] images")
  return Dataset(f"tfds:{name}", train[0], train[1], test[0], test[1])


def load_npz(path: str) -> Dataset:
  """Arrays ``train`` and ``test`` (and optionally ``train_labels``, ``test_labels``) from an .npz file."""
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise JaxvaeError(f"cannot read {path} ({e}): give an .npz file with arrays train and test (np.savez)") from None
  missing = [k for k in ("train", "test") if k not in arrays]
  if missing:
    raise JaxvaeError(
      f"{path} has no array {' or '.join(missing)} (it has {sorted(arrays)}): save them with "
      "np.savez(path, train=..., test=...)"
    )
  return Dataset.from_arrays(
    arrays["train"],
    arrays["test"],
    arrays.get("train_labels"),
    arrays.get("test_labels"),
    name=f"npz:{os.path.abspath(path)}",
  )


def load_dataset(
  name: str,
  tfds_data_dir: str | None = None,
  image_size: int | None = None,
  n_train: int | None = None,
  n_test: int | None = None,
) -> Dataset:
  """``"mnist"`` (embedded), ``"tfds:NAME"`` or ``"npz:PATH"``, optionally resized; else a :class:`JaxvaeError`.

  ``n_train`` / ``n_test`` keep the first examples of each split (and read no more than that).
  """
  if name == "mnist":
    data = load_mnist()
  elif name.startswith("tfds:") and len(name) > 5:
    return load_tfds(name[5:], tfds_data_dir, image_size, n_train, n_test)
  elif name.startswith("npz:") and len(name) > 4:
    data = load_npz(name[4:])
  else:
    raise JaxvaeError(f"dataset {name!r} is unknown: use 'mnist', 'tfds:NAME' (e.g. tfds:fashion_mnist) or 'npz:PATH'")
  data = data._replace(
    train=data.train[:n_train],
    train_labels=data.train_labels[:n_train],
    test=data.test[:n_test],
    test_labels=data.test_labels[:n_test],
  )
  if image_size:
    if data.train.ndim != 4:
      raise JaxvaeError(f"image_size applies to images [N, H, W, C]; {name} holds examples of shape {data.event_shape}")
    if data.train.shape[1:3] != (image_size, image_size):
      resize = lambda images: np.stack([resize_image(im, image_size) for im in images])  # noqa: E731
      data = data._replace(train=resize(data.train), test=resize(data.test))
  return data
