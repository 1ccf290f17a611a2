"""Datasets by name: the embedded MNIST, any prepared TFDS image dataset, an .npz or .npy file, a folder of images.

``load_dataset("mnist" | "tfds:NAME" | "npz:PATH" | "npy:PATH" | "folder:PATH")`` returns a
:class:`jaxvae.Dataset` of host arrays; what a model sees of them is its likelihood's business
(:mod:`jaxvae.core.likelihoods`). A config's ``dataset`` names one of these
(:func:`jaxvae.runs.build.load_data`).

A source without its own test set (one .npy array; a folder of images without ``train/`` and
``test/`` subfolders) is split by :func:`seeded_split`: a permutation drawn with
``np.random.default_rng(0)`` (host-side data loading, not model randomness), whose first tenth
(rounded down, at least one example) is the test set, the rest the training set, the same on
every machine and every run.

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
READ_THREADS = os.cpu_count() or 1  # threads that read and decode TFDS records and image files
SPLIT_SEED = 0  # np.random.default_rng(SPLIT_SEED) draws the split of a source without a test set
TEST_FRACTION = 10  # 1 in TEST_FRACTION examples (rounded down, at least 1) of such a source is the test set
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # folder: files read as images
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK"


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


def seeded_split(n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
  """Indices ``(train, test)`` of ``n`` examples without a test set of their own: 1 in 10 (seed 0) are the test set.

  A permutation drawn with ``np.random.default_rng(SPLIT_SEED)``; its first ``max(1, n // 10)``
  indices are the test set, the rest the training set (both in the permutation's order, so the
  first ``n_train`` of them are a random subset).

  Raises:
    JaxvaeError: ``n < 2`` (``what`` names the source in the message).
  """
  if n < 2:
    raise JaxvaeError(f"{what} holds {n} example(s): it needs at least 2, one for training and one for the test set")
  order = np.random.default_rng(SPLIT_SEED).permutation(n)
  n_test = max(1, n // TEST_FRACTION)
  return order[n_test:], order[:n_test]


def _path(path: str) -> str:
  return os.path.expanduser(path)


def _array_file(path: str, prefix: str) -> bytes:
  """The first bytes of the .npz / .npy file ``path``, after one-line errors for a missing, empty or foreign file."""
  if not os.path.exists(path):
    raise JaxvaeError(f"{path} does not exist: check the path in --dataset {prefix}:PATH")
  if os.path.isdir(path):
    raise JaxvaeError(f"{path} is a folder, not an .{prefix} file: use --dataset folder:{path} for a folder of images")
  with open(path, "rb") as f:
    head = f.read(len(_NPY_MAGIC))
  if not head:
    raise JaxvaeError(f"{path} is empty (0 bytes): write it again (np.savez / np.save) or give another file")
  if not head.startswith((_NPY_MAGIC, _ZIP_MAGIC)):
    raise JaxvaeError(
      f"{path} is not an .npz or .npy file (no NumPy or zip header): save arrays with "
      "np.savez(path, train=..., test=...) or np.save(path, x)"
    )
  return head


def _damaged(path: str, e: Exception, fix: str) -> JaxvaeError:
  return JaxvaeError(
    f"{path} cannot be read, it is damaged or truncated ({type(e).__name__}: {first_line(e, 120)}): {fix}"
  )


def _object_dtype(path: str, what: str) -> JaxvaeError:
  return JaxvaeError(
    f"{path} holds {what} of dtype object (Python objects), which jaxvae does not unpickle: "
    "save numeric arrays, e.g. np.asarray(x, np.float32)"
  )


def load_npy(path: str, n_train: int | None = None, n_test: int | None = None) -> Dataset:
  """One array ``[N, ...]`` from an .npy file (``np.save``), split by :func:`seeded_split`; no labels.

  The file is memory-mapped, so only the ``n_train`` / ``n_test`` examples kept are read.
  """
  path = _path(path)
  if _array_file(path, "npy").startswith(_ZIP_MAGIC):
    return load_npz(path)
  fix = "write it again with np.save(path, x)"
  try:
    with open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
      shape, _, dtype = read_header(f)
  except Exception as e:  # a truncated or malformed header
    raise _damaged(path, e, fix) from None
  if dtype.hasobject:
    raise _object_dtype(path, "an array")
  train_idx, test_idx = seeded_split(shape[0] if shape else 0, path)
  try:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    train, test = np.asarray(array[train_idx[:n_train]]), np.asarray(array[test_idx[:n_test]])
  except Exception as e:  # data shorter than its header says
    raise _damaged(path, e, fix) from None
  return Dataset.from_arrays(train, test, name=f"npy:{os.path.abspath(path)}")


def load_npz(path: str) -> Dataset:
  """Arrays ``train`` and ``test`` (and optionally ``train_labels``, ``test_labels``) from an .npz file.

  An .npy file (one array) given here is read by :func:`load_npy`.
  """
  path = _path(path)
  if _array_file(path, "npz").startswith(_NPY_MAGIC):
    return load_npy(path)
  arrays = {}
  try:
    with np.load(path, allow_pickle=False) as f:
      for k in f.files:
        try:
          arrays[k] = f[k]
        except ValueError as e:
          if "Object arrays" in str(e):
            raise _object_dtype(path, f"array {k!r}") from None
          raise
  except JaxvaeError:
    raise
  except Exception as e:  # a truncated zip, a bad member
    raise _damaged(path, e, "write it again with np.savez(path, train=..., test=...)") from None
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


def _image_files(folder: str) -> list[tuple[str, str | None]]:
  """``(path, class)`` of every image file in ``folder``, in sorted order.

  Images directly in ``folder`` have class None; those anywhere under a subfolder have its name.
  Hidden files and folders (``.DS_Store``, ``._x.png``) and files without an image suffix are skipped.
  """
  found = []
  for entry in sorted(os.scandir(folder), key=lambda e: e.name):
    if entry.name.startswith("."):
      continue
    if entry.is_dir():
      for root, dirs, files in os.walk(entry.path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [(os.path.join(root, f), entry.name) for f in sorted(files) if _is_image_file(f)]
    elif _is_image_file(entry.name):
      found.append((entry.path, None))
  return found


def _is_image_file(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _read_image_file(path: str, image_size: int | None) -> np.ndarray:
  """One image file as ``[H, W, C]`` uint8: L -> 1 channel, RGB -> 3, RGBA -> 4, other modes converted to RGB."""
  from PIL import Image, UnidentifiedImageError

  try:
    with Image.open(path) as im:
      image = np.asarray(im if im.mode in ("L", "RGB", "RGBA") else im.convert("RGB"))
  except Exception as e:  # not an image, truncated, unsupported
    why = (
      "PIL does not recognise it" if isinstance(e, UnidentifiedImageError) else f"{type(e).__name__}: {first_line(e)}"
    )
    raise JaxvaeError(f"cannot read {path} as an image ({why}): replace it or move it out of the folder") from None
  if image.ndim == 2:
    image = image[..., None]
  return resize_image(image, image_size) if image_size else image


def _stack_images(images: list[np.ndarray], paths: list[str], where: str, image_size: int | None) -> np.ndarray:
  """The images as one ``[N, H, W, C]`` array: grayscale next to RGB becomes RGB; other mixes are one-line errors."""
  channels = {im.shape[-1] for im in images}
  if channels == {1, 3}:
    images = [np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im for im in images]
  elif len(channels) > 1:
    a = next(i for i, im in enumerate(images) if im.shape[-1] == 4)
    b = next(i for i, im in enumerate(images) if im.shape[-1] != 4)
    raise JaxvaeError(
      f"{where} mixes images with and without transparency ({paths[a]} is RGBA, {paths[b]} has "
      f"{images[b].shape[-1]} channel(s)): convert them all to RGB or all to RGBA"
    )
  if not image_size:
    b = next((i for i, im in enumerate(images) if im.shape[:2] != images[0].shape[:2]), None)
    if b is not None:
      (h, w), (h2, w2) = images[0].shape[:2], images[b].shape[:2]
      raise JaxvaeError(
        f"{where} has images of different sizes ({paths[0]} is {w}x{h}, {paths[b]} is {w2}x{h2}, width x height): "
        "pass --image-size N to crop them to a centred square and resize them to N x N"
      )
  return np.stack(images)


def load_folder(
  path: str, image_size: int | None = None, n_train: int | None = None, n_test: int | None = None
) -> Dataset:
  """A folder of image files (PNG, JPEG, ...; one image per file) as ``[N, H, W, C]`` uint8 images.

  Labels: the sorted names of the class subfolders are labels 0..K-1 (an image directly in the
  folder has label -1). Split: a folder with subfolders ``train`` and ``test`` is split by them
  (each may hold class subfolders; the classes are the union of both, sorted; nothing else in the
  folder is read) and each split's order is a permutation drawn with ``np.random.default_rng(0)``;
  any other folder is split by :func:`seeded_split` (1 in 10 images, seed 0, are the test set).
  Images keep their channels (grayscale 1, RGB 3, RGBA 4; other modes become RGB; grayscale next to
  RGB becomes RGB). Only the first ``n_train`` / ``n_test`` files of each split are read, decoded
  in threads. Files without an image suffix (a README, ``.DS_Store``) are skipped.

  Args:
    path: the folder.
    image_size: crop every image to a centred square and resize it to this size; required when
      the images differ in size.
    n_train, n_test: read only the first this many images of each split (None: all).

  Raises:
    JaxvaeError: the folder does not exist or holds no images, a file with an image suffix
      cannot be decoded, or the images differ in size and no ``image_size`` is given.
  """
  path = _path(path)
  where = f"folder:{path}"
  if not os.path.exists(path):
    raise JaxvaeError(f"{path} does not exist: check the path in --dataset folder:PATH")
  if not os.path.isdir(path):
    raise JaxvaeError(
      f"{path} is a file, not a folder: give a folder of images, or use --dataset npz:{path} / npy:{path} for arrays"
    )
  has = {split: os.path.isdir(os.path.join(path, split)) for split in ("train", "test")}
  if has["train"] and has["test"]:
    splits = {split: _image_files(os.path.join(path, split)) for split in ("train", "test")}
    for split, files in splits.items():
      if not files:
        raise JaxvaeError(
          f"{os.path.join(path, split)} holds no images ({', '.join(IMAGE_SUFFIXES)}): put the {split} images there"
        )
    rng = np.random.default_rng(SPLIT_SEED)
    splits = {split: [files[i] for i in rng.permutation(len(files))] for split, files in splits.items()}
  elif has["train"] or has["test"]:
    present, absent = ("train", "test") if has["train"] else ("test", "train")
    raise JaxvaeError(
      f"{path} has a {present}/ subfolder but no {absent}/: add {os.path.join(path, absent)}, or move the images "
      f"out of {present}/ for a seeded split"
    )
  else:
    files = _image_files(path)
    if not files:
      raise JaxvaeError(
        f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}): put image files in it, or in one subfolder per class"
      )
    train_idx, test_idx = seeded_split(len(files), where)
    splits = {"train": [files[i] for i in train_idx], "test": [files[i] for i in test_idx]}
  classes = sorted({c for files in splits.values() for _, c in files if c is not None})
  label_of = {c: i for i, c in enumerate(classes)}
  splits = {"train": splits["train"][:n_train], "test": splits["test"][:n_test]}
  with concurrent.futures.ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
    decoded = {
      split: list(pool.map(lambda f: _read_image_file(f[0], image_size), files)) for split, files in splits.items()
    }
  paths = [f for split in ("train", "test") for f, _ in splits[split]]
  images = _stack_images(decoded["train"] + decoded["test"], paths, where, image_size)
  labels = np.asarray([label_of.get(c, -1) for split in ("train", "test") for _, c in splits[split]], np.int32)
  n = len(splits["train"])
  return Dataset(f"folder:{os.path.abspath(path)}", images[:n], labels[:n], images[n:], labels[n:])


def load_dataset(
  name: str,
  tfds_data_dir: str | None = None,
  image_size: int | None = None,
  n_train: int | None = None,
  n_test: int | None = None,
) -> Dataset:
  """``"mnist"`` (embedded), ``"tfds:NAME"``, ``"npz:PATH"``, ``"npy:PATH"`` or ``"folder:PATH"``, optionally resized.

  Anything else is a :class:`JaxvaeError`.

  ``n_train`` / ``n_test`` keep the first examples of each split (and read no more than that).
  """
  if name == "mnist":
    data = load_mnist()
  elif name.startswith("tfds:") and len(name) > 5:
    return load_tfds(name[5:], tfds_data_dir, image_size, n_train, n_test)
  elif name.startswith("folder:") and len(name) > 7:
    return load_folder(name[7:], image_size, n_train, n_test)
  elif name.startswith("npz:") and len(name) > 4:
    data = load_npz(name[4:])
  elif name.startswith("npy:") and len(name) > 4:
    data = load_npy(name[4:], n_train, n_test)
  else:
    raise JaxvaeError(
      f"dataset {name!r} is unknown: use 'mnist', 'tfds:NAME' (e.g. tfds:fashion_mnist), 'npz:PATH', 'npy:PATH' "
      "or 'folder:PATH' (a folder of images)"
    )
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
