"""Writers of a run's curves for the tools people watch runs with, as :class:`jaxvae.Callback` values.

TensorBoard, without TensorFlow: ``tensorboard()`` writes ``W/tensorboard/`` with tensorboardX (a writer of TensorBoard's event
format that needs neither TensorFlow nor PyTorch). After each epoch, every value of the
``metrics.jsonl`` row becomes a scalar at step = epoch: ``train/elbo``, ``test/elbo``,
``train/kl``, ``train/log_p_x_given_z``, ``train/kl_weight``, ``train/grad_norm``,
``train/skipped_steps``, ``speed/images_per_sec`` and, where the objective has them, the
IWAE bound, per-layer KLs and so on; every few epochs, the samples and reconstructions as
images. The config goes to TensorBoard's HParams dashboard, with
``test/elbo`` and ``train/elbo`` as its metrics; a sweep's models are one run each (their
folders ``W/models/<name>``), so ``tensorboard --logdir W`` compares them by their values.

A resumed run starts its writer with ``purge_step`` = the epoch after its checkpoint: TensorBoard
drops what the stopped run wrote after that checkpoint, and each epoch appears once.

Example:
  >>> jaxvae.train_and_evaluate(config, "runs/tb", callbacks=[jaxvae.tensorboard()])
  $ tensorboard --logdir runs     # pip install 'jaxvae[tensorboard]': no TensorFlow needed
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from jaxvae.callbacks import Callback, Run

TENSORBOARD_DIR = "tensorboard"
# metrics.jsonl keys that are not a scalar of their own (``kl`` repeats ``test_kl``).
_SKIPPED = ("epoch", "kl")


def tag(key: str) -> str:
  """The TensorBoard tag of a ``metrics.jsonl`` key: ``train_elbo`` -> ``train/elbo``."""
  for split in ("train", "test"):
    if key.startswith(split + "_"):
      return f"{split}/{key[len(split) + 1:]}"
  if key == "skipped_steps":
    return "train/skipped_steps"
  if key == "seconds":
    return "speed/seconds_per_epoch"
  return f"speed/{key}" if key == "images_per_sec" else f"other/{key}"


def hparams(config) -> dict[str, Any]:
  """The config's fields as HParams values (numbers, strings and booleans; tuples and None as text)."""

  def value(v):
    if isinstance(v, (bool, int, float, str)):
      return v
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)

  return {field.name: value(getattr(config, field.name)) for field in dataclasses.fields(config)}


def tensorboard(images_every: int = 5) -> Callback:
  """A callback writing each run's (or each swept model's) curves and config to ``W/tensorboard/``.

  Args:
    images_every: every this many epochs, and at the last, the run's samples and
      reconstructions as images (``images/samples``, ``images/reconstructions``,
      ``images/test_images``; runs of image data); 0: none.
  """
  writers: dict[str, Any] = {}

  def start(run: Run) -> None:
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams as hparams_summaries

    writer = SummaryWriter(logdir=os.path.join(run.workdir, TENSORBOARD_DIR), purge_step=run.resumed_after + 1,
                           flush_secs=10)  # fmt: skip
    for summary in hparams_summaries(hparams(run.config), {"test/elbo": None, "train/elbo": None}):
      writer.file_writer.add_summary(summary)
    writers[run.workdir] = writer

  def epoch(run: Run, row: dict[str, Any]) -> None:
    writer = writers[run.workdir]
    for key, value in row.items():
      if key not in _SKIPPED and isinstance(value, (int, float)):
        writer.add_scalar(tag(key), value, row["epoch"])
    step = row["epoch"]
    if images_every and run.pictures is not None and (step % images_every == 0 or step == run.config.epochs):
      for name, batch in (run.pictures() or {}).items():
        writer.add_images(f"images/{name}", batch, step, dataformats="NHWC")
    writer.flush()

  def end(run: Run, summary: dict[str, Any]) -> None:
    writer = writers.pop(run.workdir, None)
    if writer is not None:
      writer.close()

  return Callback(start=start, epoch=epoch, end=end)
