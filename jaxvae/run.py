"""A run: ``train_and_evaluate(config, workdir)``, its run folder, resuming and stopping.

The run folder ``W`` holds ``config.json``, ``metrics.jsonl`` (one row per epoch),
``summary.json``, ``checkpoints/<epoch>/`` (orbax), ``samples.png`` and
``reconstructions.png``. A run survives:

* **resume**: ``train_and_evaluate(..., resume=True)`` (``jaxvae train --resume W``)
  restores the newest checkpoint and continues bit-identically: the training key and
  the epoch number fix the data order, binarization draws and z samples of every
  later epoch. ``metrics.jsonl`` keeps the rows up to the checkpoint and grows from there.
* **preemption**: on SIGTERM or SIGINT the epoch in flight (one jitted program) finishes,
  a checkpoint is saved, the metrics and summary written, one line says how to resume,
  and :class:`RunStopped` carries the exit status (143 or 130).
* **divergence**: updates whose loss or gradients are not finite are skipped inside the
  step; after ``max_consecutive_skips`` in a row the run stops (exit status 3) and keeps
  its last good checkpoint.
* **bad input**: every check runs before anything is written; a refusal changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from typing import Any

import jax
import numpy as np
import tqdm

from jaxvae import plots
from jaxvae.checkpoint import Checkpointer, latest_epoch, restore_checkpoint
from jaxvae.config import Config, JaxvaeError
from jaxvae.data import ImageDataset, load_dataset, prepare_data
from jaxvae.model import VAE, Params
from jaxvae.train import make_trainer

# Fields that a resumed run may change: how long and how it checkpoints, not what it trains.
RESUMABLE_CHANGES = ("epochs", "checkpoint_every", "keep_checkpoints", "max_consecutive_skips")
# Per-epoch values that measure the machine, not the model (they differ between identical runs).
TIMING_KEYS = ("images_per_sec", "seconds")
EXIT_DIVERGED = 3


class RunStopped(Exception):
  """The run stopped before its last epoch; ``exit_code`` is the status for the shell."""

  def __init__(self, message: str, exit_code: int):
    super().__init__(message)
    self.exit_code = exit_code


def prepare_workdir(workdir: str, overwrite: bool = False) -> None:
  """Creates the run folder; refuses (changing nothing) if it exists and is not empty.

  Raises:
    JaxvaeError: the folder is not empty and ``overwrite`` is False, or it cannot be written.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise JaxvaeError(f"run folder {workdir} is a file: choose another --workdir")
  if os.path.isdir(workdir) and os.listdir(workdir):
    if not overwrite:
      raise JaxvaeError(
          f"run folder {workdir} exists and is not empty: choose a new --workdir, pass --resume {workdir} "
          "to continue it, or --overwrite to replace it"
      )
    shutil.rmtree(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, ".write-test")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise JaxvaeError(f"cannot write run folder {workdir} ({e.strerror}): choose a writable --workdir") from None


