"""Hyperparameter sweeps as one program: stacked states and ``jax.vmap``, through the run driver.

Every model of a sweep is a :class:`jaxvae.training.train.TrainState`; the states of models that
share array shapes are stacked along a leading "models" axis and trained by

  jax.jit(jax.vmap(train_epoch, in_axes=(0, None, 0)))(states, data, keys)

one epoch at a time, in the same loop as a single run (:func:`jaxvae.runs.run.run_epochs`): one
compilation and one program for the whole group. The config fields that keep shapes are
vmapped (:data:`jaxvae.runs.config.VMAPPED`): the seed (initialisation, data order, binarization
draws, z samples), the objective's hyperparameters (beta, warm-up, free bits: ``state.hparams``),
the learning rate (``optax.inject_hyperparams``), and the binarization seed (the fixed test set,
and the training set if static). Every other field (latent size, widths, k, model, objective,
batch size...) defines a group; groups are compiled once each and run in turn.

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
import itertools
import math
import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core import objectives
from jaxvae.core.data import Dataset, static_binarize
from jaxvae.core.estimators import active_units, latent_variances
from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import SPECS, VMAPPED, Config, parse_value
from jaxvae.runs.run import (
  EpochBar,
  Program,
  RunStopped,
  append_row,
  data_key,
  diverged_message,
  fixed_test_set,
  images,
  make_objective,
  prepare,
  prepare_workdir,
  run_epochs,
  run_keys,
  save_figures,
  summarize,
  write_json,
  write_run_files,
)
from jaxvae.training.devices import model_shardings, on_process_0, place, to_host
from jaxvae.training.train import eval_params, with_learning_rate
from jaxvae.watch.callbacks import Callback, Run, call

# ---------------------------------------------------------------------------
# Grids and groups.
# ---------------------------------------------------------------------------


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
  """``["beta=0.5,1,2", "hidden=400,200/200"]`` -> ``{"beta": [0.5, 1.0, 2.0], "hidden": [(400,), (200, 200)]}``.

  Values are parsed as the config field's kind (:func:`jaxvae.runs.config.parse_value`); in width
  fields ``/`` separates the widths of one value, and ``none`` unsets an optional field.
  Raises :class:`JaxvaeError` for an unknown field or an unparsable value.
  """
  grid: dict[str, list[Any]] = {}
  for item in items:
    name, sep, values = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not values.strip():
      raise JaxvaeError(f"--grid {item!r} is not NAME=V1,V2,...: write e.g. --grid beta=0.5,1,2")
    if name not in SPECS:
      raise JaxvaeError(f"--grid {name!r} is not a config field: use one of {', '.join(sorted(SPECS))}")
    if name in grid:
      raise JaxvaeError(f"--grid {name} is given twice: list all its values in one --grid")
    try:
      grid[name] = [parse_value(name, text) for text in values.split(",")]
    except JaxvaeError as e:
      raise JaxvaeError(f"--grid {e}") from None
  return grid


def expand_grid(base: dict[str, Any], grid: dict[str, list[Any]]) -> list[Config]:
  """The Cartesian product of ``grid`` over the config fields ``base``, row-major, each validated.

  ``base`` holds only the fields set explicitly (not a resolved :class:`Config`), so that a
  ``model`` axis gives each model its own architecture defaults.
  """
  names = list(grid)
  return [
    Config.from_dict({**base, **dict(zip(names, values))}).validate()
    for values in itertools.product(*(grid[n] for n in names))
  ]


def static_part(config: Config) -> Config:
  """The config with its vmapped fields set to their defaults: equal for models of one group.

  Whether a model keeps an EMA of its parameters changes its state's structure, so models with
  ``ema_decay`` > 0 are grouped apart from those without (their decays are then vmapped).
  """
  defaults = Config()
  static = config.replace(**{name: getattr(defaults, name) for name in VMAPPED})
  if switchable(config):  # VAE and IWAE of one k: one group (the KL estimator is irrelevant to IWAE)
    static = static.replace(objective="vae", kl="mc")
  return static.replace(ema_decay=0.5) if config.ema_decay > 0 else static


def switchable(config: Config) -> bool:
  """Whether ``config`` trains Burda et al.'s VAE or IWAE (k samples, Monte-Carlo KL, no KL weighting).

  VAE and IWAE models of the same k then share one program: the objective is the traced switch of
  :func:`jaxvae.core.objectives.vae_or_iwae` (the same values and gradients as the two objectives).
  """
  if config.objective == "iwae":
    return True
  return (
    config.objective == "vae"
    and config.kl == "mc"
    and config.beta == 1
    and config.warmup_epochs == 0
    and config.free_bits == 0
  )


def _switch_objective(config: Config) -> objectives.Objective:
  return objectives.vae_or_iwae(config.k, iwae=config.objective == "iwae")


def group_configs(configs: list[Config]) -> list[list[int]]:
  """Indices of ``configs`` grouped by :func:`static_part`, groups in order of first appearance."""
  groups: dict[Config, list[int]] = {}
  for i, c in enumerate(configs):
    groups.setdefault(static_part(c), []).append(i)
  return list(groups.values())


def model_name(config: Config, axes: list[str]) -> str:
  """``"beta=0.5,seed=1"`` from the swept axes of a config."""

  def text(v):
    return "/".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)

  return ",".join(f"{a}={text(getattr(config, a))}" for a in axes) or "model"


# ---------------------------------------------------------------------------
# Training a group of models as one program.
# ---------------------------------------------------------------------------


class GroupResult(NamedTuple):
  """What :func:`train_group` returns, one entry per model, in the order of its configs.

  Attributes:
    configs: each model's config, naming the model, objective and data it trained with.
    states: the final TrainState of each model (host arrays; a diverged model's at its stop).
    rows: each model's metrics rows, one dict per epoch (as `jaxvae train` writes them).
    active_units: each model's active units per stochastic layer on the test set.
    diverged: each model's ``(epoch, skips)`` at its divergence stop, or None.
    signal: the stop signal that ended the group early, or None.
    compile_seconds: compilation of the group's program.
    train_seconds: time in the training epochs (compile excluded).
    images: training examples processed, all models together.
    setup: the group's :class:`jaxvae.runs.run.Setup` (its trainer and data).
  """

  configs: list[Config]
  states: list[Any]
  rows: list[list[dict[str, Any]]]
  active_units: list[list[int]]
  diverged: list[tuple[int, int] | None]
  signal: int | None
  compile_seconds: float
  train_seconds: float
  images: int
  setup: Any


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def train_group(
  configs: list[Config],
  data: Dataset | None = None,
  *,
  model=None,
  objective=None,
  models_per_program: int | None = None,
  devices=None,
  progress: bool = False,
  log=None,
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
    configs: the models; :func:`static_part` must be equal for all of them.
    data: the dataset (default: the configs' ``dataset``).
    model, objective: as in :func:`jaxvae.runs.run.train_and_evaluate`; an objective factory is
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
  static = static_part(configs[0])
  if any(static_part(c) != static for c in configs):
    raise ValueError("train_group needs configs that differ only in vmapped fields; use run_sweep")
  devices = list(devices if devices is not None else jax.devices())
  main = jax.process_index() == 0  # several processes: process 0 writes
  if models_per_program is None:
    models_per_program = 4 if devices[0].platform == "cpu" else len(configs)
  n_dev = len(devices)
  # Models per program: a multiple of the device count, no more than the group needs.
  per_program = n_dev * max(1, min(models_per_program, math.ceil(len(configs) / n_dev)))
  stacked, replicated = model_shardings(devices)

  # VAE and IWAE of the same k in one program, unless some models of the group are of one kind
  # only (then each objective keeps its own metrics, e.g. the vae objective's kl_weight).
  switched = objective is None and switchable(configs[0]) and len({c.objective for c in configs}) > 1
  if switched:
    objective = _switch_objective
  else:  # one objective: build it as configured
    static = static.replace(objective=configs[0].objective, kl=configs[0].kl)
  bar = EpochBar(progress and jax.process_index() == 0)
  setup = prepare(static, model=model, objective=objective, data=data, on_progress=bar)
  trainer, vae = setup.trainer, setup.vae
  steps = trainer.steps_per_epoch(len(setup.train))
  checked_train = vae.likelihood.check(setup.data.train, "training data")
  checked_test = vae.likelihood.check(setup.data.test, "test data")
  own = lambda c: {"objective": c.objective, "kl": c.kl} if switched else {}  # noqa: E731
  named = [setup.config.replace(**own(c), **{n: getattr(c, n) for n in VMAPPED}) for c in configs]
  live: dict[str, Any] = {}  # the chunk in flight: its first model's index, keys, test data and latest state

  def pictures(i: int):
    """Model i's pictures from its state after the epoch in flight (see :func:`jaxvae.runs.run.images`)."""
    m = i - live["start"]
    params = jax.tree.map(lambda a: a[m], eval_params(live["state"]))
    x = live["test_x"][m] if test_axis == 0 else live["test_x"]
    return images(vae, params, x.astype(jnp.float32), live["keys"][m].plot)

  # Pictures index the stacked state on this process: not in a job of several processes.
  shown = (lambda i: functools.partial(pictures, i)) if jax.process_count() == 1 else (lambda i: None)
  runs = [
    Run(folder, config, name, pictures=shown(i))
    for i, (folder, config, name) in enumerate(zip(folders or [], named, names or [None] * len(named)))
  ]
  for run in runs if main else []:
    write_run_files(run.workdir, run.config, [])
    call(callbacks, "start", run)

  # Data: shared by all models unless their binarization seeds differ.
  per_model_data = len({c.binarization_seed for c in configs}) > 1
  static_train = static.binarization == "static" and checked_train.dtype == np.uint8

  @functools.cache
  def data_for(binarization_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training data as the step reads them and the fixed test set, drawn once per binarization seed."""
    config = static.replace(binarization_seed=binarization_seed)
    train = static_binarize(checked_train, data_key(config, 0)) if static_train else checked_train
    test = fixed_test_set(config, vae, checked_test)
    return train, test.astype(np.uint8) if vae.likelihood.name == "bernoulli" else test  # 0/1: a quarter of the memory

  def train_set(config):
    return data_for(config.binarization_seed)[0]

  def test_set(config):
    return data_for(config.binarization_seed)[1]

  train_axis = 0 if per_model_data and static_train else None
  test_axis = 0 if per_model_data else None
  epoch = trainer.epoch(stacked=True, data_axis=train_axis, on_progress=bar)
  program = Program(
    epoch=epoch,
    evaluate=jax.jit(
      jax.vmap(lambda p, x, k: trainer.evaluate_fn(p, x.astype(jnp.float32), k), in_axes=(0, test_axis, 0))
    ),
    variances=jax.jit(
      jax.vmap(
        lambda p, x, k: latent_variances(vae, p, x.astype(jnp.float32), k, static.eval_batch_size),
        in_axes=(0, test_axis, 0),
      )
    ),
    fold=jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)), out_shardings=stacked),
    models=0,
    stacked=True,
  )

  out_states, out_rows, out_active, out_diverged = [], [], [], []
  compile_seconds = train_seconds = 0.0
  compiled = False
  examples, stop_signal = 0, None
  for start in range(0, len(configs), per_program):
    chunk = configs[start : start + per_program]
    padded = chunk + [chunk[-1]] * (per_program - len(chunk))
    keys = [run_keys(c.seed) for c in padded]
    states = []
    for c, k in zip(padded, keys):
      st = trainer.init(k.init, train_set(c))
      hparams = make_objective(c, objective, steps).hparams
      ema = st.ema._replace(decay=jnp.float32(c.ema_decay)) if st.ema is not None else None
      states.append(st._replace(hparams=hparams, opt_state=with_learning_rate(st.opt_state, c.lr), ema=ema))
    states = place(_stack(states), stacked)
    if train_axis == 0:
      train_x = place(np.stack([train_set(c) for c in padded]), stacked)
    else:
      train_x = place(train_set(padded[0]), replicated)
    test_x = place(
      np.stack([test_set(c) for c in padded]) if test_axis == 0 else test_set(padded[0]),
      stacked if test_axis == 0 else replicated,
    )
    k_train, k_eval = place((jnp.stack([k.train for k in keys]), jnp.stack([k.eval for k in keys])), stacked)
    if not compiled:
      t0 = time.perf_counter()
      epoch.compile(states, train_x, k_train)
      compile_seconds, compiled = time.perf_counter() - t0, True

    live.update(start=start, keys=keys, test_x=test_x)

    def on_row(m, row, start=start):
      if folders is not None and main:
        append_row(folders[start + m], row)
        call(callbacks, "epoch", runs[start + m], row)

    def line(last, start=start, n=len(chunk)):
      elbos = [r["test_elbo"] for r in last]
      return (
        f"models {start + 1}-{start + n}/{len(configs)} epoch {last[0]['epoch']}/{static.epochs}: test ELBO "
        f"{min(elbos):.2f} .. {max(elbos):.2f}, {last[0]['images_per_sec'] * n:,.0f} images/s (all models), "
        f"{last[0]['seconds']:.2f} s"
      )

    outcome = run_epochs(
      program._replace(models=len(chunk)),
      states,
      train_x,
      test_x,
      k_train,
      k_eval,
      config=static,
      start_epoch=0,
      steps=steps,
      on_row=on_row,
      on_state=lambda state: live.update(state=state),
      log=log or (lambda s: None),
      bar=bar,
      label=f"models {start + 1}-{start + len(chunk)} of {len(configs)}, ",
      line=line,
    )
    train_seconds += outcome.train_seconds
    examples += max(len(r) for r in outcome.rows) * steps * static.batch_size * len(chunk)
    variances = to_host(program.variances(place(to_host(eval_params(outcome.state)), stacked), test_x, k_eval))
    host_states = to_host(outcome.state)
    for m in range(len(chunk)):
      out_states.append(jax.tree.map(lambda a: a[m], host_states))
      out_rows.append(outcome.rows[m])
      out_active.append(active_units([v[m] for v in variances]))
      out_diverged.append(outcome.diverged[m])
    if outcome.signal:
      stop_signal = outcome.signal
      break
  return GroupResult(
    named[: len(out_rows)],
    out_states,
    out_rows,
    out_active,
    out_diverged,
    stop_signal,
    compile_seconds,
    train_seconds,
    examples,
    setup,
  )


# ---------------------------------------------------------------------------
# The sweep: groups in turn, one table, one figure, the best model as a run folder.
# ---------------------------------------------------------------------------


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
  reads every one) and ``best/``, the model with the
  highest test ELBO as a complete run folder (`jaxvae eval --workdir W/best` reads it).
  The folder rules of :func:`jaxvae.runs.run.train_and_evaluate` hold.

  Args:
    configs: the models.
    workdir: the sweep folder.
    model, objective: factories (or values) as in :func:`jaxvae.runs.run.train_and_evaluate`.
    data: the dataset (default: the configs' ``dataset``, which must be one).
    callbacks: :class:`jaxvae.Callback` values, called for each model as for a run (its
      :class:`jaxvae.watch.callbacks.Run` names it and its folder ``W/models/<name>``).

  Returns:
    The rows, sorted by test ELBO (best first).

  Raises:
    RunStopped: a signal stopped the sweep after the epoch in flight; what was trained is written.
  """
  from jaxvae.runs.build import load_data
  from jaxvae.training.checkpoint import save_checkpoint

  t_start = time.perf_counter()
  if not configs:
    raise JaxvaeError("the sweep has no configs: give at least one --grid NAME=VALUES or --configs FILE")
  configs = [c.validate() for c in configs]
  if len(set(configs)) != len(configs):
    raise JaxvaeError("the sweep lists the same config twice: remove the duplicates")
  if data is None:
    if len({(c.dataset, c.tfds_data_dir, c.image_size) for c in configs}) > 1:
      raise JaxvaeError("a sweep runs on one dataset: give --dataset once, not as a grid axis")
    limits = {
      name: None if any(getattr(c, name) is None for c in configs) else max(getattr(c, name) for c in configs)
      for name in ("n_train", "n_test")
    }
    data = load_data(configs[0].replace(**limits))
  axes = [f.name for f in dataclasses.fields(Config) if len({getattr(c, f.name) for c in configs}) > 1]
  names = [model_name(c, axes) for c in configs]
  on_process_0(lambda: prepare_workdir(workdir, overwrite))
  main = jax.process_index() == 0  # several processes: process 0 writes, all take part in the checkpoints
  log = (lambda s: print(s, flush=True)) if verbose and main else None

  groups = group_configs(configs)
  if log:
    log(
      f"jaxvae sweep: {len(configs)} models in {len(groups)} group(s) of shared shapes; "
      f"swept: {', '.join(axes) or 'nothing'}"
    )
  folders = [os.path.join(workdir, "models", name) for name in names]
  results: dict[int, tuple[Any, ...]] = {}
  timing, stop_signal = [], None
  for g, indices in enumerate(groups):
    if log:
      log(f"group {g + 1}/{len(groups)}: {len(indices)} models ({names[indices[0]]} ...)")
    t_group = time.perf_counter()
    r = train_group(
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
    timing.append(
      {
        "group": g,
        "models": len(indices),
        "compile_seconds": r.compile_seconds,
        "train_seconds": r.train_seconds,
        "images_per_sec": r.images / max(r.train_seconds, 1e-9),
      }
    )
    for j, i in enumerate(indices[: len(r.rows)]):
      completed = r.diverged[j] is None and r.rows[j][-1]["epoch"] == configs[i].epochs
      summary = summarize(
        r.configs[j],
        r.rows[j],
        completed=completed,
        data_shape=r.setup.vae.data_shape,
        active=r.active_units[j],
        train_seconds=r.train_seconds,
        compile_seconds=r.compile_seconds,
        t_start=t_group,
        n_train=len(r.setup.train),
        n_test=len(r.setup.test),
        models_in_program=1,
      )
      summary.update(trained_in="jaxvae sweep", group=g)
      if r.diverged[j] is not None:
        summary["stopped"] = diverged_message(*r.diverged[j], "the model's state at that epoch is kept")
      if main:
        write_json(os.path.join(folders[i], "summary.json"), summary)
        call(callbacks, "end", Run(folders[i], r.configs[j], names[i]), summary)
      save_checkpoint(folders[i], r.rows[j][-1]["epoch"], r.states[j], run_keys(configs[i].seed).train, keep=1)
      results[i] = (r.configs[j], r.states[j], r.rows[j], summary, r.setup)
    if r.signal:
      stop_signal = r.signal
      break

  done = sorted(results)
  table = []
  for i in done:
    config, (_, _, rows, summary, _) = configs[i], results[i]
    last = rows[-1]
    row = {"name": names[i], "group": summary["group"]}
    row.update(
      {a: (list(getattr(config, a)) if isinstance(getattr(config, a), tuple) else getattr(config, a)) for a in axes}
    )
    row.update(
      train_elbo=last.get("train_elbo"),
      test_elbo=last["test_elbo"],
      train_kl=last.get("train_kl"),
      test_kl=last["test_kl"],
      kl=last["test_kl"],
      test_log_p_x_given_z=last["test_log_p_x_given_z"],
      active_units=summary["active_units"],
      epochs=last["epoch"],
      completed=summary["completed"],
    )
    table.append(row)
  table.sort(key=lambda r: -r["test_elbo"])

  best = names.index(table[0]["name"])
  _write_best(results[best], os.path.join(workdir, "best"), main)
  if main:
    _write_table(workdir, table, axes, timing, t_start)
  if log:
    log(format_table(table, axes))
    log(
      f"best: {table[0]['name']} (test ELBO {table[0]['test_elbo']:.3f}); run folder {os.path.join(workdir, 'best')}; "
      f"{time.perf_counter() - t_start:.1f} s in all"
    )
  if stop_signal:
    import signal

    partial = sum(1 for r in table if not r["completed"])
    raise RunStopped(
      f"jaxvae: sweep stopped by {signal.Signals(stop_signal).name}: {len(done)} of {len(configs)} models trained, "
      f"{partial} of them stopped early (completed: false), all written to {workdir}; a sweep does not resume: "
      "rerun it into a new --workdir",
      128 + stop_signal,
    )
  return table


def _write_table(
  workdir: str, table: list[dict[str, Any]], axes: list[str], timing: list[dict], t_start: float
) -> None:
  """``sweep.json``, ``sweep.csv`` and ``sweep.png``."""
  from jaxvae.watch import plots

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


def _write_best(result, folder: str, main: bool = True) -> None:
  """The best model as a `jaxvae train` run folder: config, metrics, summary, checkpoint, figures.

  Several processes call it together (the checkpoint is written by all); ``main``: this process writes the files.
  """
  from jaxvae.training.checkpoint import save_checkpoint

  config, state, rows, summary, setup = result
  keys = run_keys(config.seed)
  save_checkpoint(folder, rows[-1]["epoch"], state, keys.train)
  if not main:
    return
  write_run_files(folder, config, rows)
  write_json(os.path.join(folder, "summary.json"), summary)
  test_x = jnp.asarray(fixed_test_set(config, setup.vae, setup.vae.likelihood.check(setup.data.test[:64], "test data")))
  save_figures(setup.vae, eval_params(state), test_x, keys.plot, folder)


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
