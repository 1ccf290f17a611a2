"""Hyperparameter sweeps as one program: stacked states, ``jax.vmap``, and device meshes.

Every model of a sweep is a :class:`jaxvae.train.TrainState`; the states of models that
share array shapes are stacked along a leading "models" axis and trained by

  jax.jit(jax.vmap(train_epoch, in_axes=(0, None, 0)))(states, images, keys)

one scanned epoch at a time: one compilation and one program for the whole group. The
axes that keep shapes are arrays in the state or the keys, so they are vmapped (see
:data:`VMAPPED`): the seed (initialisation, data order, binarization draws, z samples),
beta, warm-up and free bits (``state.hparams``), the learning rate
(``optax.inject_hyperparams``), and the binarization seed (the fixed test set, and the
training set if static). Every other field (latent size, widths, k, model, objective,
batch size...) defines a group; groups are compiled once each and run in turn.

A model trained in a sweep follows the same random stream as the same config trained
alone by `jaxvae train`, so its parameters agree to float32 rounding.

With several devices, the models axis is sharded over a 1-D :class:`jax.sharding.Mesh`
(``NamedSharding(mesh, P("models"))``) and the data replicated: the same program, placed.
:func:`data_parallel_shardings` gives the other layout, one big model with its batches
split over all devices.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxvae import plots
from jaxvae.checkpoint import save_checkpoint
from jaxvae.config import Config, JaxvaeError
from jaxvae.data import ImageDataset, check_images, load_dataset, prepare_test_set, static_binarize
from jaxvae.run import EpochBar, prepare_workdir, save_figures, write_json, write_run_files
from jaxvae.train import HParams, make_trainer, with_learning_rate

# Config fields that a sweep vmaps: they change values, never shapes.
VMAPPED = ("seed", "beta", "lr", "warmup_epochs", "free_bits", "binarization_seed")
ACTIVE_UNIT_THRESHOLD = 0.01


# ---------------------------------------------------------------------------
# Grids and groups.
# ---------------------------------------------------------------------------


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
  """``["beta=0.5,1,2", "hidden=400,200/200"]`` -> ``{"beta": [0.5, 1.0, 2.0], "hidden": [(400,), (200, 200)]}``.

  Values are parsed as the config field's type; in tuple fields ``/`` separates the widths
  of one value. Raises :class:`JaxvaeError` for an unknown field or an unparsable value.
  """
  fields = {f.name: f for f in dataclasses.fields(Config)}
  grid: dict[str, list[Any]] = {}
  for item in items:
    name, sep, values = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not values.strip():
      raise JaxvaeError(f"--grid {item!r} is not NAME=V1,V2,...: write e.g. --grid beta=0.5,1,2")
    if name not in fields:
      raise JaxvaeError(f"--grid {name!r} is not a config field: use one of {', '.join(sorted(fields))}")
    default = getattr(Config(), name)
    parsed = []
    for text in values.split(","):
      text = text.strip()
      try:
        if name in ("hidden", "hidden2"):
          parsed.append(tuple(int(w) for w in text.split("/")))
        elif name in ("n_train", "n_test", "latent_dim", "latent_dim2") or isinstance(default, bool):
          parsed.append(int(text))
        elif isinstance(default, int):
          parsed.append(int(text))
        elif isinstance(default, float):
          parsed.append(float(text))
        else:
          parsed.append(text)
      except ValueError:
        raise JaxvaeError(f"--grid {name}={text!r}: not a valid value for {name}") from None
    if name in grid:
      raise JaxvaeError(f"--grid {name} is given twice: list all its values in one --grid")
    grid[name] = parsed
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
  """The config with its vmapped fields set to their defaults: equal for models of one group."""
  defaults = Config()
  return config.replace(**{name: getattr(defaults, name) for name in VMAPPED})


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
# Placement.
# ---------------------------------------------------------------------------


def model_mesh(devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all) whose axis is named ``"models"``."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("models",))


def data_parallel_shardings(batch_size: int, devices=None) -> tuple[NamedSharding, NamedSharding]:
  """``(batch_sharding, replicated)`` for data parallelism over all devices.

  Batches are split along their first axis over a 1-D mesh named ``"data"``; the
  parameters, optimizer state and dataset are replicated. Under ``jit`` XLA partitions
  the step and all-reduces the gradients: the update is the single-device update up to
  the order of the floating-point sums.
  """
  devices = np.asarray(devices if devices is not None else jax.devices())
  if batch_size % devices.size:
    raise JaxvaeError(
        f"batch_size={batch_size} does not split over {devices.size} devices: use a multiple of {devices.size}"
    )
  mesh = Mesh(devices, ("data",))
  return NamedSharding(mesh, P("data")), NamedSharding(mesh, P())


def initialize_distributed() -> bool:
  """Calls ``jax.distributed.initialize()`` when a multi-process cluster environment is present.

  Recognised: an explicit coordinator (``JAX_COORDINATOR_ADDRESS``), a SLURM job step with
  more than one task, an Open MPI job with more than one rank, and a multi-host Cloud TPU
  slice; JAX then reads the process count and ids from that environment. Returns whether
  it initialised. Call it before any other JAX call.
  """
  env = os.environ
  multi = (
      "JAX_COORDINATOR_ADDRESS" in env
      or int(env.get("SLURM_NTASKS", "1")) > 1
      or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
      or "," in env.get("TPU_WORKER_HOSTNAMES", "")
  )
  if multi:
    jax.distributed.initialize()
  return multi


# ---------------------------------------------------------------------------
# Training a group of models as one program.
# ---------------------------------------------------------------------------


class GroupResult(NamedTuple):
  """What :func:`train_group` returns, one entry per model, in the order of its configs.

  Attributes:
    states: the final TrainState of each model (host arrays).
    rows: each model's metrics rows, one dict per epoch (as `jaxvae train` writes them).
    active_units: each model's active units per stochastic layer on the test set.
    compile_seconds: compilation of the group's program.
    train_seconds: time in the training epochs (compile excluded).
    images: training images processed, all models together.
  """

  states: list[Any]
  rows: list[list[dict[str, float]]]
  active_units: list[list[int]]
  compile_seconds: float
  train_seconds: float
  images: int


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def train_group(
    configs: list[Config],
    dataset: ImageDataset,
    *,
    models_per_program: int | None = None,
    devices=None,
    progress: bool = False,
    log=None,
) -> GroupResult:
  """Trains models whose configs differ only in :data:`VMAPPED` fields, as stacked states.

  The models are trained in chunks of ``models_per_program`` x (number of devices): one
  vmapped, jitted epoch per chunk and epoch, the chunk's models sharded over the devices.
  All chunks have the same shapes (the last is padded with copies), so the program is
  compiled once.

  Args:
    configs: the models; ``static_part`` must be equal for all of them.
    dataset: the data.
    models_per_program: models per device in one program (default: 4 on CPU, where
      larger stacks stop fitting the caches; all on accelerators).
    devices: devices for the models axis (default: all local devices).
    progress: a progress bar per epoch.
    log: ``str -> None`` for a line per epoch (default: silent).

  Returns:
    A :class:`GroupResult`.
  """
  static = static_part(configs[0])
  if any(static_part(c) != static for c in configs):
    raise ValueError("train_group needs configs that differ only in vmapped fields; use run_sweep")
  devices = list(devices if devices is not None else jax.local_devices())
  if models_per_program is None:
    models_per_program = 4 if devices[0].platform == "cpu" else len(configs)
  n_dev = len(devices)
  # Models per program: a multiple of the device count, no more than the group needs.
  per_program = n_dev * max(1, min(models_per_program, math.ceil(len(configs) / n_dev)))
  mesh = model_mesh(devices)
  stacked, replicated = NamedSharding(mesh, P("models")), NamedSharding(mesh, P())

  train_full = check_images(dataset.train_images[: static.n_train], "training images")
  if train_full.shape[0] < static.batch_size:
    raise JaxvaeError(
        f"batch_size={static.batch_size} is larger than the training set ({train_full.shape[0]} images): "
        "lower --batch-size or use more training images"
    )
  bar = EpochBar(progress)
  trainer = make_trainer(static, dataset.image_shape, on_progress=bar, train_size=len(train_full))
  steps = trainer.steps_per_epoch(len(train_full))
  spe = steps  # steps per epoch, for the warm-up length

  # Data: shared by all models unless their binarization seeds differ.
  seeds = sorted({c.binarization_seed for c in configs})
  per_model_data = len(seeds) > 1
  static_train = static.likelihood == "bernoulli" and static.binarization == "static"

  def train_set(seed):
    if static_train:
      return static_binarize(train_full, jax.random.fold_in(jax.random.key(seed), 0))
    return train_full

  def test_set(seed):
    test = prepare_test_set(static.replace(binarization_seed=seed), dataset)
    return test.astype(np.uint8) if static.likelihood == "bernoulli" else test  # 0/1 values: a quarter of the memory

  train_vmap = jax.vmap(trainer.scan_epoch, in_axes=(0, 0 if per_model_data and static_train else None, 0))
  eval_vmap = jax.vmap(
      lambda params, x, key: trainer.evaluate(params, x.astype(jnp.float32), key), in_axes=(0, 0 if per_model_data else None, 0)
  )
  vae = trainer.vae

  def latent_variances(params, x, key):
    means = vae.latent_means(params, x.astype(jnp.float32), key)
    return tuple(jnp.var(m, axis=0) for m in means)

  var_vmap = jax.vmap(latent_variances, in_axes=(0, 0 if per_model_data else None, 0))
  epoch_fn = jax.jit(train_vmap, donate_argnums=0)
  eval_fn = jax.jit(eval_vmap)
  var_fn = jax.jit(var_vmap)

  out_states, out_rows, out_active = [], [], []
  compile_seconds = train_seconds = 0.0
  compiled = None
  images = 0
  for start in range(0, len(configs), per_program):
    chunk = configs[start : start + per_program]
    padded = chunk + [chunk[-1]] * (per_program - len(chunk))
    keys = jnp.stack([jax.random.split(jax.random.key(c.seed), 4) for c in padded])  # [M, 4]
    k_init, k_train, k_eval, k_plot = (keys[:, i] for i in range(4))
    init_data = train_full if static.prior == "vamp" else None
    states = jax.vmap(lambda k: trainer.init(k, init_data))(k_init)
    hparams = HParams(
        beta=jnp.asarray([c.beta for c in padded], jnp.float32),
        warmup_steps=jnp.asarray([c.warmup_epochs * spe for c in padded], jnp.float32),
        free_bits=jnp.asarray([c.free_bits for c in padded], jnp.float32),
    )
    states = states._replace(
        hparams=hparams, opt_state=with_learning_rate(states.opt_state, jnp.asarray([c.lr for c in padded], jnp.float32))
    )
    if per_model_data:
      train_x = np.stack([train_set(c.binarization_seed) for c in padded]) if static_train else train_full
      test_x = np.stack([test_set(c.binarization_seed) for c in padded])
      data_sharding = stacked
    else:
      train_x, test_x, data_sharding = train_set(seeds[0]), test_set(seeds[0]), replicated
    states = jax.device_put(states, stacked)
    train_x = jax.device_put(train_x, data_sharding if (per_model_data and static_train) else replicated)
    test_x = jax.device_put(test_x, data_sharding)
    k_train, k_eval = jax.device_put((k_train, k_eval), stacked)

    if compiled is None:
      t0 = time.perf_counter()
      compiled = epoch_fn.lower(states, train_x, k_train).compile()
      compile_seconds = time.perf_counter() - t0
    rows = [[] for _ in padded]
    fold = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)), out_shardings=stacked)
    for epoch in range(1, static.epochs + 1):
      bar.start(f"models {start + 1}-{start + len(chunk)} of {len(configs)}, epoch {epoch}/{static.epochs}", steps)
      t0 = time.perf_counter()
      states, train_m = compiled(states, train_x, fold(k_train, epoch))
      train_m = jax.device_get(train_m)
      seconds = time.perf_counter() - t0
      bar.close()
      train_seconds += seconds
      images += steps * static.batch_size * len(chunk)
      test_m = jax.device_get(eval_fn(states.params, test_x, k_eval))
      for m in range(len(chunk)):
        row = {"epoch": epoch}
        row.update({f"train_{k}": float(v[m]) for k, v in train_m.items()})
        row.update({f"test_{k}": float(v[m]) for k, v in test_m.items()})
        row.update(kl=row["test_kl"], images_per_sec=steps * static.batch_size * len(chunk) / seconds, seconds=seconds)
        rows[m].append(row)
      if log is not None:
        best = max(range(len(chunk)), key=lambda m: rows[m][-1]["test_elbo"])
        log(
            f"models {start + 1}-{start + len(chunk)}/{len(configs)} epoch {epoch}/{static.epochs}: test ELBO "
            f"{min(r[-1]['test_elbo'] for r in rows[: len(chunk)]):.2f} .. {rows[best][-1]['test_elbo']:.2f}, "
            f"{steps * static.batch_size * len(chunk) / seconds:,.0f} images/s (all models), {seconds:.2f} s"
        )
    variances = jax.device_get(var_fn(states.params, test_x, k_eval))
    host_states = jax.device_get(states)
    for m in range(len(chunk)):
      out_states.append(jax.tree.map(lambda a: a[m], host_states))
      out_rows.append(rows[m])
      out_active.append([int(np.sum(v[m] > ACTIVE_UNIT_THRESHOLD)) for v in variances])
  return GroupResult(out_states, out_rows, out_active, compile_seconds, train_seconds, images)


# ---------------------------------------------------------------------------
# The sweep: groups in turn, one table, one figure, the best model as a run folder.
# ---------------------------------------------------------------------------


def run_sweep(
    configs: list[Config],
    workdir: str,
    *,
    overwrite: bool = False,
    dataset: ImageDataset | None = None,
    models_per_program: int | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> list[dict[str, Any]]:
  """Trains every config, grouped by shapes, and writes the sweep folder ``workdir``.

  ``workdir`` receives ``sweep.csv`` and ``sweep.json`` (one row per model: its swept
  fields, final train/test ELBO, KL, active units), ``sweep.png`` (test ELBO against each
  swept axis), ``models/<name>/`` (each model's config.json and metrics.jsonl) and ``best/``,
  the model with the highest test ELBO as a complete run folder (`jaxvae eval --workdir
  W/best` reads it). The folder rules of :func:`jaxvae.train.train_and_evaluate` hold.

  Returns:
    The rows, sorted by test ELBO (best first).
  """
  t_start = time.perf_counter()
  if not configs:
    raise JaxvaeError("the sweep has no configs: give at least one --grid NAME=VALUES or --configs FILE")
  configs = [c.validate() for c in configs]
  if len(set(configs)) != len(configs):
    raise JaxvaeError("the sweep lists the same config twice: remove the duplicates")
  if dataset is None:
    names = {(c.dataset, c.tfds_data_dir, c.image_size) for c in configs}
    if len(names) > 1:
      raise JaxvaeError("a sweep runs on one dataset: give --dataset once, not as a grid axis")
    dataset = load_dataset(configs[0].dataset, configs[0].tfds_data_dir, configs[0].image_size)
  axes = [f.name for f in dataclasses.fields(Config) if len({getattr(c, f.name) for c in configs}) > 1]
  names = [model_name(c, axes) for c in configs]
  prepare_workdir(workdir, overwrite)
  log = tqdm.tqdm.write if verbose else None

  groups = group_configs(configs)
  if log:
    log(f"jaxvae sweep: {len(configs)} models in {len(groups)} group(s) of shared shapes; swept: {', '.join(axes) or 'nothing'}")
  results: dict[int, tuple[Any, list[dict], list[int]]] = {}
  timing = []
  for g, indices in enumerate(groups):
    group = [configs[i] for i in indices]
    if log:
      log(f"group {g + 1}/{len(groups)}: {len(group)} models ({names[indices[0]]} ...)")
    r = train_group(group, dataset, models_per_program=models_per_program, progress=progress, log=log)
    timing.append({"group": g, "models": len(group), "compile_seconds": r.compile_seconds,
                   "train_seconds": r.train_seconds, "images_per_sec": r.images / r.train_seconds})  # fmt: skip
    for i, state, rows, active in zip(indices, r.states, r.rows, r.active_units):
      results[i] = (state, rows, active)

  table = []
  for i, config in enumerate(configs):
    state, rows, active = results[i]
    write_run_files(os.path.join(workdir, "models", names[i]), config, rows)
    last = rows[-1]
    row = {"name": names[i], "group": next(g for g, idx in enumerate(groups) if i in idx)}
    row.update({a: (list(getattr(config, a)) if isinstance(getattr(config, a), tuple) else getattr(config, a)) for a in axes})
    row.update(
        train_elbo=last["train_elbo"], test_elbo=last["test_elbo"], train_kl=last["train_kl"], test_kl=last["test_kl"],
        kl=last["test_kl"], test_log_p_x_given_z=last["test_log_p_x_given_z"], active_units=int(sum(active)),
        epochs=config.epochs,
    )  # fmt: skip
    table.append(row)
  table.sort(key=lambda r: -r["test_elbo"])

  best = names.index(table[0]["name"])
  _write_best(configs[best], results[best], dataset, os.path.join(workdir, "best"))
  write_json(os.path.join(workdir, "sweep.json"), {"axes": axes, "rows": table, "groups": timing,
                                                    "seconds": time.perf_counter() - t_start})  # fmt: skip
  with open(os.path.join(workdir, "sweep.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(table[0]))
    writer.writeheader()
    for r in table:
      writer.writerow({k: ("/".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
  plots.save_sweep(os.path.join(workdir, "sweep.png"), table, axes)
  if log:
    log(format_table(table, axes))
    log(f"best: {table[0]['name']} (test ELBO {table[0]['test_elbo']:.3f}); run folder {os.path.join(workdir, 'best')}; "
        f"{time.perf_counter() - t_start:.1f} s in all")  # fmt: skip
  return table


def _write_best(config: Config, result, dataset: ImageDataset, folder: str) -> None:
  """The best model as a `jaxvae train` run folder: config, metrics, summary, checkpoint, figures."""
  state, rows, active = result
  write_run_files(folder, config, rows)
  last = rows[-1]
  write_json(os.path.join(folder, "summary.json"), {
      "epochs": config.epochs, "test_elbo": last["test_elbo"], "test_kl": last["test_kl"],
      "test_log_p_x_given_z": last["test_log_p_x_given_z"], "train_elbo": last["train_elbo"],
      "active_units": int(sum(active)), "trained_in": "jaxvae sweep",
  })  # fmt: skip
  save_checkpoint(folder, config.epochs, state, jax.random.split(jax.random.key(config.seed), 4)[1])
  trainer = make_trainer(config, dataset.image_shape)
  test_x = jnp.asarray(prepare_test_set(config, dataset)[:64])
  save_figures(trainer.vae, state.params, test_x, jax.random.split(jax.random.key(config.seed), 4)[3], folder)


def format_table(table: list[dict[str, Any]], axes: list[str]) -> str:
  """The sweep's rows as aligned text, best first."""
  cols = [*axes, "test_elbo", "train_elbo", "kl", "active_units"]
  text = [[("/".join(map(str, r[c])) if isinstance(r[c], list) else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]))
           for c in cols] for r in table]  # fmt: skip
  widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
  lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
  lines += ["  ".join(v.rjust(w) for v, w in zip(t, widths)) for t in text]
  return "\n".join(lines)
