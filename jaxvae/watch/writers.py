"""Writers of a run's curves for the tools people watch runs with, as :class:`jaxvae.Callback` values.

TensorBoard, without TensorFlow: ``tensorboard()`` writes ``W/tensorboard/`` with tensorboardX (a writer of
TensorBoard's event format that needs neither TensorFlow nor PyTorch). After each epoch, every value of the
``metrics.jsonl`` row becomes a scalar at step = epoch: ``train/elbo``, ``test/elbo``,
``train/kl``, ``train/log_p_x_given_z``, ``train/kl_weight``, ``train/grad_norm``,
``train/skipped_steps``, ``speed/images_per_sec`` and, where the objective has them, the
IWAE bound, per-layer KLs and so on; every few epochs, the samples and reconstructions as
images. The config goes to TensorBoard's HParams dashboard, with
``test/elbo`` and ``train/elbo`` as its metrics; a sweep's models are one run each (their
folders ``W/models/<name>``), so ``tensorboard --logdir W`` compares them by their values.

A resumed run starts its writer with ``purge_step`` = the epoch after its checkpoint: TensorBoard
drops what the stopped run wrote after that checkpoint, and each epoch appears once.

Weights & Biases: ``wandb()`` logs the same values, images and config to a W&B run whose files
are in ``W/wandb/`` (a sweep's models: one W&B run each, grouped by the sweep's folder name). The
run's id is kept in ``W/wandb/jaxvae.json``, so a resumed run continues the same W&B run. W&B's
own ``WANDB_MODE`` chooses online or offline (``WANDB_MODE=offline`` on compute nodes without
internet; ``wandb sync W/wandb/offline-run-*`` uploads later).

``jaxvae eval`` and ``jaxvae gaps`` add their results to the same TensorBoard run (``eval/...``,
``gaps/...`` at step = the checkpoint's epoch) and W&B run (its summary): :func:`log_results`.

Example:
  >>> jaxvae.train_and_evaluate(config, "runs/tb", callbacks=[jaxvae.tensorboard()])
  $ tensorboard --logdir runs     # pip install 'jaxvae[tensorboard]': no TensorFlow needed
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxvae.errors import JaxvaeError
from jaxvae.watch.callbacks import Callback, Run

TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
WANDB_RUN_FILE = "jaxvae.json"  # in W/wandb/: the W&B run's id and project, for resumes and results
# metrics.jsonl keys that are not a scalar of their own (``kl`` repeats ``test_kl``).
_SKIPPED = ("epoch", "kl")


def tag(key: str) -> str:
  """The TensorBoard tag of a ``metrics.jsonl`` key: ``train_elbo`` -> ``train/elbo``."""
  for split in ("train", "test"):
    if key.startswith(split + "_"):
      return f"{split}/{key[len(split) + 1 :]}"
  if key == "skipped_steps":
    return "train/skipped_steps"
  if key == "seconds":
    return "speed/seconds_per_epoch"
  return f"speed/{key}" if key == "images_per_sec" else f"other/{key}"


def hparams(run: Run) -> dict[str, Any]:
  """What the run records of its config (:attr:`Run.record`, else the config's fields) as HParams values
  (numbers, strings and booleans; lists, tuples and None as text)."""

  def value(v):
    if isinstance(v, (bool, int, float, str)):
      return v
    return ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)

  record = run.record if run.record is not None else run.config.to_dict()
  return {name: value(v) for name, v in record.items()}


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

    writer = SummaryWriter(
      logdir=os.path.join(run.workdir, TENSORBOARD_DIR), purge_step=run.resumed_after + 1, flush_secs=10
    )
    for summary in hparams_summaries(hparams(run), {"test/elbo": None, "train/elbo": None}):
      writer.file_writer.add_summary(summary)
    writers[run.workdir] = writer

  def epoch(run: Run, row: dict[str, Any]) -> None:
    writer = writers[run.workdir]
    step = row["epoch"]
    for key, value in _scalars(row).items():
      writer.add_scalar(key, value, step)
    if images_every and run.pictures is not None and (step % images_every == 0 or step == run.config.epochs):
      for name, batch in (run.pictures() or {}).items():
        writer.add_images(f"images/{name}", batch, step, dataformats="NHWC")
    writer.flush()

  def end(run: Run, summary: dict[str, Any]) -> None:
    writer = writers.pop(run.workdir, None)
    if writer is not None:
      writer.close()

  return Callback(start=start, epoch=epoch, end=end)


def _scalars(row: dict[str, Any]) -> dict[str, float]:
  """The numbers of a ``metrics.jsonl`` row by their tags (booleans and text left out)."""
  return {
    tag(k): v for k, v in row.items() if k not in _SKIPPED and isinstance(v, (int, float)) and not isinstance(v, bool)
  }


def _grid(batch) -> Any:
  """``[N, H, W, C]`` images in [0, 1] as one ``[rows*H, 8*W, C]`` grid (as TensorBoard shows them)."""
  import numpy as np
  from tensorboardX.utils import make_grid

  return np.transpose(make_grid(np.transpose(np.asarray(batch), (0, 3, 1, 2)), ncols=8), (1, 2, 0))


def _wandb_run_info(workdir: str, project: str) -> dict[str, str]:
  """The W&B run of a run folder: read from ``W/wandb/jaxvae.json``, or a new id written there."""
  import secrets
  import string

  path = os.path.join(workdir, WANDB_DIR, WANDB_RUN_FILE)
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  info = {"id": "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)), "project": project}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(info, f)
  os.replace(path + ".tmp", path)
  return info


def _wandb_init(workdir: str, info: dict[str, str], **kwargs) -> Any:
  """The W&B run of a run folder, started or continued (its files in ``W/wandb/``)."""
  import wandb as wb

  try:
    return wb.init(project=info["project"], id=info["id"], resume="allow", dir=workdir, reinit="create_new", **kwargs)
  except wb.errors.UsageError as e:
    raise JaxvaeError(f"W&B: {e} (or set WANDB_MODE=offline: files in {workdir}/wandb/, `wandb sync` later)") from None


def wandb_problem() -> str | None:
  """Why :func:`wandb` cannot log here (no wandb package; online without an API key), or None."""
  import importlib.util
  import netrc
  from urllib.parse import urlparse

  if importlib.util.find_spec("wandb") is None:
    return "the wandb package is not installed: pip install 'jaxvae[wandb]'"
  if os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled") or os.environ.get("WANDB_API_KEY"):
    return None
  host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
  try:
    if netrc.netrc(os.environ.get("NETRC")).authenticators(host):
      return None
  except (OSError, netrc.NetrcParseError):
    pass
  return (
    f"no W&B API key for {host}: run `wandb login`, or set WANDB_MODE=offline (files in W/wandb/, `wandb sync` later)"
  )


def wandb(project: str = "jaxvae", images_every: int = 5) -> Callback:
  """A callback logging each run (or each swept model) to Weights & Biases, files in ``W/wandb/``.

  Every epoch's ``metrics.jsonl`` values are logged at step = epoch under the TensorBoard tags
  (``train/elbo``, ``test/elbo``, ...); the config is the W&B run's config; the samples and
  reconstructions are images every ``images_every`` epochs and at the last; the summary's numbers
  go to the W&B run's summary. A resumed run continues the same W&B run (its id is in
  ``W/wandb/jaxvae.json``) and logs the epochs after its checkpoint again; their values are the
  stopped run's (a resume is exact; the timing fields aside), and online W&B ignores a step
  logged below the run's current one. Online or offline is W&B's ``WANDB_MODE``.

  Args:
    project: the W&B project of a new run.
    images_every: every this many epochs, and at the last, the pictures (0: none).

  Example:
    >>> jaxvae.train_and_evaluate(config, "runs/a", callbacks=[jaxvae.wandb(project="vae")])
    $ WANDB_MODE=offline jaxvae train --wandb --workdir runs/a    # then: wandb sync runs/a/wandb/offline-run-*
  """
  runs: dict[str, Any] = {}

  def start(run: Run) -> None:
    group = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(run.workdir)))) if run.name else None
    runs[run.workdir] = _wandb_init(
      run.workdir,
      _wandb_run_info(run.workdir, project),
      config=hparams(run),
      name=run.name or os.path.basename(os.path.abspath(run.workdir)),
      group=group,
      job_type="train",
    )

  def epoch(run: Run, row: dict[str, Any]) -> None:
    import wandb as wb

    values: dict[str, Any] = _scalars(row)
    step = row["epoch"]
    if images_every and run.pictures is not None and (step % images_every == 0 or step == run.config.epochs):
      for name, batch in (run.pictures() or {}).items():
        values[f"images/{name}"] = wb.Image(_grid(batch), caption=f"{name}, epoch {step}")
    runs[run.workdir].log(values, step=step)

  def end(run: Run, summary: dict[str, Any]) -> None:
    wandb_run = runs.pop(run.workdir, None)
    if wandb_run is not None:
      wandb_run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
      wandb_run.finish()

  return Callback(start=start, epoch=epoch, end=end)


def log_results(workdir: str, name: str, results: dict[str, Any], step: int) -> list[str]:
  """Adds ``jaxvae eval`` or ``jaxvae gaps`` results to the run's TensorBoard and W&B runs, where it has them.

  Args:
    workdir: the run folder.
    name: ``"eval"`` or ``"gaps"``: the tags are ``<name>/<key>`` (e.g. ``eval/test_log_px``).
    results: the results; their numbers are logged.
    step: the epoch of the checkpoint evaluated.

  Returns:
    What received them: ``"tensorboard"`` if the run has ``W/tensorboard/``, ``"wandb"`` if it
    has a W&B run (``W/wandb/jaxvae.json``, and the wandb package).
  """
  numbers = {f"{name}/{k}": v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
  wrote = []
  if os.path.isdir(os.path.join(workdir, TENSORBOARD_DIR)):
    from tensorboardX import SummaryWriter

    with SummaryWriter(logdir=os.path.join(workdir, TENSORBOARD_DIR)) as writer:
      for key, value in numbers.items():
        writer.add_scalar(key, value, step)
    wrote.append("tensorboard")
  path = os.path.join(workdir, WANDB_DIR, WANDB_RUN_FILE)
  if os.path.exists(path):
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
      return wrote
    with open(path) as f:
      wandb_run = _wandb_init(workdir, json.load(f), job_type=name)
    wandb_run.summary.update(numbers)
    wandb_run.finish()
    wrote.append("wandb")
  return wrote