def write_json(path: str, obj: Any) -> None:
  """Writes JSON atomically (a temporary file, then a rename)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


class EpochBar:
  """A tqdm bar for the epoch in flight (shown on terminals only), advanced from inside the jitted epoch."""

  def __init__(self, enabled: bool):
    self.enabled = enabled
    self.bar = None

  def start(self, desc: str, total: int):
    if self.enabled:
      self.bar = tqdm.tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True, disable=None)

  def __call__(self, steps_done):
    bar = self.bar
    if bar is not None:  # steps_done is an array of one value per model inside a vmapped sweep
      bar.update(int(np.max(steps_done)) - bar.n)

  def close(self):
    if self.bar is not None:
      self.bar.close()
      self.bar = None


@contextlib.contextmanager
def stop_signals():
  """Records SIGTERM and SIGINT instead of dying (a second SIGINT interrupts at once).

  Yields a dict whose ``"signal"`` is the first signal received, or None. Handlers are
  only installed from the main thread and are restored on exit.
  """
  received: dict[str, int | None] = {"signal": None}
  if threading.current_thread() is not threading.main_thread():
    yield received
    return

  def handler(signum, frame):
    if received["signal"] == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt
    received["signal"] = received["signal"] or signum

  previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield received
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


def read_metrics(workdir: str) -> list[dict[str, float]]:
  """The rows of ``metrics.jsonl`` (none if the file does not exist)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def read_config(workdir: str, missing: str) -> Config:
  """The validated config of the run folder ``workdir``.

  Raises:
    JaxvaeError: ``missing`` when the folder has no ``config.json``; a one-line error
      naming the file when it cannot be read.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise JaxvaeError(missing)
  try:
    with open(path) as f:
      return Config.from_dict(json.load(f)).validate()
  except (ValueError, TypeError, JaxvaeError) as e:
    raise JaxvaeError(f"{path} cannot be read ({e}): the run folder is damaged; start a new --workdir") from None


def write_run_files(folder: str, config: Config, rows: list[dict[str, Any]]) -> None:
  """``config.json`` and ``metrics.jsonl`` (one row per epoch) of a run folder."""
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "config.json"), "w") as f:
    f.write(config.to_json() + "\n")
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)


def resume_config(workdir: str, overrides: dict[str, Any]) -> Config:
  """The config of the run in ``workdir``, with the allowed ``overrides`` applied.

  Raises:
    JaxvaeError: no run there, an unreadable config, or an override that would change
      what the run trains (only :data:`RESUMABLE_CHANGES` may differ).
  """
  saved = read_config(workdir, f"nothing to resume in {workdir} (no config.json): start it with `jaxvae train --workdir {workdir}`")
  changed = {k: v for k, v in overrides.items() if getattr(saved, k) != v}
  fixed = sorted(k for k in changed if k not in RESUMABLE_CHANGES)
  if fixed:
    diffs = ", ".join(f"{k}={changed[k]!r} (saved {getattr(saved, k)!r})" for k in fixed)
    raise JaxvaeError(
        f"the config does not match the run in {workdir}: {diffs}; drop those flags to resume, or start a new --workdir"
    )
  return saved.replace(**changed).validate()


def train_and_evaluate(
    config: Config,
    workdir: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    dataset: ImageDataset | None = None,
    progress: bool = True,
    verbose: bool = True,
    data_parallel: bool = False,
) -> dict[str, Any]:
  """Trains ``config`` and writes (or, with ``resume``, continues) the run folder ``workdir``.

  Args:
    config: the run configuration; with ``resume``, the one of :func:`resume_config`.
    workdir: the run folder; must not exist or be empty unless ``overwrite`` or ``resume``.
    overwrite: replace a non-empty ``workdir``.
    resume: continue the run in ``workdir`` from its newest checkpoint.
    dataset: the data (default: ``load_dataset(config.dataset)``).
    progress: show a progress bar per epoch (on terminals).
    verbose: print a line per epoch and a summary line.
    data_parallel: shard every batch over all devices (of all processes), with the
      parameters and the data replicated (:func:`jaxvae.sweep.data_parallel_shardings`).

  Returns:
    The summary (also in ``summary.json``).

  Raises:
    JaxvaeError: bad input; nothing has been written.
    RunStopped: a signal or divergence stopped the run; see the module docstring.
  """
  t_start = time.perf_counter()
  config.validate()
  if dataset is None:
    dataset = load_dataset(config.dataset, config.tfds_data_dir, config.image_size)
  train_np, test_np = prepare_data(config, dataset)
  batch_sharding = replicated = None
  if data_parallel:
    from jaxvae.sweep import data_parallel_shardings

    batch_sharding, replicated = data_parallel_shardings(config.batch_size)
  bar = EpochBar(progress)
  trainer = make_trainer(
      config, dataset.image_shape, on_progress=bar, train_size=len(train_np), batch_sharding=batch_sharding
  )
  k_init, k_train, k_eval, k_plot = jax.random.split(jax.random.key(config.seed), 4)
  state = trainer.init(k_init, train_np if config.prior == "vamp" else None)
  start_epoch, rows = 0, []
  if resume:
    restored = restore_checkpoint(workdir, state)  # raises before anything is written
    state, start_epoch, k_train = restored.state, restored.epoch, restored.train_key
    rows = [r for r in read_metrics(workdir) if r["epoch"] <= start_epoch]
    if start_epoch >= config.epochs:
      raise JaxvaeError(
          f"the run in {workdir} is complete ({start_epoch} of {config.epochs} epochs): pass --epochs N > {start_epoch} "
          "to train it further"
      )

  # With several processes (multi-host data parallelism) only process 0 writes files;
  # every process takes part in the checkpoints.
  main_process = jax.process_index() == 0
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if main_process:
    if resume:
      with open(metrics_path, "w") as f:  # drop rows after the checkpoint: they are recomputed identically
        f.writelines(json.dumps(r) + "\n" for r in rows)
    else:
      prepare_workdir(workdir, overwrite)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json() + "\n")

  log = tqdm.tqdm.write if verbose and main_process else (lambda s: None)
  if replicated is None:
    train_x, test_x = jax.device_put(train_np), jax.device_put(test_np)
  else:  # every process holds the whole (small) dataset and the same state
    train_x, test_x = (jax.make_array_from_process_local_data(replicated, a) for a in (train_np, test_np))
    state = jax.device_put(state, replicated)
  steps = trainer.steps_per_epoch(train_x.shape[0])

  t0 = time.perf_counter()
  train_epoch = trainer.train_epoch.lower(state, train_x, k_train).compile()
  evaluate = trainer.evaluate.lower(state.params, test_x, k_eval).compile()
  compile_seconds = time.perf_counter() - t0
  log(
      f"jaxvae: {config.dataset} {train_x.shape[0]} train / {test_x.shape[0]} test images, "
      f"{steps} steps of {config.batch_size} per epoch on {jax.device_count() if data_parallel else 1} "
      f"{jax.devices()[0].platform} device(s); compiled in {compile_seconds:.1f} s"
      + (f"; resuming after epoch {start_epoch}" if resume else "")
  )

  checkpointer = Checkpointer(workdir, config.keep_checkpoints)
  train_seconds, stop = 0.0, None
  try:
    with stop_signals() as received:
      for epoch in range(start_epoch + 1, config.epochs + 1):
        bar.start(f"epoch {epoch}/{config.epochs}", steps)
        t0 = time.perf_counter()
        state, train_m = train_epoch(state, train_x, jax.random.fold_in(k_train, epoch))
        train_m, skips = jax.device_get((train_m, state.consecutive_skips))  # the epoch's one host sync
        seconds = time.perf_counter() - t0
        bar.close()
        test_m = jax.device_get(evaluate(state.params, test_x, k_eval))
        train_seconds += seconds
        row = _metrics_row(epoch, train_m, test_m, steps * config.batch_size / seconds, seconds)
        rows.append(row)
        if main_process:
          with open(metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        log(_epoch_line(config, row))

        if int(skips) >= config.max_consecutive_skips:
          last = latest_epoch(workdir)
          kept = f"the last good checkpoint (epoch {last}) is kept" if last is not None else "no checkpoint was saved"
          stop = RunStopped(
              f"jaxvae: stopped at epoch {epoch}: the last {int(skips)} updates had a non-finite loss or gradient "
              f"(or one above --skip-grad-norm) and were skipped; {kept}; lower --lr or set --clip-grad-norm "
              "and start a new --workdir",
              EXIT_DIVERGED,
          )
          break
        if epoch % config.checkpoint_every == 0 or epoch == config.epochs or received["signal"]:
          checkpointer.save(epoch, state, k_train)
        if received["signal"] and epoch < config.epochs:
          name = signal.Signals(received["signal"]).name
          stop = RunStopped(
              f"jaxvae: stopped by {name} after epoch {epoch}/{config.epochs}; checkpoint saved; "
              f"resume with: jaxvae train --resume {workdir}",
              128 + received["signal"],
          )
          break
  finally:
    checkpointer.close()

  last = rows[-1]
  summary = {
      "epochs": last["epoch"],
      "completed": stop is None,
      "test_elbo": last["test_elbo"],
      "test_kl": last["test_kl"],
      "test_log_p_x_given_z": last["test_log_p_x_given_z"],
      "train_elbo": last["train_elbo"],
      "bits_per_dim": -last["test_elbo"] / (int(np.prod(dataset.image_shape)) * np.log(2.0)),
      "skipped_steps": int(sum(r.get("skipped_steps", 0) for r in rows)),
      "images_per_sec": steps * config.batch_size * (last["epoch"] - start_epoch) / train_seconds if train_seconds else None,
      "seconds_per_epoch": train_seconds / (last["epoch"] - start_epoch) if train_seconds else None,
      "compile_seconds": compile_seconds,
      "seconds": time.perf_counter() - t_start,
      "n_train": int(train_x.shape[0]),
      "n_test": int(test_x.shape[0]),
      "device": str(jax.devices()[0].device_kind),
      "devices": jax.device_count() if data_parallel else 1,
      "jax_version": jax.__version__,
  }
  if resume:
    summary["resumed_after_epoch"] = start_epoch
  if main_process:
    if stop is None:
      save_figures(trainer.vae, state.params, test_x, k_plot, workdir)
    write_json(os.path.join(workdir, "summary.json"), summary)
  if stop is not None:
    raise stop
  log(
      f"done: test ELBO {summary['test_elbo']:.3f} nats after {config.epochs} epochs, "
      f"{summary['images_per_sec']:,.0f} images/s, {summary['seconds']:.1f} s in all; results in {workdir}"
  )
  return summary


def _metrics_row(epoch: int, train_m, test_m, images_per_sec: float, seconds: float) -> dict[str, float]:
  row: dict[str, Any] = {"epoch": epoch}
  row.update({f"train_{k}": float(v) for k, v in train_m.items() if k != "skipped_steps"})
  row.update({f"test_{k}": float(v) for k, v in test_m.items()})
  row.update(
      kl=row["test_kl"], skipped_steps=int(train_m["skipped_steps"]), images_per_sec=images_per_sec, seconds=seconds
  )
  return row


def _epoch_line(config: Config, row: dict[str, float]) -> str:
  bound = f"train IWAE_{config.k} {row['train_iwae']:9.3f}  " if "train_iwae" in row else ""
  skipped = f"  {row['skipped_steps']} updates skipped" if row["skipped_steps"] else ""
  return (
      f"epoch {row['epoch']:>{len(str(config.epochs))}}/{config.epochs}  {bound}train ELBO {row['train_elbo']:9.3f}  "
      f"test ELBO {row['test_elbo']:9.3f}  KL {row['kl']:7.3f}  {row['images_per_sec']:,.0f} images/s  "
      f"{row['seconds']:.2f} s{skipped}"
  )


def save_figures(vae: VAE, params: Params, test_x: jax.Array, key: jax.Array, workdir: str, n: int = 64) -> None:
  """``samples.png``: x ~ p_theta(x|z), z ~ p(z), as E[x|z]; ``reconstructions.png``: x beside E[x|z=mu_phi(x)]."""
  k_z, k_means = jax.random.split(key)
  samples = vae.mean_x(vae.p_theta(params, vae.sample_p_z(params, k_z, n)))
  x = test_x[:n]
  means = vae.latent_means(params, x, k_means)  # E_q[z_l|x] of each stochastic layer
  plots.save_samples(
      os.path.join(workdir, "samples.png"),
      np.asarray(samples),
      f"{n} samples x ~ p_theta(x|z), z ~ p(z), shown as the means E[x|z]",
  )
  shown = vae.mean_x(vae.p_theta(params, means[0] if len(means) == 1 else means))
  plots.save_reconstructions(
      os.path.join(workdir, "reconstructions.png"),
      np.asarray(_display(x)),
      np.asarray(shown),
      "test images (as the model sees them) and their reconstructions E[x|z] at z = mean of q_phi(z|x)",
  )


def _display(x: jax.Array) -> jax.Array:
  """The model's view of an image mapped to [0, 1] for a picture (discretized-logistic data live in [-1, 1])."""
  return (x + 1.0) / 2.0 if float(x.min()) < 0.0 else x

