"""The run driver: ``train_and_evaluate(config, workdir, model=..., objective=..., data=...)``.

The recipe reads top to bottom: prepare and check everything (:func:`jaxvae.runs.setup.prepare`),
find where the run starts (a new run, or a resumed one's checkpoint), open the run folder, place
the data, compile, run the epochs (:func:`jaxvae.runs.loop.run_epochs`, the loop a sweep runs
too), then summarize. The run folder ``W`` holds ``config.json``, ``metrics.jsonl`` (one row per
epoch), ``summary.json``, ``checkpoints/<epoch>/`` and the pictures (``samples.png``,
``reconstructions.png``). A run survives:

* **resume**: ``train_and_evaluate(..., resume=True)`` (``jaxvae train --resume W``)
  restores the newest checkpoint and continues bit-identically: the training key and
  the epoch number fix the data order, binarization draws and z samples of every
  later epoch. ``metrics.jsonl`` keeps the rows up to the checkpoint and grows from there.
* **preemption**: on SIGTERM or SIGINT the epoch in flight (one jitted program) finishes,
  a checkpoint is saved, the metrics and summary written, one line says how to resume,
  and :class:`jaxvae.errors.Interrupted` carries the exit status (143 or 130).
* **divergence**: updates whose loss or gradients are not finite are skipped inside the
  step; after ``max_consecutive_skips`` in a row the run stops (:class:`jaxvae.errors.Diverged`,
  exit status 3) and keeps its last good checkpoint.
* **SIGKILL**: checkpoints are renamed into place when complete and the JSON files replaced
  atomically, so a run killed at any moment resumes from its newest intact checkpoint; one
  killed after its last checkpoint, before its summary, is finished by ``resume``.
* **a failed write** (a full disk): one line and exit status 5
  (:func:`jaxvae.runs.folder.stop_on_write_errors`); the earlier files stay intact and resumable.
* **a lost process** of a multi-process job: one line and exit status 4
  (:func:`jaxvae.training.devices.watch_peers`).
* **bad input**: every check runs before anything is written; a refusal changes nothing.

A model, an objective and data handed over in Python are used as they are; factories given
by reference (``FILE.py:FUNCTION``) go into ``config.json``, so that ``--resume``, ``jaxvae
eval`` and ``jaxvae sweep`` rebuild them.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from jaxvae.core.data import Dataset
from jaxvae.core.estimators import active_units
from jaxvae.core.model import VAE, trainable
from jaxvae.core.objectives import Objective
from jaxvae.errors import Diverged, Interrupted, JaxvaeError, RunStopped, option
from jaxvae.runs.config import Config
from jaxvae.runs.folder import append_row, open_run_folder, read_metrics, stop_on_write_errors, summarized, write_json
from jaxvae.runs.loop import EpochBar, Outcome, Placed, run_epochs, single_program
from jaxvae.runs.pictures import images, save_figures
from jaxvae.runs.records import diverged_message, epoch_line, summarize
from jaxvae.runs.setup import RunKeys, Setup, prepare, run_keys
from jaxvae.training.checkpoint import Checkpointer, latest_epoch, restore_checkpoint
from jaxvae.training.devices import data_parallel_shardings, on_process_0, place, to_host, watch_peers
from jaxvae.training.train import eval_params
from jaxvae.watch.callbacks import Callback, Run, call


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
      :func:`jaxvae.runs.folder.resume_config`.
    workdir: the run folder; must not exist or be empty unless ``overwrite`` or ``resume``.
    model: a :class:`jaxvae.VAE`, or a factory of one (see :func:`jaxvae.runs.setup.prepare`);
      default: the model of ``config``.
    objective: a :class:`jaxvae.Objective`, or a factory of one; default: ``config.objective``.
    data: a :class:`jaxvae.Dataset` (e.g. ``Dataset.from_arrays(train, test)``);
      default: ``config.dataset``.
    overwrite: replace a non-empty ``workdir``.
    resume: continue the run in ``workdir`` from its newest checkpoint (from its first epoch
      if it stopped before saving one: its config.json is all there is to continue).
    progress: show a progress bar per epoch (on terminals; lines elsewhere).
    verbose: print a line per epoch and a summary line.
    data_parallel: shard every batch over all devices (of all processes), with the
      parameters and the data replicated (:func:`jaxvae.training.devices.data_parallel_shardings`).
    callbacks: :class:`jaxvae.Callback` values, called on the host (process 0) when the folder
      is ready, after each epoch with its metrics row, and at the end with the summary.

  Returns:
    The summary (also in ``summary.json``).

  Raises:
    JaxvaeError: bad input; nothing has been written.
    RunStopped: a signal, divergence, a failed write or a lost process stopped the run; see the
      module docstring.

  Example:
    >>> summary = jaxvae.train_and_evaluate(jaxvae.Config(epochs=5), "runs/mine", model=my_vae)
  """
  t_start = time.perf_counter()
  shardings = data_parallel_shardings(config.batch_size) if data_parallel else None
  main = jax.process_index() == 0  # with several processes, process 0 alone writes files
  bar = EpochBar(progress and main)
  batch_sharding = shardings[0] if shardings else None
  setup = prepare(config, model=model, objective=objective, data=data, on_progress=bar, batch_sharding=batch_sharding)
  config, trainer, keys = setup.config, setup.trainer, run_keys(setup.config.seed)
  start = starting_point(setup, keys, workdir, resume)  # raises before anything is written
  log = (lambda line: print(line, flush=True)) if verbose and main else (lambda line: None)
  with watch_peers(), stop_on_write_errors(workdir):
    on_process_0(lambda: open_run_folder(workdir, setup.record(), start.rows, resume=resume, overwrite=overwrite))
    state, placed = place_run(setup, start, keys, shardings)
    program = single_program(trainer, config.eval_batch_size)
    compile_seconds = program.compile(state, placed)
    log(start_line(setup, placed, start, compile_seconds, data_parallel=data_parallel, resume=resume))
    run = Run(workdir, config, None, start.epoch, record=setup.record())
    if main:
      call(callbacks, "start", run)

    def on_epoch(state: Any, rows: list[dict[str, Any] | None]) -> None:
      if main:
        append_row(workdir, rows[0])
        pictures = functools.partial(images, trainer.vae, eval_params(state), placed.test, keys.plot)
        call(callbacks, "epoch", run._replace(pictures=pictures), rows[0])
      likelihood = trainer.vae.likelihood
      log(epoch_line(config, rows[0], trainer.vae.data_shape if likelihood.eight_bit else None))

    checkpointer = Checkpointer(workdir, config.keep_checkpoints)
    try:
      outcome = run_epochs(
        program,
        state,
        placed,
        config=config,
        steps=trainer.steps_per_epoch(len(setup.train_data)),
        start_epoch=start.epoch,
        rows=start.rows,
        on_epoch=on_epoch,
        checkpoint=lambda epoch, state: checkpointer.save(epoch, state, placed.train_key),
        bar=bar,
      )
    finally:
      checkpointer.close()
    stop = stop_of(outcome, workdir, config, data_parallel)
    state, rows = eval_params(outcome.state), outcome.rows[0]
    active = active_units(to_host(program.variances(state, placed.test, placed.eval_key)))
    summary = summarize(
      config,
      rows,
      completed=stop is None,
      data_shape=trainer.vae.data_shape,
      active=active,
      train_seconds=outcome.train_seconds,
      compile_seconds=compile_seconds,
      t_start=t_start,
      n_train=placed.train.shape[0],
      n_test=placed.test.shape[0],
      devices=jax.device_count() if data_parallel else 1,
      start_epoch=start.epoch,
    )
    if main:
      if stop is None:
        save_figures(trainer.vae, state, placed.test, keys.plot, workdir)
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


