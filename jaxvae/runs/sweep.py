"""Hyperparameter sweeps as one program: stacked states and ``jax.vmap``, through the loop of a run.

Every model of a sweep is a :class:`jaxvae.TrainState`; the states of models that share array
shapes are stacked along a leading "models" axis and trained by

  jax.jit(jax.vmap(train_epoch, in_axes=(0, None, 0)))(states, data, keys)

one epoch at a time, in the loop of a single run (:func:`jaxvae.runs.loop.run_epochs`): one
compilation and one program for the whole group. The config fields that keep shapes are
vmapped (:data:`jaxvae.runs.config.VMAPPED`): the seed (initialisation, data order, binarization
draws, z samples), the objective's hyperparameters (beta, warm-up, free bits: ``state.hparams``),
the learning rate (``optax.inject_hyperparams``), the EMA decay, and the binarization seed (the
fixed test set, and the training set if static). Every other field (latent size, widths, k,
model, objective, batch size...) defines a group (:mod:`jaxvae.runs.grid`); groups are compiled
once each and run in turn.

A model trained in a sweep follows the same random stream as the same config trained
alone by `jaxvae train`, so its parameters agree to float32 rounding. A user's model and
objective go through a sweep as they go through a run: as factories (by reference in the
configs, or handed over in Python), so that each config builds its own.

With several devices, the models axis is sharded over a 1-D mesh
(:func:`jaxvae.training.devices.model_shardings`) and the data replicated: the same program, placed.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core.data import Dataset
from jaxvae.core.estimators import active_units
from jaxvae.core.trees import stack, take
from jaxvae.errors import Interrupted, JaxvaeError
from jaxvae.runs import build
from jaxvae.runs.config import VMAPPED, Config
from jaxvae.runs.folder import append_row, prepare_workdir, write_json, write_run_files
from jaxvae.runs.grid import group_configs, model_name, static_part, switch_objective, switchable
from jaxvae.runs.loop import EpochBar, Placed, run_epochs, stacked_program
from jaxvae.runs.pictures import images, save_figures
from jaxvae.runs.records import diverged_message, summarize
from jaxvae.runs.setup import RunKeys, Setup, draw, fixed_test_set, prepare, run_keys
from jaxvae.training.checkpoint import save_checkpoint
from jaxvae.training.devices import model_shardings, on_process_0, place, to_host, watch_peers
from jaxvae.training.train import eval_params, with_learning_rate
from jaxvae.watch import plots
from jaxvae.watch.callbacks import Callback, Run, call

# ---------------------------------------------------------------------------
# A group of models as one program.
# ---------------------------------------------------------------------------


class GroupResult(NamedTuple):
  """What :func:`train_group` returns, one entry per model, in the order of its configs.

  Attributes:
    configs: each model's config, naming the model, objective and data it trained with.
    states: the final TrainState of each model (host arrays; a diverged model's at its stop).
    rows: each model's metrics rows, one dict per epoch (as `jaxvae train` writes them).
    active_units: each model's active units per stochastic layer on the test set.
    diverged: each model's ``(epoch, skips, whole_epoch)`` at its divergence stop (:func:`diverged_message`), or None.
    signal: the stop signal that ended the group early, or None.
    compile_seconds: compilation of the group's program.
    train_seconds: time in the training epochs (compile excluded).
    images: training examples processed, all models together.
    setup: the group's :class:`jaxvae.runs.setup.Setup` (its model, data and trainer).
  """

  configs: list[Config]
  states: list[Any]
  rows: list[list[dict[str, Any]]]
  active_units: list[list[int]]
  diverged: list[tuple[int, int, int] | None]
  signal: int | None
  compile_seconds: float
  train_seconds: float
  images: int
  setup: Setup


def train_group(
  configs: list[Config],
  data: Dataset | None = None,
  *,
  model=None,
  objective=None,
  models_per_program: int | None = None,
  devices=None,
  progress: bool = False,
  log: Callable[[str], None] | None = None,
  folders: list[str] | None = None,
  names: list[str] | None = None,
  callbacks: Sequence[Callback] = (),
) -> GroupResult:
  """Trains models whose configs differ only in :data:`jaxvae.runs.config.VMAPPED` fields, as stacked states.

  The models are trained in chunks of ``models_per_program`` x (number of devices): one
  vmapped, jitted epoch per chunk and epoch, the chunk's models sharded over the devices.
  All chunks have the same shapes (the last is padded with copies), so the program is
  compiled once.

  Args:
    configs: the models; :func:`jaxvae.runs.grid.static_part` must be equal for all of them.
    data: the dataset (default: the configs' ``dataset``).
    model, objective: as in :func:`jaxvae.train_and_evaluate`; an objective factory is
      called per config, so that its hyperparameters follow each config.
    models_per_program: models per device in one program (default: 4 on CPU, where
      larger stacks stop fitting the caches; all on accelerators).
    devices: devices for the models axis (default: all devices, of all processes).
    progress: a progress bar per epoch.
    log: ``str -> None`` for a line per epoch (default: silent).
    folders: a run folder per config: its ``config.json`` is written, and rows are appended to its
      ``metrics.jsonl`` as they come.
    names: each config's name (its swept values), for the callbacks.
    callbacks: :class:`jaxvae.Callback` values: ``start`` and ``epoch`` per model (with
      ``folders``); :func:`run_sweep` calls ``end``.

  Returns:
    A :class:`GroupResult`.
  """
  devices = list(devices if devices is not None else jax.devices())
  size = _chunk_size(models_per_program, devices, len(configs))
  shardings = model_shardings(devices)
  main = jax.process_index() == 0  # several processes: process 0 writes
  static, objective, own = _group(configs, objective)
  bar = EpochBar(progress and main)
  setup = prepare(static, model=model, objective=objective, data=data, on_progress=bar)
  steps = setup.trainer.steps_per_epoch(len(setup.train_data))
  group_data = GroupData.of(setup, configs)
  program = stacked_program(
    setup.trainer,
    static.eval_batch_size,
    train_axis=group_data.train_axis,
    test_axis=group_data.test_axis,
    key_sharding=shardings[0],
    on_progress=bar,
  )
  named = [setup.config.replace(**own(c)) for c in configs]
  runs = [
    Run(folder, c, name, record=setup.record(c))
    for folder, c, name in zip(folders or [], named, names or [None] * len(named))
  ]
  for run in runs if main else []:
    write_run_files(run.workdir, run.record, [])
    call(callbacks, "start", run)
  trained, compile_seconds, train_seconds, examples, stop = [], 0.0, 0.0, 0, None
  for first in range(0, len(configs), size):
    chunk = configs[first : first + size]
    state, placed, keys = _stack(setup, chunk, size, objective, steps, group_data, shardings)
    if first == 0:
      compile_seconds = program.compile(state, placed)
    record = _ChunkLog(
      runs[first : first + len(chunk)] if main else [],
      f"models {first + 1}-{first + len(chunk)}/{len(configs)}",
      static.epochs,
      _pictures(setup.vae, placed.test, group_data.test_axis, [k.plot for k in keys]),
      callbacks,
      log,
    )
    label = f"models {first + 1}-{first + len(chunk)} of {len(configs)}, "
    outcome = run_epochs(
      program, state, placed, config=static, steps=steps, models=len(chunk), on_epoch=record, bar=bar, label=label
    )
    train_seconds += outcome.train_seconds
    examples += max(len(r) for r in outcome.rows) * steps * static.batch_size * len(chunk)
    params = place(to_host(eval_params(outcome.state)), shardings[0])
    variances = to_host(program.variances(params, placed.test, placed.eval_key))
    host = to_host(outcome.state)
    for m in range(len(chunk)):
      trained.append((take(host, m), outcome.rows[m], active_units(take(variances, m)), outcome.diverged[m]))
    if outcome.signal:
      stop = outcome.signal
      break
  states, rows, active, diverged = (list(column) for column in zip(*trained))
  return GroupResult(
    named[: len(rows)], states, rows, active, diverged, stop, compile_seconds, train_seconds, examples, setup
  )


def _chunk_size(models_per_program: int | None, devices: list, models: int) -> int:
  """Models per program: a multiple of the device count, no more than the group needs (4 per CPU device by default)."""
  if models_per_program is None:
    models_per_program = 4 if devices[0].platform == "cpu" else models
  return len(devices) * max(1, min(models_per_program, math.ceil(models / len(devices))))


def _group(configs: list[Config], objective: Any) -> tuple[Config, Any, Callable[[Config], dict[str, Any]]]:
  """The group's shared config, its objective, and each model's own fields.

  VAE and IWAE models of one k train in one program, through the traced switch of
  :func:`jaxvae.core.objectives.vae_or_iwae`, unless the group holds models of one kind only
  (then the objective is built as configured and keeps its own metrics, e.g. the vae
  objective's kl_weight).
  """
  static = static_part(configs[0])
  if any(static_part(c) != static for c in configs):
    raise ValueError("train_group needs configs that differ only in vmapped fields; use run_sweep")
  if objective is None and switchable(configs[0]) and len({c.objective for c in configs}) > 1:
    return static, switch_objective, lambda c: {"objective": c.objective, "kl": c.kl, **_vmapped(c)}
  return static.replace(objective=configs[0].objective, kl=configs[0].kl), objective, _vmapped


def _vmapped(config: Config) -> dict[str, Any]:
  return {name: getattr(config, name) for name in VMAPPED}


class GroupData(NamedTuple):
  """The data of a group's models: shared, or drawn once per binarization seed (:func:`jaxvae.runs.setup.draw`).

  Attributes:
    by_seed: ``binarization_seed -> (training data as the step reads them, fixed test set)``;
      a binary test set is kept as uint8 (a quarter of the memory).
    train_axis, test_axis: 0 where the models' training data or test sets differ (stacked), else None.
  """

  by_seed: dict[int, tuple[np.ndarray, np.ndarray]]
  train_axis: int | None
  test_axis: int | None

  @classmethod
  def of(cls, setup: Setup, configs: list[Config]) -> GroupData:
    """The draws of every binarization seed of ``configs``, from the data the setup checked."""
    by_seed = {}
    for seed in dict.fromkeys(c.binarization_seed for c in configs):
      train, test = draw(setup.config.replace(binarization_seed=seed), setup.vae, setup.checked)
      by_seed[seed] = (train, test.astype(np.uint8) if setup.vae.likelihood.binarizes else test)
    several = len(by_seed) > 1
    static_train = setup.config.binarization == "static" and setup.checked.train.dtype == np.uint8
    return cls(by_seed, 0 if several and static_train else None, 0 if several else None)

  def of_models(self, configs: list[Config], which: int, axis: int | None) -> np.ndarray:
    """The training (``which`` 0) or test (1) data of ``configs``, stacked if ``axis`` is 0, else the shared one."""
    if axis is None:
      return self.by_seed[configs[0].binarization_seed][which]
    return np.stack([self.by_seed[c.binarization_seed][which] for c in configs])


def _stack(
  setup: Setup, chunk: list[Config], size: int, objective: Any, steps: int, data: GroupData, shardings: tuple
) -> tuple[Any, Placed, list[RunKeys]]:
  """A chunk's stacked initial states, its data and keys on the devices, and its keys; padded with copies of its
  last model to ``size`` models, so that every chunk has the shapes of the compiled program."""
  padded = chunk + [chunk[-1]] * (size - len(chunk))
  keys = [run_keys(c.seed) for c in padded]
  states = []
  for c, k in zip(padded, keys):
    state = setup.trainer.init(k.init, data.by_seed[c.binarization_seed][0])
    hparams = build.make_objective(c, steps, objective).hparams
    ema = state.ema._replace(decay=jnp.float32(c.ema_decay)) if state.ema is not None else None
    states.append(state._replace(hparams=hparams, opt_state=with_learning_rate(state.opt_state, c.lr), ema=ema))
  stacked, replicated = shardings
  placed = Placed(
    train=place(data.of_models(padded, 0, data.train_axis), stacked if data.train_axis == 0 else replicated),
    test=place(data.of_models(padded, 1, data.test_axis), stacked if data.test_axis == 0 else replicated),
    train_key=place(jnp.stack([k.train for k in keys]), stacked),
    eval_key=place(jnp.stack([k.eval for k in keys]), stacked),
  )
  return place(stack(states), stacked), placed, keys


def _pictures(vae: Any, test: jax.Array, test_axis: int | None, plot_keys: list[jax.Array]):
  """``(stacked state, m) -> model m's pictures`` (:func:`jaxvae.runs.pictures.images`, computed when called);
  None in a job of several processes, where the stacked state is spread over the processes."""

  def of(state: Any, m: int) -> Callable[[], Any] | None:
    if jax.process_count() > 1:
      return None
    x = (test[m] if test_axis == 0 else test).astype(jnp.float32)
    return functools.partial(images, vae, take(eval_params(state), m), x, plot_keys[m])

  return of


class _ChunkLog(NamedTuple):
  """What each epoch of a chunk of models records: each live model's row in its folder and to the callbacks
  (with its pictures), and one line for the chunk."""

  runs: list[Run]
  name: str
  epochs: int
  pictures: Callable[[Any, int], Any]
  callbacks: Sequence[Callback]
  log: Callable[[str], None] | None

  def __call__(self, state: Any, rows: list[dict[str, Any] | None]) -> None:
    live = [(m, row) for m, row in enumerate(rows) if row is not None]
    for m, row in live if self.runs else []:
      append_row(self.runs[m].workdir, row)
      call(self.callbacks, "epoch", self.runs[m]._replace(pictures=self.pictures(state, m)), row)
    if self.log is not None:
      first, elbos = live[0][1], [row["test_elbo"] for _, row in live]
      self.log(
        f"{self.name} epoch {first['epoch']}/{self.epochs}: test ELBO {min(elbos):.2f} .. {max(elbos):.2f}, "
        f"{first['images_per_sec'] * len(rows):,.0f} images/s (all models), {first['seconds']:.2f} s"
      )


# ---------------------------------------------------------------------------
# The sweep: groups in turn, one table, one figure, the best model as a run folder.
# ---------------------------------------------------------------------------


class Trained(NamedTuple):
  """One model of a sweep, trained: its config (naming what it used), final state, metrics rows and summary."""

  config: Config
  state: Any
  rows: list[dict[str, Any]]
  summary: dict[str, Any]


def run_sweep(
  configs: list[Config],
  workdir: str,
  *,
  model=None,
  objective=None,
  data: Dataset | None = None,
  overwrite: bool = False,
  models_per_program: int | None = None,
  progress: bool = True,
  verbose: bool = True,
  callbacks: Sequence[Callback] = (),
) -> list[dict[str, Any]]:
  """Trains every config, grouped by shapes, and writes the sweep folder ``workdir``.

  ``workdir`` receives ``sweep.csv`` and ``sweep.json`` (one row per model: its swept
  fields, final train/test ELBO, KL, active units, whether it completed), ``sweep.png``
  (test ELBO against each swept axis), ``models/<name>/`` (each model's config.json,
  metrics.jsonl, summary.json and final checkpoint, as a run writes them: `jaxvae eval`
  reads every one) and ``best/``, the model with the highest test ELBO as a complete run
  folder (`jaxvae eval --workdir W/best` reads it). The folder rules of
  :func:`jaxvae.train_and_evaluate` hold.

  Args:
    configs: the models.
    workdir: the sweep folder.
    model, objective: factories (or values) as in :func:`jaxvae.train_and_evaluate`.
    data: the dataset (default: the configs' ``dataset``, which must be one).
    callbacks: :class:`jaxvae.Callback` values, called for each model as for a run (its
      :class:`jaxvae.watch.callbacks.Run` names it and its folder ``W/models/<name>``).

  Returns:
    The rows, sorted by test ELBO (best first).

  Raises:
    Interrupted: a signal stopped the sweep after the epoch in flight; what was trained is written.
  """
  t_start = time.perf_counter()
  configs = _checked(configs)
  data = data if data is not None else _load_once(configs)
  axes = [f.name for f in dataclasses.fields(Config) if len({getattr(c, f.name) for c in configs}) > 1]
  names = [model_name(c, axes) for c in configs]
  folders = [os.path.join(workdir, "models", name) for name in names]
  main = jax.process_index() == 0  # several processes: process 0 writes, all take part in the checkpoints
  log = (lambda s: print(s, flush=True)) if verbose and main else None
  trained: dict[int, tuple[Trained, Setup]] = {}
  timing, stop = [], None
  with watch_peers():
    on_process_0(lambda: prepare_workdir(workdir, overwrite))
    groups = group_configs(configs)
    if log:
      swept = ", ".join(axes) or "nothing"
      log(f"jaxvae sweep: {len(configs)} models in {len(groups)} group(s) of shared shapes; swept: {swept}")
    for g, indices in enumerate(groups):
      if log:
        log(f"group {g + 1}/{len(groups)}: {len(indices)} models ({names[indices[0]]} ...)")
      t_group = time.perf_counter()
      result = train_group(
        [configs[i] for i in indices],
        data,
        model=model,
        objective=objective,
        models_per_program=models_per_program,
        progress=progress,
        log=log,
        folders=[folders[i] for i in indices],
        names=[names[i] for i in indices],
        callbacks=callbacks,
      )
      timing.append(_timing(g, len(indices), result))
      for j, i in enumerate(indices[: len(result.rows)]):
        run = Run(folders[i], result.configs[j], names[i])
        trained[i] = (_finish(result, j, g, run, t_group, callbacks, main), result.setup)
      if result.signal:
        stop = result.signal
        break
    table = sorted(
      (_table_row(names[i], configs[i], axes, trained[i][0]) for i in sorted(trained)), key=lambda r: -r["test_elbo"]
    )
    _write_best(*trained[names.index(table[0]["name"])], os.path.join(workdir, "best"), main)
    if main:
      _write_table(workdir, table, axes, timing, t_start)
  if log:
    log(format_table(table, axes))
    log(
      f"best: {table[0]['name']} (test ELBO {table[0]['test_elbo']:.3f}); run folder {os.path.join(workdir, 'best')}; "
      f"{time.perf_counter() - t_start:.1f} s in all"
    )
  if stop:
    partial = sum(1 for r in table if not r["completed"])
    raise Interrupted(
      f"jaxvae: sweep stopped by {signal.Signals(stop).name}: {len(trained)} of {len(configs)} models trained, "
      f"{partial} of them stopped early (completed: false), all written to {workdir}; a sweep does not resume: "
      "rerun it into a new --workdir",
      stop,
    )
  return table


def _checked(configs: list[Config]) -> list[Config]:
  """The configs, validated; a one-line error for none or a duplicate."""
  if not configs:
    raise JaxvaeError("the sweep has no configs: give at least one --grid NAME=VALUES or --configs FILE")
  configs = [c.validate() for c in configs]
  if len(set(configs)) != len(configs):
    raise JaxvaeError("the sweep lists the same config twice: remove the duplicates")
  return configs


def _load_once(configs: list[Config]) -> Dataset:
  """The sweep's one dataset, read once as far as its largest ``n_train`` / ``n_test`` need."""
  if len({(c.dataset, c.tfds_data_dir, c.image_size) for c in configs}) > 1:
    raise JaxvaeError("a sweep runs on one dataset: give --dataset once, not as a grid axis")
  limits = {
    name: None if any(getattr(c, name) is None for c in configs) else max(getattr(c, name) for c in configs)
    for name in ("n_train", "n_test")
  }
  return build.load_data(configs[0].replace(**limits))


def _timing(group: int, models: int, result: GroupResult) -> dict[str, Any]:
  return {
    "group": group,
    "models": models,
    "compile_seconds": result.compile_seconds,
    "train_seconds": result.train_seconds,
    "images_per_sec": result.images / max(result.train_seconds, 1e-9),
  }


def _finish(
  result: GroupResult, j: int, group: int, run: Run, t_group: float, callbacks: Sequence[Callback], main: bool
) -> Trained:
  """Model ``j`` of a group, done: its summary in its folder and to the callbacks, and its final checkpoint."""
  config, rows = result.configs[j], result.rows[j]
  summary = summarize(
    config,
    rows,
    completed=result.diverged[j] is None and rows[-1]["epoch"] == config.epochs,
    data_shape=result.setup.vae.data_shape,
    active=result.active_units[j],
    train_seconds=result.train_seconds,
    compile_seconds=result.compile_seconds,
    t_start=t_group,
    n_train=len(result.setup.train_data),
    n_test=len(result.setup.test_x),
  )
  summary.update(trained_in="jaxvae sweep", group=group)
  if result.diverged[j] is not None:
    summary["stopped"] = diverged_message(*result.diverged[j], "the model's state at that epoch is kept")
  if main:
    write_json(os.path.join(run.workdir, "summary.json"), summary)
    call(callbacks, "end", run, summary)
  save_checkpoint(run.workdir, rows[-1]["epoch"], result.states[j], run_keys(config.seed).train, keep=1)
  return Trained(config, result.states[j], rows, summary)


def _table_row(name: str, config: Config, axes: list[str], trained: Trained) -> dict[str, Any]:
  """A model's row of ``sweep.csv``: its name, group, swept values and final numbers."""
  last, summary = trained.rows[-1], trained.summary
  value = lambda a: list(getattr(config, a)) if isinstance(getattr(config, a), tuple) else getattr(config, a)  # noqa: E731
  return {
    "name": name,
    "group": summary["group"],
    **{a: value(a) for a in axes},
    "train_elbo": last.get("train_elbo"),
    "test_elbo": last["test_elbo"],
    "train_kl": last.get("train_kl"),
    "test_kl": last["test_kl"],
    "kl": last["test_kl"],
    "test_log_p_x_given_z": last["test_log_p_x_given_z"],
    "active_units": summary["active_units"],
    "epochs": last["epoch"],
    "completed": summary["completed"],
  }


def _write_table(
  workdir: str, table: list[dict[str, Any]], axes: list[str], timing: list[dict], t_start: float
) -> None:
  """``sweep.json``, ``sweep.csv`` and ``sweep.png``."""
  write_json(
    os.path.join(workdir, "sweep.json"),
    {"axes": axes, "rows": table, "groups": timing, "seconds": time.perf_counter() - t_start},
  )
  with open(os.path.join(workdir, "sweep.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(table[0]))
    writer.writeheader()
    for r in table:
      writer.writerow({k: ("/".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
  plots.save_sweep(os.path.join(workdir, "sweep.png"), table, axes)


def _write_best(best: Trained, setup: Setup, folder: str, main: bool = True) -> None:
  """The best model as a `jaxvae train` run folder: config, metrics, summary, checkpoint, figures.

  Several processes call it together (the checkpoint is written by all); ``main``: this process writes the files.
  """
  keys = run_keys(best.config.seed)
  save_checkpoint(folder, best.rows[-1]["epoch"], best.state, keys.train)
  if not main:
    return
  write_run_files(folder, best.config, best.rows)
  write_json(os.path.join(folder, "summary.json"), best.summary)
  test_x = jnp.asarray(fixed_test_set(best.config, setup.vae, setup.checked.test[:64]))
  save_figures(setup.vae, eval_params(best.state), test_x, keys.plot, folder)


def format_table(table: list[dict[str, Any]], axes: list[str]) -> str:
  """The sweep's rows as aligned text, best first."""
  cols = [*axes, "test_elbo", "train_elbo", "kl", "active_units"]
  text = [
    [
      ("/".join(map(str, r[c])) if isinstance(r[c], list) else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]))
      for c in cols
    ]
    for r in table
  ]
  widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
  lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
  lines += ["  ".join(v.rjust(w) for v, w in zip(t, widths)) for t in text]
  return "\n".join(lines)
