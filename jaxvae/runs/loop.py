"""The epoch loop of every run and sweep: one model, or a stack of models trained as one program.

A :class:`Program` is what the loop runs (the epoch, the test evaluation, the latent variances,
how an epoch's key is drawn), built once for one model (:func:`single_program`) or for a stack
of them (:func:`stacked_program`). :func:`run_epochs` runs it: each epoch one call of the epoch
program, one host sync for its metrics, the test evaluation, a metrics row per model handed to
the driver, the divergence check, the checkpoint and the signals.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core.estimators import latent_variances
from jaxvae.core.trees import stack, take
from jaxvae.runs.config import Config
from jaxvae.runs.records import metrics_row
from jaxvae.training.devices import all_processes_max, to_host
from jaxvae.training.train import Trainer, eval_params
from jaxvae.watch.progress import Progress


class EpochBar(Progress):
  """The epoch in flight's progress (a :class:`~jaxvae.watch.progress.Progress`), advanced from inside the epoch."""

  def __call__(self, steps_done):
    self.update_to(int(np.max(steps_done)))  # steps_done: one value per model inside a vmapped sweep


class StopSignals:
  """Records SIGTERM and SIGINT instead of dying, while in its ``with`` block (a second SIGINT interrupts at once).

  ``received`` is the first signal received, or None. Handlers are only installed from the
  main thread and are restored on exit.
  """

  def __init__(self):
    self.received: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    if self.received == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = self.received or signum

  def __enter__(self) -> StopSignals:
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
    return self

  def __exit__(self, *exc) -> None:
    for s, h in self._previous.items():
      signal.signal(s, h)


class Placed(NamedTuple):
  """The arrays a loop runs on, on their devices.

  Attributes:
    train: the training data as the step reads them (``[N, ...]``, or ``[models, N, ...]``).
    test: the fixed test set (``[M, ...]``, or ``[models, M, ...]``).
    train_key: the training key(s): epoch e draws from ``fold_in(train_key, e)``.
    eval_key: the test evaluation's key(s).
  """

  train: jax.Array
  test: jax.Array
  train_key: jax.Array
  eval_key: jax.Array


class Program(NamedTuple):
  """What :func:`run_epochs` runs: for one model, or for models stacked along a leading axis.

  Attributes:
    epoch: ``(state, train data, key) -> (state, metrics)`` (an :class:`~jaxvae.training.train.Epoch`).
    evaluate: ``(params, test x, key) -> metrics``, jitted.
    variances: ``(params, test x, key) -> per-layer variances of E_q[z|x]``, jitted.
    fold: ``(key, epoch) -> key``: the epoch's training key(s).
    stacked: whether the state has a leading models axis.
  """

  epoch: Any
  evaluate: Callable[..., Any]
  variances: Callable[..., Any]
  fold: Callable[[jax.Array, int], jax.Array]
  stacked: bool

  def take(self, tree: Any, m: int) -> Any:
    """Model ``m``'s part of a (host) tree."""
    return take(tree, m) if self.stacked else tree

  def compile(self, state: Any, placed: Placed) -> float:
    """Compiles the epoch and the evaluation for these arguments ahead of time; returns the seconds it took."""
    t0 = time.perf_counter()
    self.epoch.compile(state, placed.train, placed.train_key)
    self.evaluate.lower(eval_params(state), placed.test, placed.eval_key).compile()
    return time.perf_counter() - t0


def single_program(trainer: Trainer, eval_batch_size: int) -> Program:
  """The :class:`Program` of one model: its trainer's epoch, evaluation and latent variances."""
  variances = jax.jit(lambda p, x, k: latent_variances(trainer.vae, p, x, k, eval_batch_size))
  return Program(trainer.train_epoch, trainer.evaluate, variances, jax.random.fold_in, False)


def stacked_program(
  trainer: Trainer,
  eval_batch_size: int,
  *,
  train_axis: int | None,
  test_axis: int | None,
  key_sharding: Any,
  on_progress: Callable[[Any], None] | None = None,
) -> Program:
  """The :class:`Program` of models stacked along a leading axis: everything of :func:`single_program`, vmapped.

  Args:
    trainer: the trainer the models share (their differences are arrays in their states).
    eval_batch_size: test examples per evaluation chunk.
    train_axis, test_axis: 0 where each model has its own training data or test set, None where
      they share them.
    key_sharding: where each epoch's stacked training keys live (the models axis of the mesh).
    on_progress: the epoch's progress callback.
  """
  vae = trainer.vae

  def evaluate(p, x, k):  # a binary test set is stored as uint8: a quarter of the memory
    return trainer.evaluate_fn(p, x.astype(jnp.float32), k)

  def variances(p, x, k):
    return latent_variances(vae, p, x.astype(jnp.float32), k, eval_batch_size)

  return Program(
    epoch=trainer.epoch(stacked=True, data_axis=train_axis, on_progress=on_progress),
    evaluate=jax.jit(jax.vmap(evaluate, in_axes=(0, test_axis, 0))),
    variances=jax.jit(jax.vmap(variances, in_axes=(0, test_axis, 0))),
    fold=jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)), out_shardings=key_sharding),
    stacked=True,
  )