class Start(NamedTuple):
  """Where a run starts: a new run's initial state, or a resumed run's checkpoint.

  Attributes:
    state: the training state to continue from.
    epoch: the epoch it is at (0 for a new run).
    train_key: the run's training key (a checkpoint's, or the seed's).
    rows: the ``metrics.jsonl`` rows up to that epoch.
    from_scratch: a resumed run that stopped before its first checkpoint, trained from epoch 1.
  """

  state: Any
  epoch: int
  train_key: jax.Array
  rows: list[dict[str, Any]]
  from_scratch: bool = False


def starting_point(setup: Setup, keys: RunKeys, workdir: str, resume: bool) -> Start:
  """The :class:`Start` of a run: its initial state, or with ``resume`` the newest intact checkpoint in ``workdir``.

  A run stopped before its first checkpoint (a ``config.json``, no checkpoint) saved nothing, so
  nothing is lost by training it from the first epoch; its rows are dropped.

  Raises:
    JaxvaeError: the checkpoint does not restore, or the run is complete (before anything is written).
  """
  state = setup.trainer.init(keys.init, setup.train_data)
  if not resume or latest_epoch(workdir) is None:
    return Start(state, 0, keys.train, [], from_scratch=resume)
  restored = restore_checkpoint(workdir, state)
  epochs = setup.config.epochs
  # A run killed after its last checkpoint, before its summary, is finished (summary, pictures), not refused.
  if restored.epoch > epochs or (restored.epoch == epochs and summarized(workdir, restored.epoch)):
    more = option(f"--epochs N > {restored.epoch}", f"a config with epochs > {restored.epoch}")
    raise JaxvaeError(
      f"the run in {workdir} is complete ({restored.epoch} of {epochs} epochs): pass {more} to train it further"
    )
  rows = [r for r in read_metrics(workdir) if r["epoch"] <= restored.epoch]
  return Start(restored.state, restored.epoch, restored.train_key, rows)


