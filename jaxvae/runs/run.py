"""The run driver: ``train_and_evaluate(config, workdir, model=..., objective=..., data=...)``.

One driver trains a single model and a sweep's stacked models alike (:func:`run_epochs`): the
same data checks (:func:`prepare`), key layout (:func:`run_keys`), metrics rows, summary fields
and divergence stop; a sweep (:mod:`jaxvae.runs.sweep`) differs only in stacking states and vmapping.

The run folder ``W`` holds ``config.json``, ``metrics.jsonl`` (one row per epoch),
``summary.json``, ``checkpoints/<epoch>/`` (orbax), and pictures of the model
(``samples.png``, ``reconstructions.png``). A run survives:

* **resume**: ``train_and_evaluate(..., resume=True)`` (``jaxvae train --resume W``)
  restores the newest checkpoint and continues bit-identically: the training key and
  the epoch number fix the data order, binarization draws and z samples of every
  later epoch. ``metrics.jsonl`` keeps the rows up to the checkpoint and grows from there.
* **preemption**: on SIGTERM or SIGINT the epoch in flight (one jitted program) finishes,
  a checkpoint is saved, the metrics and summary written, one line says how to resume,
  and :class:`RunStopped` carries the exit status (143 or 130).
* **divergence**: updates whose loss or gradients are not finite are skipped inside the
  step; after ``max_consecutive_skips`` in a row the run stops (exit status 3) and keeps
  its last good checkpoint (a sweep's model stops recording and keeps its state there).
* **SIGKILL**: checkpoints are renamed into place when complete and the JSON files replaced
  atomically, so a run killed at any moment resumes from its newest intact checkpoint; one
  killed after its last checkpoint, before its summary, is finished by ``resume``.
* **a failed write** (a full disk): one line and exit status 5 (:func:`stop_on_write_errors`);
  the earlier files stay intact and resumable.
* **bad input**: every check runs before anything is written; a refusal changes nothing.

A model, an objective and data handed over in Python are used as they are; factories given
by reference (``FILE.py:FUNCTION``) go into ``config.json``, so that ``--resume``, ``jaxvae
eval`` and ``jaxvae sweep`` rebuild them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxvae.core.data import Dataset, check_shape, static_binarize
from jaxvae.core.estimators import active_units, latent_variances
from jaxvae.core.likelihoods import bits_per_dim
from jaxvae.core.model import VAE, Params
from jaxvae.core.objectives import Objective
from jaxvae.errors import JaxvaeError
from jaxvae.runs import build
from jaxvae.runs.config import CUSTOM, RESUMABLE, Config
from jaxvae.training.devices import all_processes_max, on_process_0, place, to_host
from jaxvae.training.train import Trainer, eval_params
from jaxvae.watch.callbacks import Callback, Run, call
from jaxvae.watch.progress import Progress

# Per-epoch values that measure the machine, not the model (they differ between identical runs).
TIMING_KEYS = ("images_per_sec", "seconds")
EXIT_DIVERGED = 3
EXIT_WRITE_FAILED = 5  # a write to the run folder failed (a full disk, a lost mount): earlier files are intact
LOADABLE_DATA = ("tfds:", "npz:")  # besides "mnist": datasets a run folder can load again by name


class RunStopped(Exception):
  """The run stopped before its last epoch; ``exit_code`` is the status for the shell.

  ``everywhere``: every process of a multi-process job stops alike (a signal, divergence);
  False where this process alone stopped (a failed write on process 0), so the others cannot wait for it.
  """

  def __init__(self, message: str, exit_code: int, everywhere: bool = True):
    super().__init__(message)
    self.exit_code = exit_code
    self.everywhere = everywhere


class RunKeys(NamedTuple):
  """The keys of a run, all from its seed: ``split(key(seed), 4)``.

  Attributes:
    init: the parameter initialisation.
    train: epoch e draws its data order, binarizations and z samples from ``fold_in(train, e)``.
    eval: the test evaluation's z samples (the same every epoch).
    plot: the samples and reconstructions of the pictures.
  """

  init: jax.Array
  train: jax.Array
  eval: jax.Array
  plot: jax.Array


def run_keys(seed: int) -> RunKeys:
  """The :class:`RunKeys` of ``seed``: one layout for runs, sweeps and checkpoints."""
  return RunKeys(*jax.random.split(jax.random.key(seed), 4))


# ---------------------------------------------------------------------------
# From a config (and the user's values) to what a run trains on.
# ---------------------------------------------------------------------------


class Setup(NamedTuple):
  """What one config trains or evaluates, checked: the model, the data as the step reads them, the trainer.

  Attributes:
    config: the config, with ``model``, ``objective`` and ``dataset`` naming what was used
      (a reference, or ``custom`` for a value handed over in Python).
    vae: the model.
    data: the dataset (its first ``n_train`` / ``n_test`` examples).
    train: ``[N, ...]`` the stored training data as the step reads them (checked by the
      likelihood; drawn once for static binarization).
    test: ``[M, ...]`` floats (float32 for 8-bit and binary data), the fixed test set x (:func:`fixed_test_set`).
    trainer: the :class:`jaxvae.training.train.Trainer` of the model, objective and optimizer
      (None from :func:`prepare_model`).
  """

  config: Config
  vae: VAE
  data: Dataset
  train: np.ndarray
  test: np.ndarray
  trainer: Trainer | None = None


def data_key(config: Config, purpose: int) -> jax.Array:
  """Keys of the draws made once from ``binarization_seed``: 0 a static training set, 1 the test set."""
  return jax.random.fold_in(jax.random.key(config.binarization_seed), purpose)


def fixed_test_set(config: Config, vae: VAE, test: np.ndarray) -> np.ndarray:
  """The test set as evaluation reads it: ``[M, ...]`` floats, the likelihood's preprocessing drawn once.

  One draw from ``binarization_seed`` alone (a Bernoulli draw per pixel, one dequantization,
  or a deterministic scaling), so every run (whatever its ``seed``) and every later
  evaluation see the same test set.
  """
  return np.asarray(jax.jit(vae.likelihood.preprocess)(data_key(config, 1), test))


def _named(config: Config, model, objective, data: Dataset | None) -> Config:
  """``config`` with model, objective and dataset naming what the run uses (references made absolute)."""
  changes: dict[str, Any] = {
    "model": build.absolute_reference(config.model),
    "objective": build.absolute_reference(config.objective),
  }
  if config.dataset.startswith("npz:"):  # so that --resume and jaxvae eval find it from any folder
    changes["dataset"] = "npz:" + os.path.abspath(config.dataset[4:])
  if model is not None:
    changes["model"] = CUSTOM if isinstance(model, VAE) else build.reference_of(model)
  if objective is not None:
    changes["objective"] = CUSTOM if isinstance(objective, Objective) else build.reference_of(objective)
  if data is not None:
    loadable = data.name == "mnist" or data.name.startswith(LOADABLE_DATA)
    changes["dataset"] = data.name if loadable else f"{CUSTOM}:{data.name}"
  return config.replace(**{k: v for k, v in changes.items() if v != getattr(config, k)})


def prepare(
  config: Config,
  *,
  model=None,
  objective=None,
  data: Dataset | None = None,
  on_progress=None,
  batch_sharding=None,
) -> Setup:
  """Builds and checks everything a run of ``config`` needs; raises :class:`JaxvaeError` before any write.

  Args:
    config: the run configuration.
    model: a :class:`jaxvae.VAE`, or a factory ``(config, data_shape, dtype) -> VAE`` (it is
      passed the arguments it names); default: the model ``config`` describes.
    objective: a :class:`jaxvae.Objective`, or a factory ``(config, steps_per_epoch) ->
      Objective``; default: ``config.objective``.
    data: a :class:`jaxvae.core.data.Dataset`; default: ``config.dataset``, loaded.
    on_progress, batch_sharding: see :func:`jaxvae.training.train.make_train_epoch`.
  """
  setup = prepare_model(_named(config.validate(), None, objective, None), model=model, data=data)
  config, vae, train = setup.config, setup.vae, setup.train
  obj = make_objective(config, objective, train.shape[0] // config.batch_size)
  trainer = build.make_trainer(
    config,
    data_shape=vae.data_shape,
    train_size=train.shape[0],
    vae=vae,
    objective=obj,
    on_progress=on_progress,
    batch_sharding=batch_sharding,
  )
  return setup._replace(trainer=trainer)


def prepare_model(config: Config, *, model=None, data: Dataset | None = None) -> Setup:
  """The model and the checked data of ``config`` (a :class:`Setup` without a trainer): what evaluation needs."""
  config = _named(config.validate(), model, None, data)
  if data is None:
    data = build.load_data(config)
  data = data._replace(
    train=data.train[: config.n_train],
    train_labels=data.train_labels[: config.n_train],
    test=data.test[: config.n_test],
    test_labels=data.test_labels[: config.n_test],
  )
  raw_train, raw_test = check_shape(data.train, "training data"), check_shape(data.test, "test data")
  if raw_test.shape[1:] != raw_train.shape[1:]:
    raise JaxvaeError(
      f"test data have examples of shape {raw_test.shape[1:]} and training data {raw_train.shape[1:]}: "
      "give both splits the same shape"
    )
  vae = model if isinstance(model, VAE) else build.make_vae(config, raw_train.shape[1:], raw_train.dtype, model)
  train = vae.likelihood.check(raw_train, "training data")
  test = vae.likelihood.check(raw_test, "test data")
  check_shape(train, "training data", vae.data_shape)
  if train.shape[0] < config.batch_size:
    raise JaxvaeError(
      f"batch_size={config.batch_size} is larger than the training set ({train.shape[0]} examples): "
      "lower --batch-size or use more training data"
    )
  if config.binarization == "static":
    if vae.likelihood.name != "bernoulli":
      raise JaxvaeError(
        f"binarization=static draws binary data for the bernoulli likelihood, not {vae.likelihood.name}: "
        "drop --binarization static"
      )
    if train.dtype == np.uint8:
      train = static_binarize(train, data_key(config, 0))
  return Setup(config, vae, data, train, fixed_test_set(config, vae, test))


def make_objective(config: Config, objective=None, steps_per_epoch: int = 1) -> Objective:
  """``objective`` if it is an :class:`jaxvae.Objective`, else what its factory (or ``config``) builds."""
  return objective if isinstance(objective, Objective) else build.make_objective(config, steps_per_epoch, objective)


# ---------------------------------------------------------------------------
# Run folders.
# ---------------------------------------------------------------------------


CLAIM = ".claimed"  # in a run or sweep folder: which process created it (host, pid, time)


def prepare_workdir(workdir: str, overwrite: bool = False) -> None:
  """Creates and claims the run folder; refuses (changing nothing) if it exists and is not empty.

  The claim is the file :data:`CLAIM`, created with ``O_EXCL``: two processes that both found
  the folder empty cannot both claim it.

  Raises:
    JaxvaeError: the folder is not empty and ``overwrite`` is False, or it cannot be written.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise JaxvaeError(f"run folder {workdir} is a file: choose another --workdir")
  if _abandoned_claim(workdir):  # claimed by a process of this host that died before writing its config
    for name in os.listdir(workdir):  # the claim, and a config.json.tmp it may have been writing
      os.remove(os.path.join(workdir, name))
  if os.path.isdir(workdir) and os.listdir(workdir):
    if not overwrite:
      raise JaxvaeError(
        f"run folder {workdir} exists and is not empty: choose a new --workdir, pass --resume {workdir} "
        "to continue it, or --overwrite to replace it"
      )
    shutil.rmtree(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    # The claim: creating a file that must not exist is atomic, so of two processes started
    # into the same new folder at the same moment exactly one goes on (check-then-create is not).
    fd = os.open(os.path.join(workdir, CLAIM), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    raise JaxvaeError(
      f"run folder {workdir} was just claimed by another jaxvae process: choose a new --workdir"
    ) from None
  except OSError as e:
    raise JaxvaeError(f"cannot write run folder {workdir} ({e.strerror}): choose a writable --workdir") from None
  with os.fdopen(fd, "w") as f:
    f.write(f"{socket.gethostname()} pid {os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")


def _abandoned_claim(workdir: str) -> bool:
  """Whether ``workdir`` holds nothing but the claim of a process of this host that no longer runs."""
  try:
    if {n for n in os.listdir(workdir) if not n.endswith(".tmp")} != {CLAIM}:
      return False
    with open(os.path.join(workdir, CLAIM)) as f:
      host, _, pid = f.read().split()[:3]
    if host != socket.gethostname():
      return False
    os.kill(int(pid), 0)  # raises if no such process
  except ProcessLookupError:
    return True
  except (OSError, ValueError):
    return False
  return False


def write_json(path: str, obj: Any) -> None:
  """Writes JSON atomically (a temporary file, then a rename)."""
  _write_atomically(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The rows of ``metrics.jsonl`` (none if the file does not exist).

  A last line cut off by a kill or a full disk in the middle of its write is dropped: its
  epoch comes after the newest checkpoint, so a resumed run writes it again.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  rows = []
  for i, line in enumerate(lines):
    try:
      rows.append(json.loads(line))
    except ValueError:
      if i < len(lines) - 1 or line.endswith("\n"):
        raise JaxvaeError(
          f"{path} line {i + 1} cannot be read: the run folder is damaged; start a new --workdir"
        ) from None
  return rows


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
  """``config.json`` and ``metrics.jsonl`` (one row per epoch) of a run folder, each replaced atomically."""
  os.makedirs(folder, exist_ok=True)
  _write_atomically(os.path.join(folder, "config.json"), config.to_json() + "\n")
  _write_atomically(os.path.join(folder, "metrics.jsonl"), "".join(json.dumps(row) + "\n" for row in rows))


def _write_atomically(path: str, text: str) -> None:
  """A kill or a full disk in the middle leaves the old file whole (a temporary file, then a rename)."""
  tmp = path + ".tmp"
  try:
    with open(tmp, "w") as f:
      f.write(text)
  except OSError:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  os.replace(tmp, path)


def append_row(folder: str, row: dict[str, Any]) -> None:
  """Appends one epoch's row to ``folder/metrics.jsonl``."""
  with open(os.path.join(folder, "metrics.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")


def resume_config(workdir: str, overrides: dict[str, Any]) -> Config:
  """The config of the run in ``workdir``, with the allowed ``overrides`` applied.

  Raises:
    JaxvaeError: no run there, an unreadable config, or an override that would change
      what the run trains (only :data:`jaxvae.runs.config.RESUMABLE` fields may differ).
  """
  saved = read_config(
    workdir, f"nothing to resume in {workdir} (no config.json): start it with `jaxvae train --workdir {workdir}`"
  )
  changed = {k: v for k, v in overrides.items() if getattr(saved, k) != v}
  fixed = sorted(k for k in changed if k not in RESUMABLE)
  if fixed:
    diffs = ", ".join(f"{k}={changed[k]!r} (saved {getattr(saved, k)!r})" for k in fixed)
    raise JaxvaeError(
      f"the config does not match the run in {workdir}: {diffs}; drop those flags to resume, or start a new --workdir"
    )
  return saved.replace(**changed).validate()


class EpochBar(Progress):
  """The epoch in flight's progress (a :class:`~jaxvae.watch.progress.Progress`), advanced from inside the epoch."""

  def __call__(self, steps_done):
    self.update_to(int(np.max(steps_done)))  # steps_done: one value per model inside a vmapped sweep


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


# ---------------------------------------------------------------------------
# The epoch loop: one model, or a stack of models.
# ---------------------------------------------------------------------------


class Program(NamedTuple):
  """What :func:`run_epochs` runs: for one model, or for ``models`` stacked along a leading axis.

  Attributes:
    epoch: ``(state, train data, key) -> (state, metrics)`` (an :class:`jaxvae.training.train.Epoch`).
    evaluate: ``(params, test x, key) -> metrics``, jitted.
    variances: ``(params, test x, key) -> per-layer variances of E_q[z|x]``, jitted.
    fold: ``(key, epoch) -> key``: the epoch's training key(s).
    models: models recorded (a stack may carry padding copies beyond them).
    stacked: whether the state has a leading models axis.
  """

  epoch: Callable[..., Any]
  evaluate: Callable[..., Any]
  variances: Callable[..., Any]
  fold: Callable[[jax.Array, int], jax.Array]
  models: int
  stacked: bool

  def take(self, tree: Any, m: int) -> Any:
    """Model ``m``'s part of a (host) tree."""
    return jax.tree.map(lambda a: a[m], tree) if self.stacked else tree


def single_program(trainer: Trainer, eval_batch_size: int) -> Program:
  """The :class:`Program` of one model: its trainer's epoch, evaluation and latent variances."""
  variances = jax.jit(lambda p, x, k: latent_variances(trainer.vae, p, x, k, eval_batch_size))
  return Program(trainer.train_epoch, trainer.evaluate, variances, jax.random.fold_in, 1, False)


class Outcome(NamedTuple):
  """What :func:`run_epochs` leaves: the final state (each stopped model's at its stop), rows, stops, time.

  Attributes:
    state: the state after the last epoch run, with a diverged model's part taken at its stop (host arrays).
    rows: each model's metrics rows.
    diverged: each model's ``(epoch, skips)`` at its divergence stop, or None.
    signal: the stop signal received, or None.
    train_seconds: time in the training epochs.
  """

  state: Any
  rows: list[list[dict[str, Any]]]
  diverged: list[tuple[int, int] | None]
  signal: int | None
  train_seconds: float


def metrics_row(epoch: int, train_m: dict, test_m: dict, images_per_sec: float, seconds: float) -> dict[str, Any]:
  """One epoch of one model as ``metrics.jsonl`` records it: ``train_*``, ``test_*``, ``kl``, skips, timing."""
  row: dict[str, Any] = {"epoch": epoch}
  row.update({f"train_{k}": float(v) for k, v in train_m.items() if k != "skipped_steps"})
  row.update({f"test_{k}": float(v) for k, v in test_m.items()})
  row.update(
    kl=row["test_kl"], skipped_steps=int(train_m["skipped_steps"]), images_per_sec=images_per_sec, seconds=seconds
  )
  return row


def run_epochs(
  program: Program,
  state: Any,
  train_x: jax.Array,
  test_x: jax.Array,
  k_train: jax.Array,
  k_eval: jax.Array,
  *,
  config: Config,
  start_epoch: int,
  steps: int,
  rows: list[list[dict]] | None = None,
  on_row: Callable[[int, dict], None] = lambda m, row: None,
  on_state: Callable[[Any], None] = lambda state: None,
  checkpoint: Callable[[int, Any], None] | None = None,
  log: Callable[[str], None] = lambda s: None,
  bar: EpochBar | None = None,
  label: str = "",
  line: Callable[[list[dict]], str] | None = None,
) -> Outcome:
  """Epochs ``start_epoch + 1 .. config.epochs`` of one model or a stack: the loop of every run and sweep.

  Each epoch: one call of the epoch program, one host sync for its metrics and skip counters,
  the test evaluation, a row per model (``on_row``), then the divergence check (a model whose
  last ``max_consecutive_skips`` updates were skipped stops: a single run ends, a stacked
  model keeps its state at that epoch and stops recording), the checkpoint, and the signals.
  """
  rows = rows if rows is not None else [[] for _ in range(program.models)]
  diverged: list[tuple[int, int] | None] = [None] * program.models
  frozen: dict[int, Any] = {}
  train_seconds, received_signal = 0.0, None
  examples = steps * config.batch_size
  with stop_signals() as received:
    for epoch in range(start_epoch + 1, config.epochs + 1):
      if bar is not None:
        bar.start(f"{label}epoch {epoch}/{config.epochs}", steps)
      t0 = time.perf_counter()
      state, train_m = program.epoch(state, train_x, program.fold(k_train, epoch))
      train_m, skips = to_host((train_m, state.consecutive_skips))  # the epoch's one host sync
      seconds = time.perf_counter() - t0
      if bar is not None:
        bar.close()
      train_seconds += seconds
      test_m = to_host(program.evaluate(eval_params(state), test_x, k_eval))
      live = [m for m in range(program.models) if diverged[m] is None]
      on_state(state)  # before the rows: their callbacks may look at the model
      for m in live:
        row = metrics_row(epoch, program.take(train_m, m), program.take(test_m, m), examples / seconds, seconds)
        rows[m].append(row)
        on_row(m, row)
      if line is not None:
        log(line([rows[m][-1] for m in live]))
      stopping = [m for m in live if int(program.take(skips, m)) >= config.max_consecutive_skips]
      host = to_host(state) if stopping and program.stacked else None  # only when a model diverges
      for m in stopping:
        diverged[m] = (epoch, int(program.take(skips, m)))
        if host is not None:
          frozen[m] = program.take(host, m)
      if all(d is not None for d in diverged):
        break
      # Several processes stop together: a signal to any of them stops all after this epoch.
      signal_now = all_processes_max(received["signal"] or 0)
      if checkpoint is not None and (epoch % config.checkpoint_every == 0 or epoch == config.epochs or signal_now):
        checkpoint(epoch, state)
      if signal_now and epoch < config.epochs:
        received_signal = signal_now
        break
  if frozen:
    host = to_host(state)
    state = jax.tree.map(
      lambda *parts: np.stack(parts),
      *[frozen.get(m, program.take(host, m)) for m in range(len(jax.tree.leaves(host)[0]))],
    )
  return Outcome(state, rows, diverged, received_signal, train_seconds)


def summarize(
  config: Config,
  rows: list[dict],
  *,
  completed: bool,
  data_shape: tuple[int, ...],
  active: list[int],
  train_seconds: float,
  compile_seconds: float,
  t_start: float,
  n_train: int,
  n_test: int,
  devices: int = 1,
  start_epoch: int = 0,
  models_in_program: int = 1,
) -> dict[str, Any]:
  """``summary.json`` of a run or of one model of a sweep: the last epoch's values, timing and the machine."""
  last = rows[-1]
  run_epochs_done = last["epoch"] - start_epoch
  examples = (n_train // config.batch_size) * config.batch_size
  summary = {
    "epochs": last["epoch"],
    "completed": completed,
    "test_elbo": last["test_elbo"],
    "test_kl": last["test_kl"],
    "test_log_p_x_given_z": last["test_log_p_x_given_z"],
    "train_elbo": last.get("train_elbo"),
    "bits_per_dim": bits_per_dim(last["test_elbo"], data_shape),
    "active_units": int(sum(active)),
    "active_units_per_layer": active,
    "skipped_steps": int(sum(r.get("skipped_steps", 0) for r in rows)),
    "images_per_sec": examples * run_epochs_done * models_in_program / train_seconds if train_seconds else None,
    "seconds_per_epoch": train_seconds / run_epochs_done if train_seconds and run_epochs_done else None,
    "compile_seconds": compile_seconds,
    "seconds": time.perf_counter() - t_start,
    "n_train": int(n_train),
    "n_test": int(n_test),
    "device": str(jax.devices()[0].device_kind),
    "devices": devices,
    "jax_version": jax.__version__,
  }
  if start_epoch:
    summary["resumed_after_epoch"] = start_epoch
  return summary


def epoch_line(config: Config, row: dict[str, Any]) -> str:
  """The line printed after each epoch of a run."""
  bound = f"train IWAE_{config.k} {row['train_iwae']:9.3f}  " if "train_iwae" in row else ""
  train = f"train ELBO {row['train_elbo']:9.3f}  " if "train_elbo" in row else f"train loss {row['train_loss']:9.3f}  "
  skipped = f"  {row['skipped_steps']} updates skipped" if row["skipped_steps"] else ""
  return (
    f"epoch {row['epoch']:>{len(str(config.epochs))}}/{config.epochs}  {bound}{train}"
    f"test ELBO {row['test_elbo']:9.3f}  KL {row['kl']:7.3f}  {row['images_per_sec']:,.0f} images/s  "
    f"{row['seconds']:.2f} s{skipped}"
  )


def diverged_message(epoch: int, skips: int, kept: str) -> str:
  return (
    f"jaxvae: stopped at epoch {epoch}: the last {skips} updates had a non-finite loss or gradient "
    f"(or one above --skip-grad-norm) and were skipped; {kept}; lower --lr or set --clip-grad-norm "
    "and start a new --workdir"
  )


# ---------------------------------------------------------------------------
# One run.
# ---------------------------------------------------------------------------


def train_and_evaluate(
  config: Config,
  workdir: str,
  *,
  model: VAE | Callable[..., VAE] | None = None,
  objective: Objective | Callable[..., Objective] | None = None,
  data: Dataset | None = None,
  overwrite: bool = False,
  resume: bool = False,
  progress: bool = True,
  verbose: bool = True,
  data_parallel: bool = False,
  callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
  """Trains a model and writes (or, with ``resume``, continues) the run folder ``workdir``.

  Args:
    config: the run configuration (batch size, epochs, optimizer, seed, checkpoints, and the
      built-in model, objective and data unless given); with ``resume``, the one of
      :func:`resume_config`.
    workdir: the run folder; must not exist or be empty unless ``overwrite`` or ``resume``.
    model: a :class:`jaxvae.VAE`, or a factory of one (see :func:`prepare`); default: the
      model of ``config``.
    objective: a :class:`jaxvae.Objective`, or a factory of one; default: ``config.objective``.
    data: a :class:`jaxvae.core.data.Dataset` (e.g. ``Dataset.from_arrays(train, test)``);
      default: ``config.dataset``.
    overwrite: replace a non-empty ``workdir``.
    resume: continue the run in ``workdir`` from its newest checkpoint (from its first epoch
      if it stopped before saving one: its config.json is all there is to continue).
    progress: show a progress bar per epoch (on terminals).
    verbose: print a line per epoch and a summary line.
    data_parallel: shard every batch over all devices (of all processes), with the
      parameters and the data replicated (:func:`jaxvae.training.devices.data_parallel_shardings`).
    callbacks: :class:`jaxvae.Callback` values, called on the host (process 0) when the folder
      is ready, after each epoch with its metrics row, and at the end with the summary.

  Returns:
    The summary (also in ``summary.json``).

  Raises:
    JaxvaeError: bad input; nothing has been written.
    RunStopped: a signal or divergence stopped the run; see the module docstring.

  Example:
    >>> summary = jaxvae.train_and_evaluate(jaxvae.Config(epochs=5), "runs/mine", model=my_vae)
  """
  from jaxvae.training.checkpoint import Checkpointer, latest_epoch, restore_checkpoint
  from jaxvae.training.devices import data_parallel_shardings

  t_start = time.perf_counter()
  batch_sharding = replicated = None
  if data_parallel:
    batch_sharding, replicated = data_parallel_shardings(config.batch_size)
  bar = EpochBar(progress and jax.process_index() == 0)
  setup = prepare(config, model=model, objective=objective, data=data, on_progress=bar, batch_sharding=batch_sharding)
  config, trainer = setup.config, setup.trainer
  keys = run_keys(config.seed)
  k_train = keys.train
  state = trainer.init(keys.init, setup.train)
  start_epoch, rows = 0, []
  # A run stopped before its first checkpoint (a config.json, no checkpoint) saved nothing, so
  # nothing is lost by training it from the first epoch; the rows written so far are dropped below.
  from_scratch = resume and latest_epoch(workdir) is None
  if resume and not from_scratch:
    restored = restore_checkpoint(workdir, state)  # raises before anything is written
    state, start_epoch, k_train = restored.state, restored.epoch, restored.train_key
    rows = [r for r in read_metrics(workdir) if r["epoch"] <= start_epoch]
    # A run killed after its last checkpoint, before its summary, is finished (summary, pictures), not refused.
    if start_epoch > config.epochs or (start_epoch == config.epochs and _summarized(workdir, start_epoch)):
      raise JaxvaeError(
        f"the run in {workdir} is complete ({start_epoch} of {config.epochs} epochs): pass --epochs N > {start_epoch} "
        "to train it further"
      )

  # With several processes (multi-host data parallelism) only process 0 writes files;
  # every process takes part in the checkpoints.
  main_process = jax.process_index() == 0

  def start_folder():
    if resume:
      write_run_files(workdir, config, rows)  # drops rows after the checkpoint: they are recomputed identically
    else:
      prepare_workdir(workdir, overwrite)
      write_run_files(workdir, config, [])

  with stop_on_write_errors(workdir):
    on_process_0(start_folder)
    current = {}  # the state after the epoch in flight, for pictures during training
    run = Run(
      workdir,
      config,
      None,
      start_epoch,
      pictures=lambda: images(trainer.vae, eval_params(current["state"]), test_x, keys.plot),
    )
    if main_process:
      call(callbacks, "start", run)

    def on_row(m, row):
      if main_process:
        append_row(workdir, row)
        call(callbacks, "epoch", run, row)

    log = (lambda s: print(s, flush=True)) if verbose and main_process else (lambda s: None)
    if replicated is None:
      train_x, test_x = jax.device_put(setup.train), jax.device_put(setup.test)
    else:  # every process holds the whole (small) dataset and the same state
      train_x, test_x = place((setup.train, setup.test), replicated)
      state = place(state, replicated)
    steps = trainer.steps_per_epoch(train_x.shape[0])
    program = single_program(trainer, config.eval_batch_size)

    t0 = time.perf_counter()
    trainer.train_epoch.compile(state, train_x, k_train)
    trainer.evaluate.lower(eval_params(state), test_x, keys.eval).compile()
    compile_seconds = time.perf_counter() - t0
    log(
      f"jaxvae: {config.dataset} {train_x.shape[0]} train / {test_x.shape[0]} test examples, "
      f"{steps} steps of {config.batch_size} per epoch on {jax.device_count() if data_parallel else 1} "
      f"{jax.devices()[0].platform} device(s)"
      + (" (a host loop of jitted steps: convolutions on a CPU)" if trainer.train_epoch.loop else "")
      + f"; compiled in {compile_seconds:.1f} s"
      + (
        (
          "; no checkpoint was saved before it stopped: training from epoch 1"
          if from_scratch
          else f"; resuming after epoch {start_epoch}"
        )
        if resume
        else ""
      )
      + ("; it stopped before its summary: writing it" if start_epoch == config.epochs else "")
    )

    checkpointer = Checkpointer(workdir, config.keep_checkpoints)
    try:
      outcome = run_epochs(
        program,
        state,
        train_x,
        test_x,
        k_train,
        keys.eval,
        config=config,
        start_epoch=start_epoch,
        steps=steps,
        rows=[rows],
        on_row=on_row,
        on_state=lambda state: current.update(state=state),
        checkpoint=lambda epoch, state: checkpointer.save(epoch, state, k_train),
        log=log,
        bar=bar,
        line=lambda last: epoch_line(config, last[0]),
      )
    finally:
      checkpointer.close()
    state, rows = outcome.state, outcome.rows[0]

    stop = None
    if outcome.diverged[0] is not None:
      last = latest_epoch(workdir)
      kept = f"the last good checkpoint (epoch {last}) is kept" if last is not None else "no checkpoint was saved"
      stop = RunStopped(diverged_message(*outcome.diverged[0], kept), EXIT_DIVERGED)
    elif outcome.signal:
      name = signal.Signals(outcome.signal).name
      stop = RunStopped(
        f"jaxvae: stopped by {name} after epoch {rows[-1]['epoch']}/{config.epochs}; checkpoint saved; "
        f"resume with: {resume_command(workdir, data_parallel)}",
        128 + outcome.signal,
      )
    active = [int(a) for a in active_units(to_host(program.variances(eval_params(state), test_x, keys.eval)))]
    summary = summarize(
      config,
      rows,
      completed=stop is None,
      data_shape=trainer.vae.data_shape,
      active=active,
      train_seconds=outcome.train_seconds,
      compile_seconds=compile_seconds,
      t_start=t_start,
      n_train=train_x.shape[0],
      n_test=test_x.shape[0],
      devices=jax.device_count() if data_parallel else 1,
      start_epoch=start_epoch,
    )
    if main_process:
      if stop is None:
        save_figures(trainer.vae, eval_params(state), test_x, keys.plot, workdir)
      write_json(os.path.join(workdir, "summary.json"), summary)
      call(callbacks, "end", run, summary)
  if stop is not None:
    raise stop
  speed = f"{summary['images_per_sec']:,.0f} images/s, " if summary["images_per_sec"] else ""
  log(
    f"done: test ELBO {summary['test_elbo']:.3f} nats after {config.epochs} epochs, "
    f"{speed}{summary['seconds']:.1f} s in all; results in {workdir}"
  )
  return summary


@contextlib.contextmanager
def stop_on_write_errors(workdir: str):
  """Turns a failed write to the run folder (a full disk, a quota, a lost mount) into :class:`RunStopped`.

  The run stops with one line and exit status :data:`EXIT_WRITE_FAILED`. What was written before
  stays intact: checkpoints are written to a temporary folder and renamed when complete, JSON files
  are replaced atomically, and a ``metrics.jsonl`` line cut off in its write is dropped on resume.
  orbax reports a background write's failure at the next save; its own log line of it is muted.
  A checkpoint that does not fit is refused by every process of a job (the error's ``everywhere``);
  another failed write stops process 0 alone, and the others exit when they miss it (status 4).
  """
  muted = _MuteWriteErrors()
  logging.getLogger("absl").addFilter(muted)
  try:
    yield
  except Exception as e:
    reason = _write_error(e)
    if reason is None:
      raise
    from jaxvae.training.checkpoint import latest_epoch

    last = latest_epoch(workdir)
    kept = f"checkpoint {last} and the metrics up to it are intact" if last is not None else "no checkpoint was saved"
    raise RunStopped(
      f"jaxvae: cannot write to {workdir} ({reason}): the run stopped; {kept}; make room "
      f"and resume with: jaxvae train --resume {workdir}",
      EXIT_WRITE_FAILED,
      everywhere=getattr(e, "everywhere", False),
    ) from None
  finally:
    logging.getLogger("absl").removeFilter(muted)


def _write_error(e: BaseException) -> str | None:
  """The reason of a failed write (an OSError, or orbax/tensorstore's error naming one), else None."""
  if isinstance(e, OSError) and e.errno is not None:
    return e.strerror or os.strerror(e.errno)
  code = re.search(r"os_error_code='(\d+)'", str(e))
  return os.strerror(int(code.group(1))) if code else None


class _MuteWriteErrors(logging.Filter):
  """Drops orbax's log records of a failed write: :func:`stop_on_write_errors` reports it in one line."""

  def filter(self, record):
    e = record.exc_info[1] if record.exc_info else None
    while e is not None:
      if _write_error(e) is not None:
        return False
      e = e.__cause__ or e.__context__
    return "os_error_code=" not in record.getMessage()


def resume_command(workdir: str, data_parallel: bool = False) -> str:
  """The command that continues the run in ``workdir`` (in as many processes as this one had)."""
  command = f"jaxvae train --resume {workdir}" + (" --data-parallel" if data_parallel else "")
  n = jax.process_count()
  return command if n == 1 else f"{command}, started as {n} processes again (e.g. jaxvae launch -n {n} {command[7:]})"


def _summarized(workdir: str, epoch: int) -> bool:
  """Whether the run folder's ``summary.json`` is that of a run completed at ``epoch``."""
  try:
    with open(os.path.join(workdir, "summary.json")) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return False
  return bool(summary.get("completed")) and summary.get("epochs") == epoch


# ---------------------------------------------------------------------------
# Pictures.
# ---------------------------------------------------------------------------


def images(vae: VAE, params: Params, test_x: jax.Array, key: jax.Array, n: int = 64) -> dict[str, np.ndarray] | None:
  """A model's pictures as ``[n, H, W, C]`` arrays in [0, 1], or None for data that are not images.

  ``samples``: E[x|z] of z ~ p(z); ``test_images``: the first ``n`` test images as the model sees
  them; ``reconstructions``: E[x|z] at z = the mean of q_phi(z|x) of each of them.
  """
  if len(vae.data_shape) != 3:
    return None
  k_z, k_means = jax.random.split(key)
  samples = vae.mean_x(vae.p_theta(params, vae.sample_p_z(params, k_z, n)))
  x = test_x[:n]
  means = vae.latent_means(params, x, k_means)  # E_q[z_l|x] of each stochastic layer
  shown = vae.mean_x(vae.p_theta(params, means[0] if len(means) == 1 else means))
  # mean_x shows E[x|z] in [0, 1] already; the test images are in the model's data range.
  return {
    name: np.clip(np.asarray(a), 0.0, 1.0)
    for name, a in (("samples", samples), ("test_images", _display(x, vae)), ("reconstructions", shown))
  }


def save_figures(vae: VAE, params: Params, test_x: jax.Array, key: jax.Array, workdir: str, n: int = 64) -> list[str]:
  """The pictures of a model that apply to its data; returns their paths.

  Images ``[H, W, C]``: ``samples.png`` (x ~ p_theta(x|z), z ~ p(z), shown as E[x|z]) and
  ``reconstructions.png`` (test images beside E[x|z] at z = the mean of q_phi(z|x)).
  Two-dimensional vectors: ``samples.png``, the test data and the model's samples in the plane.
  """
  from jaxvae.watch import plots

  k_z, _ = jax.random.split(key)  # images() splits the key the same way
  shape = vae.data_shape
  if len(shape) == 3:
    pictures = images(vae, params, test_x, key, n)
    paths = [os.path.join(workdir, "samples.png"), os.path.join(workdir, "reconstructions.png")]
    plots.save_samples(
      paths[0], pictures["samples"], f"{n} samples x ~ p_theta(x|z), z ~ p(z), shown as the means E[x|z]"
    )
    plots.save_reconstructions(
      paths[1],
      pictures["test_images"],
      pictures["reconstructions"],
      "test images (as the model sees them) and their reconstructions E[x|z] at z = mean of q_phi(z|x)",
    )
    return paths
  if shape == (2,):
    samples = vae.mean_x(vae.p_theta(params, vae.sample_p_z(params, k_z, 2000)))
    path = os.path.join(workdir, "samples.png")
    plots.save_points(
      path, np.asarray(test_x[:2000]), np.asarray(samples), "test data x and the means E[x|z] of 2,000 draws z ~ p(z)"
    )
    return [path]
  return []


def _display(x: jax.Array, vae: VAE) -> jax.Array:
  """The model's view of an image mapped to [0, 1] for a picture (discretized-logistic data live in [-1, 1])."""
  lo, hi = vae.likelihood.data_range or (0.0, 1.0)
  return (x - lo) / (hi - lo)
