"""Data sources beyond MNIST and TFDS: folders of image files, .npy arrays, and the one-line errors of bad files."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import jaxvae
from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import Config
from jaxvae.runs.setup import named
from jaxvae.runs.sources import load_dataset, load_folder, seeded_split


def _png(path, size=(8, 8), mode="L", value=None, fmt=None):
  """Writes a small image file (PNG unless the suffix says JPEG); its pixels are ``value`` or a pattern."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  w, h = size
  channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
  pixels = np.full((h, w, channels), value, np.uint8) if value is not None else np.indices((h, w, channels)).sum(0)
  pixels = pixels.astype(np.uint8)
  Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path, fmt)
  return str(path)


def _one_line_naming(error: pytest.ExceptionInfo, name) -> str:
  message = str(error.value)
  assert "\n" not in message and str(name) in message, message
  return message


def test_a_folder_of_class_subfolders_gives_labels_and_a_seeded_tenth_as_test_set(tmp_path):
  for c, cls in enumerate(["zebra", "ant", "cat"]):  # labels by sorted name: ant 0, cat 1, zebra 2
    for i in range(10):
      _png(tmp_path / cls / f"{i}.png", value=100 * [2, 0, 1][c] + i)
  (tmp_path / "README.txt").write_text("not an image")
  (tmp_path / "ant" / ".DS_Store").write_bytes(b"\0\1junk")
  (tmp_path / "ant" / "._0.png").write_bytes(b"AppleDouble")  # macOS metadata with an image suffix: hidden, skipped
  data = load_dataset(f"folder:{tmp_path}")
  assert data.name == f"folder:{os.path.abspath(tmp_path)}"
  assert data.train.shape == (27, 8, 8, 1) and data.test.shape == (3, 8, 8, 1)  # 30 // 10 = 3 test images
  assert data.train.dtype == np.uint8 and data.train_labels.dtype == np.int32
  both = np.concatenate([data.train, data.test])[:, 0, 0, 0]
  labels = np.concatenate([data.train_labels, data.test_labels])
  assert sorted(both.tolist()) == list(range(10)) + list(range(100, 110)) + list(range(200, 210))
  assert np.array_equal(labels, both // 100)  # every image has its folder's label
  again = load_dataset(f"folder:{tmp_path}")
  assert all(np.array_equal(a, b) for a, b in zip(data[1:], again[1:]))  # the same split and order every time
  train_idx, test_idx = seeded_split(30, "x")
  assert len(test_idx) == 3 and sorted(np.concatenate([train_idx, test_idx]).tolist()) == list(range(30))
  small = load_dataset(f"folder:{tmp_path}", n_train=5, n_test=2)
  assert np.array_equal(small.train, data.train[:5]) and np.array_equal(small.test, data.test[:2])


def test_train_and_test_subfolders_are_the_split_and_the_classes_their_union(tmp_path):
  _png(tmp_path / "train" / "b" / "1.png", mode="RGB", value=1)
  _png(tmp_path / "train" / "b" / "2.png", mode="RGB", value=2)
  _png(tmp_path / "train" / "3.png", mode="RGB", value=3)  # no class folder: label -1
  _png(tmp_path / "test" / "a" / "4.jpg", mode="RGB", value=40, fmt="JPEG")
  _png(tmp_path / "test" / "c" / "5.JPEG", mode="RGB", value=50, fmt="JPEG")
  _png(tmp_path / "elsewhere.png", mode="RGB", value=6)  # beside train/ and test/: not read
  data = load_folder(str(tmp_path))
  assert data.train.shape == (3, 8, 8, 3) and data.test.shape == (2, 8, 8, 3)
  assert dict(zip(data.train[:, 0, 0, 0].tolist(), data.train_labels.tolist())) == {1: 1, 2: 1, 3: -1}
  assert dict(zip(data.test[:, 0, 0, 0].tolist(), data.test_labels.tolist())) == {40: 0, 50: 2}  # a, b, c


def test_channels_modes_and_image_size(tmp_path):
  _png(tmp_path / "gray" / "a.png", size=(10, 6), mode="L")
  _png(tmp_path / "gray" / "b.png", size=(10, 6), mode="L")
  data = load_folder(str(tmp_path / "gray"))
  assert data.train.shape[1:] == (6, 10, 1)  # [H, W, C] as stored
  _png(tmp_path / "rgba" / "a.png", mode="RGBA")
  _png(tmp_path / "rgba" / "b.png", mode="RGBA")
  assert load_folder(str(tmp_path / "rgba")).train.shape[1:] == (8, 8, 4)
  Image.fromarray(np.zeros((8, 8), np.uint8)).convert("P").save(tmp_path / "rgba" / "c.png")  # a palette image
  with pytest.raises(JaxvaeError, match="RGBA") as error:
    load_folder(str(tmp_path / "rgba"))  # RGB (from the palette) next to RGBA
  _one_line_naming(error, tmp_path / "rgba")
  _png(tmp_path / "mixed" / "a.png", size=(12, 9), mode="L")
  _png(tmp_path / "mixed" / "b.png", size=(8, 8), mode="RGB")  # grayscale next to RGB: all RGB
  with pytest.raises(JaxvaeError, match="--image-size N") as error:
    load_folder(str(tmp_path / "mixed"))
  message = _one_line_naming(error, tmp_path / "mixed" / "a.png")
  assert str(tmp_path / "mixed" / "b.png") in message and "12x9" in message and "8x8" in message
  data = load_dataset(f"folder:{tmp_path / 'mixed'}", image_size=6)
  assert data.train.shape[1:] == (6, 6, 3) and data.test.shape[1:] == (6, 6, 3) and data.train.dtype == np.uint8


def test_folder_errors_are_one_line_and_name_the_file(tmp_path):
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "notes.txt").write_text("no images here")
  for path in (tmp_path / "empty", tmp_path / "missing", _png(tmp_path / "one.png")):  # no images, nothing, a file
    with pytest.raises(JaxvaeError) as error:
      load_dataset(f"folder:{path}")
    _one_line_naming(error, path)
  _png(tmp_path / "bad" / "good.png")
  (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  with pytest.raises(JaxvaeError, match="cannot read") as error:
    load_dataset(f"folder:{tmp_path / 'bad'}")
  _one_line_naming(error, tmp_path / "bad" / "broken.png")
  good = (tmp_path / "bad" / "good.png").read_bytes()
  (tmp_path / "bad" / "broken.png").write_bytes(good[: len(good) // 2])  # truncated
  with pytest.raises(JaxvaeError, match="cannot read") as error:
    load_dataset(f"folder:{tmp_path / 'bad'}")
  _one_line_naming(error, tmp_path / "bad" / "broken.png")
  _png(tmp_path / "halves" / "train" / "x.png")
  with pytest.raises(JaxvaeError, match="no test/") as error:
    load_dataset(f"folder:{tmp_path / 'halves'}")
  _one_line_naming(error, tmp_path / "halves")
  with pytest.raises(JaxvaeError, match="at least 2") as error:
    load_dataset(f"folder:{tmp_path / 'halves' / 'train'}")
  _one_line_naming(error, tmp_path / "halves" / "train")


def test_npy_files_load_with_a_seeded_split_as_npy_and_as_npz(tmp_path):
  array = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
  np.save(tmp_path / "x.npy", array)
  data = load_dataset(f"npy:{tmp_path / 'x.npy'}")
  assert data.name == f"npy:{tmp_path / 'x.npy'}"
  assert data.train.shape == (45, 3) and data.test.shape == (5, 3) and data.train.dtype == np.float32
  assert (data.train_labels == -1).all() and (data.test_labels == -1).all()
  assert sorted(np.concatenate([data.train, data.test])[:, 0].tolist()) == array[:, 0].tolist()
  as_npz = load_dataset(f"npz:{tmp_path / 'x.npy'}")  # no longer a TypeError
  assert np.array_equal(as_npz.train, data.train) and np.array_equal(as_npz.test, data.test)
  small = load_dataset(f"npy:{tmp_path / 'x.npy'}", n_train=4, n_test=2)
  assert np.array_equal(small.train, data.train[:4]) and np.array_equal(small.test, data.test[:2])
  images = np.random.default_rng(1).integers(0, 256, (20, 10, 12, 1), dtype=np.uint8)
  np.save(tmp_path / "images.npy", images)
  resized = load_dataset(f"npy:{tmp_path / 'images.npy'}", image_size=8)
  assert resized.train.shape == (18, 8, 8, 1) and resized.test.shape == (2, 8, 8, 1)


def test_bad_array_files_are_one_line_errors_naming_the_file(tmp_path):
  np.savez(tmp_path / "good.npz", train=np.zeros((10, 3)), test=np.zeros((2, 3)))
  np.save(tmp_path / "good.npy", np.zeros((10, 3)))
  npz, npy = (tmp_path / "good.npz").read_bytes(), (tmp_path / "good.npy").read_bytes()
  (tmp_path / "empty.npz").write_bytes(b"")
  (tmp_path / "empty.npy").write_bytes(b"")
  (tmp_path / "cut.npz").write_bytes(npz[: len(npz) // 2])
  (tmp_path / "cut.npy").write_bytes(npy[: len(npy) // 2])
  (tmp_path / "header.npy").write_bytes(npy[:20])
  (tmp_path / "text.npz").write_text("train,test\n1,2\n")
  np.save(tmp_path / "object.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
  np.savez(tmp_path / "object.npz", train=np.array([1, "a"], dtype=object), test=np.zeros(3))
  (tmp_path / "folder.npz").mkdir()
  cases = [
    ("npz", "empty.npz", "empty"),
    ("npy", "empty.npy", "empty"),
    ("npz", "cut.npz", "damaged or truncated"),
    ("npy", "cut.npy", "damaged or truncated"),
    ("npy", "header.npy", "damaged or truncated"),
    ("npz", "text.npz", "not an .npz or .npy file"),
    ("npy", "text.npz", "not an .npz or .npy file"),
    ("npy", "object.npy", "dtype object"),
    ("npz", "object.npz", "dtype object"),
    ("npz", "missing.npz", "does not exist"),
    ("npy", "missing.npy", "does not exist"),
    ("npz", "folder.npz", "folder:"),
  ]
  for prefix, name, problem in cases:
    with pytest.raises(JaxvaeError, match=problem) as error:
      load_dataset(f"{prefix}:{tmp_path / name}")
    _one_line_naming(error, tmp_path / name)


def test_the_config_takes_the_new_names_and_a_run_folder_can_load_them_again(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  for name in ("folder:pics", "npy:x.npy"):
    config = named(Config(dataset=name).validate())
    prefix = name.split(":")[0]
    assert config.dataset == f"{prefix}:{tmp_path / name.split(':')[1]}"
  with pytest.raises(JaxvaeError, match="folder:PATH"):
    Config(dataset="folders:pics").validate()
  with pytest.raises(JaxvaeError, match="folder:PATH"):
    load_dataset("pics")


def test_a_folder_of_pngs_trains_in_python_and_from_the_command_line(tmp_path, mnist):
  from jaxvae.tools.cli import main

  for i, (image, label) in enumerate(zip(mnist.train[:64], mnist.train_labels[:64])):
    os.makedirs(tmp_path / "digits" / str(label), exist_ok=True)
    Image.fromarray(image[..., 0], "L").save(tmp_path / "digits" / str(label) / f"{i}.png")
  folder = str(tmp_path / "digits")
  config = jaxvae.Config(dataset="folder:" + folder, epochs=1, batch_size=16, latent_dim=2, hidden=(16,))
  jaxvae.train_and_evaluate(config, str(tmp_path / "py"), progress=False, verbose=False)
  with open(tmp_path / "py" / "config.json") as f:
    assert json.load(f)["dataset"] == f"folder:{folder}"
  with open(tmp_path / "py" / "summary.json") as f:
    summary = json.load(f)
  assert summary["n_train"] == 58 and summary["n_test"] == 6 and np.isfinite(summary["test_elbo"])
  workdir = str(tmp_path / "cli")
  flags = ["--hidden", "16", "--latent-dim", "2", "--batch-size", "16", "--epochs", "1", "--n-train", "32"]
  flags += ["--workdir", workdir, "--no-progress", "--no-tensorboard"]
  assert main(["train", "--dataset", f"folder:{folder}", *flags]) == 0
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["n_train"] == 32 and summary["n_test"] == 6 and np.isfinite(summary["test_elbo"])