def place_run(setup: Setup, start: Start, keys: RunKeys, shardings: Any) -> tuple[Any, Placed]:
  """The state and the data on the devices: on the default device, or replicated on every device of a
  data-parallel run (every process holds the whole, small, dataset and the same state)."""
  if shardings is None:
    train, test = jax.device_put(setup.train_data), jax.device_put(setup.test_x)
    state = start.state
  else:
    _, replicated = shardings
    train, test = place((setup.train_data, setup.test_x), replicated)
    state = place(start.state, replicated)
  return state, Placed(train, test, start.train_key, keys.eval)


def start_line(
  setup: Setup, placed: Placed, start: Start, compile_seconds: float, *, data_parallel: bool, resume: bool
) -> str:
  """The line a run prints before its first epoch: the data, the steps, the devices, the compilation, the start."""
  config, epoch = setup.config, setup.trainer.train_epoch
  devices = jax.device_count() if data_parallel else 1
  parameters = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(trainable(start.state.params)))
  line = (
    f"jaxvae: {config.dataset} {placed.train.shape[0]} train / {placed.test.shape[0]} test examples, "
    f"a model of {parameters:,} parameters, "
    f"{setup.trainer.steps_per_epoch(placed.train.shape[0])} steps of {config.batch_size} per epoch on {devices} "
    f"{jax.devices()[0].platform} device(s)"
    + (" (a host loop of jitted steps: convolutions on a CPU)" if epoch.loop else "")
    + f"; compiled in {compile_seconds:.1f} s"
  )
  if resume:
    line += (
      "; no checkpoint was saved before it stopped: training from epoch 1"
      if start.from_scratch
      else f"; resuming after epoch {start.epoch}"
    )
  if start.epoch == config.epochs:
    line += "; it stopped before its summary: writing it"
  return line


def stop_of(outcome: Outcome, workdir: str, config: Config, data_parallel: bool) -> RunStopped | None:
  """Why the run stopped before its last epoch (divergence or a signal), or None if it completed."""
  if outcome.diverged[0] is not None:
    last = latest_epoch(workdir)
    kept = f"the last good checkpoint (epoch {last}) is kept" if last is not None else "no checkpoint was saved"
    return Diverged(diverged_message(*outcome.diverged[0], kept))
  if outcome.signal:
    name, epoch = signal.Signals(outcome.signal).name, outcome.rows[0][-1]["epoch"]
    return Interrupted(
      f"jaxvae: stopped by {name} after epoch {epoch}/{config.epochs}; checkpoint saved; "
      f"resume with: {resume_command(workdir, data_parallel)}",
      outcome.signal,
    )
  return None


def resume_command(workdir: str, data_parallel: bool = False) -> str:
  """The command that continues the run in ``workdir`` (in as many processes as this one had)."""
  command = f"jaxvae train --resume {workdir}" + (" --data-parallel" if data_parallel else "")
  n = jax.process_count()
  return command if n == 1 else f"{command}, started as {n} processes again (e.g. jaxvae launch -n {n} {command[7:]})"