class Outcome(NamedTuple):
  """What :func:`run_epochs` leaves: the final state (each stopped model's at its stop), rows, stops, time.

  Attributes:
    state: the state after the last epoch run; where a stacked model diverged, host arrays with
      its part taken at its stop.
    rows: each model's metrics rows.
    diverged: each model's ``(epoch, skips)`` at its divergence stop, or None.
    signal: the stop signal received, or None.
    train_seconds: time in the training epochs.
  """

  state: Any
  rows: list[list[dict[str, Any]]]
  diverged: list[tuple[int, int, int] | None]
  signal: int | None
  train_seconds: float


def run_epochs(
  program: Program,
  state: Any,
  placed: Placed,
  *,
  config: Config,
  steps: int,
  models: int = 1,
  start_epoch: int = 0,
  rows: list[dict[str, Any]] | None = None,
  on_epoch: Callable[[Any, list[dict[str, Any] | None]], None] | None = None,
  checkpoint: Callable[[int, Any], None] | None = None,
  bar: EpochBar | None = None,
  label: str = "",
) -> Outcome:
  """Epochs ``start_epoch + 1 .. config.epochs`` of one model or a stack: the loop of every run and sweep.

  Each epoch: one call of the epoch program, one host sync for its metrics and skip counters,
  the test evaluation, then ``on_epoch(state, new_rows)`` with each model's new row (None for a
  model that stopped before), then the divergence check (a model whose last
  ``max_consecutive_skips`` updates were skipped, or every update of the epoch, stops: a single run
  ends, a stacked model keeps its state at that epoch and stops recording), the checkpoint, and the
  signals.

  Args:
    program: what to run.
    state: the (stacked) training state.
    placed: the data and keys.
    config: the epochs, batch size, checkpoint interval and divergence rule.
    steps: optimizer steps per epoch.
    models: the models recorded (a stack may carry padding copies beyond them).
    start_epoch: the epoch the state is at (a resumed run's checkpoint).
    rows: the single model's rows so far (a resumed run's), which the new rows extend.
    on_epoch: called on the host after each epoch's evaluation, with the state after it.
    checkpoint: ``(epoch, state) -> None``, called every ``checkpoint_every`` epochs, at the last
      epoch and before a signal stops the loop.
    bar: the progress of the epoch in flight; ``label`` goes before its ``epoch e/E``.
  """
  history = [list(rows or []) if m == 0 else [] for m in range(models)]
  diverged: list[tuple[int, int, int] | None] = [None] * models
  frozen: dict[int, Any] = {}
  train_seconds, stop_signal = 0.0, None
  examples = steps * config.batch_size
  with StopSignals() as signals:
    for epoch in range(start_epoch + 1, config.epochs + 1):
      if bar is not None:
        bar.start(f"{label}epoch {epoch}/{config.epochs}", steps)
      t0 = time.perf_counter()
      state, train_m = program.epoch(state, placed.train, program.fold(placed.train_key, epoch))
      train_m, skips = to_host((train_m, state.consecutive_skips))  # the epoch's one host sync
      seconds = time.perf_counter() - t0
      if bar is not None:
        bar.close()
      train_seconds += seconds
      test_m = to_host(program.evaluate(eval_params(state), placed.test, placed.eval_key))
      new_rows: list[dict[str, Any] | None] = [None] * models
      for m in range(models):
        if diverged[m] is None:
          new_rows[m] = metrics_row(
            epoch, program.take(train_m, m), program.take(test_m, m), examples / seconds, seconds
          )
          history[m].append(new_rows[m])
      if on_epoch is not None:
        on_epoch(state, new_rows)
      whole = [steps if int(program.take(train_m["skipped_steps"], m)) == steps else 0 for m in range(models)]
      stopping = [
        m
        for m in range(models)
        if new_rows[m] is not None and (program.take(skips, m) >= config.max_consecutive_skips or whole[m])
      ]
      host = to_host(state) if stopping and program.stacked else None  # only when a model diverges
      for m in stopping:
        diverged[m] = (epoch, int(program.take(skips, m)), whole[m])
        if host is not None:
          frozen[m] = program.take(host, m)
      if all(d is not None for d in diverged):
        break
      # Several processes stop together: a signal to any of them stops all after this epoch.
      signal_now = all_processes_max(signals.received or 0)
      if checkpoint is not None and (epoch % config.checkpoint_every == 0 or epoch == config.epochs or signal_now):
        checkpoint(epoch, state)
      if signal_now and epoch < config.epochs:
        stop_signal = signal_now
        break
  if frozen:
    host = to_host(state)
    state = stack([frozen.get(m, take(host, m)) for m in range(len(jax.tree.leaves(host)[0]))], np)
  return Outcome(state, history, diverged, stop_signal, train_seconds)
