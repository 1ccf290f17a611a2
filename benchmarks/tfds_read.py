"""Reading a prepared TFDS dataset without TensorFlow: all records against only those a run uses.

  python benchmarks/tfds_read.py [--data-dir /tmp/jaxvae-tfds] [--rounds 3]

Writes the embedded MNIST once as a prepared TFDS dataset ``mnist_png`` (PNG-encoded
array_record files and dataset_info.json, as TFDS prepares ``mnist``; written with TFDS's own
builder from PNG bytes, which needs no TensorFlow), then times ``jaxvae.load_dataset``
reading it back as a run would: every record (70,000), and only the first 2,000 + 500
(``--n-train 2000 --n-test 500``), each with one decoding thread and with all cores.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time

import numpy as np


def write_png_dataset(data_dir: str, name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: int) -> None:
  """Prepares images ``[N, H, W, C]`` uint8 and labels as the TFDS dataset ``name`` in ``data_dir``.

  PNG-encoded array_record files and dataset_info.json, as TFDS prepares its image datasets;
  the images go to TFDS's own builder as PNG bytes, which it stores without TensorFlow.
  ``name`` is CamelCase (TFDS names the dataset in snake_case: ``MnistPng`` -> ``mnist_png``).
  """
  import tensorflow_datasets as tfds
  from PIL import Image

  shape = next(iter(splits.values()))[0].shape[1:]

  def png(image):
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()

  def info(self):
    features = {"image": tfds.features.Image(shape=shape), "label": tfds.features.ClassLabel(num_classes=classes)}
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

  def generate(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": png(image), "label": int(label)}

  builder = type(
    name,
    (tfds.core.GeneratorBasedBuilder,),
    {
      "VERSION": tfds.core.Version("1.0.0"),
      "_info": info,
      "_generate_examples": generate,
      "_split_generators": lambda self, dl_manager: {k: self._generate_examples(*v) for k, v in splits.items()},
    },
  )
  builder(data_dir=data_dir, file_format="array_record").download_and_prepare()


def write_dataset(data_dir: str) -> None:
  """The embedded MNIST as the prepared TFDS dataset ``mnist_png`` in ``data_dir`` (skipped if there)."""
  from jaxvae.runs.sources import load_mnist

  if not os.path.exists(os.path.join(data_dir, "mnist_png", "1.0.0", "dataset_info.json")):
    mnist = load_mnist()
    write_png_dataset(
      data_dir,
      "MnistPng",
      {"train": (mnist.train, mnist.train_labels), "test": (mnist.test, mnist.test_labels)},
      classes=10,
    )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data-dir", default="/tmp/jaxvae-tfds")
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args(argv)
  t0 = time.perf_counter()
  write_dataset(args.data_dir)
  print(f"prepared dataset in {args.data_dir} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

  import jaxvae.core.data as data

  results = {}
  for name, limits in (("all", (None, None)), ("first 2000 + 500", (2000, 500))):
    for threads in (1, os.cpu_count() or 1):
      data.READ_THREADS = threads
      times = []
      for _ in range(args.rounds):
        t0 = time.perf_counter()
        ds = data.load_dataset("tfds:mnist_png", args.data_dir, n_train=limits[0], n_test=limits[1])
        times.append(time.perf_counter() - t0)
      if limits[0] is None:  # TFDS shuffles the records when it writes them: the same images, in another order
        mnist = data.load_mnist()
        assert ds.train.shape == mnist.train.shape and int(ds.train.sum()) == int(mnist.train.sum())
        assert np.array_equal(np.bincount(ds.test_labels), np.bincount(mnist.test_labels))
      results[f"{name}, {threads} thread(s)"] = statistics.median(times)
      print(
        f"{name:>18}: {len(ds.train) + len(ds.test):>6} records, {threads} thread(s): "
        f"{statistics.median(times):6.2f} s "
        f"(median of {args.rounds})"
      )
  print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
  main()
