"""Data: the IDX reader, the embedded MNIST, and the TFDS path (mock data, no downloads)."""

import gzip
import hashlib
import importlib.resources
import importlib.util
import os
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import Config
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.sources import MNIST_FILES, load_dataset, read_idx

# md5 of the uncompressed files, as published with MNIST.
MNIST_MD5 = {
  "train_images": "6bbc9ace898e44ae57da46a324031adb",
  "train_labels": "a25bea736e30d166cdddb491f175f624",
  "test_images": "2646ac647ad5339dbf082846283269ea",
  "test_labels": "27ae3e4e09519cfbb04c329615203637",
}


def test_read_idx_round_trip_and_errors():
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  data = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 3, 4) + array.tobytes()
  np.testing.assert_array_equal(read_idx(data), array)
  ints = np.array([1, -2, 3], np.int32)
  np.testing.assert_array_equal(
    read_idx(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + ints.astype(">i4").tobytes()), ints
  )
  with pytest.raises(JaxvaeError, match="magic"):
    read_idx(b"\x1f\x8b\x08\x00")
  with pytest.raises(JaxvaeError, match="length"):
    read_idx(data[:-1])


def test_embedded_mnist_is_the_real_thing(mnist):
  folder = importlib.resources.files("jaxvae") / "datasets" / "mnist"
  for key, name in MNIST_FILES.items():
    with gzip.open(folder.joinpath(name).open("rb")) as f:
      assert hashlib.md5(f.read()).hexdigest() == MNIST_MD5[key]
  assert mnist.train.shape == (60000, 28, 28, 1) and mnist.train.dtype == np.uint8
  assert mnist.test.shape == (10000, 28, 28, 1)
  assert mnist.train.max() == 255 and mnist.train.min() == 0
  assert np.bincount(mnist.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  assert mnist.event_shape == (28, 28, 1)


def test_unknown_dataset_names_the_fix():
  with pytest.raises(JaxvaeError, match="tfds:NAME"):
    load_dataset("mnits")


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_datasets_load_through_data_source(name, shape):
  with tfds.testing.mock_data(num_examples=20):
    data = load_dataset(f"tfds:{name}")
  assert data.train.shape == (20,) + shape and data.train.dtype == np.uint8
  assert data.test.shape == (20,) + shape
  assert data.train_labels.shape == (20,) and data.event_shape == shape


@pytest.mark.slow
def test_training_runs_on_a_tfds_dataset(tmp_path):
  config = Config(dataset="tfds:fashion_mnist", hidden=(32,), latent_dim=4, batch_size=8, epochs=1)
  with tfds.testing.mock_data(num_examples=40):
    summary = train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  assert summary["n_train"] == 40 and np.isfinite(summary["test_elbo"])


def test_unknown_tfds_name_is_a_clean_error(tmp_path):
  with pytest.raises(JaxvaeError, match=f"no_such_dataset_xyz.*catalog.*{tmp_path}"):
    load_dataset("tfds:no_such_dataset_xyz", str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="with TensorFlow it would download")
def test_unprepared_tfds_dataset_says_where_it_looked_and_how_to_prepare_it(tmp_path):
  with pytest.raises(JaxvaeError, match=f"not prepared in {tmp_path}.*prepare"):
    load_dataset("tfds:kmnist", str(tmp_path))


WRITE_TFDS = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from tfds_read import write_png_dataset

labels = np.arange(52) % 4
images = np.broadcast_to((10 * labels)[:, None, None, None], (52, 8, 8, 3)).astype(np.uint8)
splits = {"train": (images[:40], labels[:40]), "test": (images[40:], labels[40:])}
write_png_dataset(sys.argv[1], "ColourSquares", splits, 4)
"""


@pytest.mark.slow
def test_a_real_prepared_tfds_folder_is_read_without_tensorflow_and_only_as_far_as_needed(tmp_path, capfd):
  """A dataset prepared elsewhere (here by TFDS's own writer, benchmarks/tfds_read.py's, in another process) read
  by name from its folder."""
  import subprocess
  import sys

  benchmarks = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
  proc = subprocess.run(
    [sys.executable, "-c", WRITE_TFDS, str(tmp_path), benchmarks], capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  capfd.readouterr()
  data = load_dataset("tfds:colour_squares", str(tmp_path), n_train=30, n_test=5)
  assert data.train.shape == (30, 8, 8, 3) and data.test.shape == (5, 8, 8, 3) and data.train.dtype == np.uint8
  np.testing.assert_array_equal(data.train[:, 0, 0, 0], 10 * data.train_labels)  # each image's label is in its pixels
  assert "WARNING" not in capfd.readouterr().err  # no absl warnings before every run
  resized = load_dataset("tfds:colour_squares", str(tmp_path), image_size=4, n_train=3, n_test=2)
  assert resized.event_shape == (4, 4, 3)
