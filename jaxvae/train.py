"""Training: the state, one jitted step, one scanned epoch, and the test evaluation.

One optimizer step is one pure function

  train_step(state, batch, key) -> (state, metrics)

with the gradient of the (beta-)ELBO, the optax update and the metrics inside one
jit. One epoch is one ``lax.scan`` of that step over a shuffled pass through the
training set, which lives on the device; the state buffers are donated, and the
host sees the metrics once per epoch. Every hyperparameter that a sweep varies
without changing shapes (beta, warm-up, free bits, the learning rate) is an array
in the state, so ``jax.vmap`` over stacked states trains many models in one program.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from jaxvae import plots
from jaxvae.checkpoint import save_checkpoint
from jaxvae.config import Config, JaxvaeError
from jaxvae.data import ImageDataset, dynamic_binarize, load_dataset, static_binarize
from jaxvae.model import VAE, Params, make_vae
from jaxvae.objectives import beta_elbo_loss, elbo, importance_terms, iwae_bound, kl_warmup

Metrics = dict[str, jax.Array]


class HParams(NamedTuple):
  """Hyperparameters that live in the state as traced arrays (no recompile to change them).

  Attributes:
    beta: ``[]`` float32, the KL weight of the vae objective (1 = the ELBO).
    warmup_steps: ``[]`` float32, steps over which the KL weight rises from 0 to beta (0: none).
    free_bits: ``[]`` float32, the per-dimension KL floor in nats (0: none).
  """

  beta: jax.Array
  warmup_steps: jax.Array
  free_bits: jax.Array


class TrainState(NamedTuple):
  """Everything a training step reads and writes: a pytree of arrays.

  Attributes:
    params: ``{"encoder": ..., "decoder": ...}`` float32 parameters.
    opt_state: the optimizer state (see :func:`make_optimizer`); the learning rate
      is a ``[]`` float32 array in it (:func:`learning_rate`, :func:`with_learning_rate`).
    step: ``[]`` int32, optimizer steps taken.
    hparams: :class:`HParams`.
  """

  params: Params
  opt_state: optax.OptState
  step: jax.Array
  hparams: HParams


class Trainer(NamedTuple):
  """The pure functions that train and evaluate one configuration.

  Attributes:
    vae: the model.
    init: ``key -> TrainState``.
    train_step: ``(state, batch [B, H, W, C] uint8, key) -> (state, metrics)``, jitted.
    train_epoch: ``(state, images [N, H, W, C] uint8, key) -> (state, metrics)``, jitted,
      the state donated; metrics are means over the epoch's ``N // B`` steps.
    evaluate: ``(params, x [M, H, W, C] float32, key) -> metrics``, jitted: the
      single-sample ELBO and its terms averaged over all M examples of ``x``.
    steps_per_epoch: ``N -> N // B``.
  """

  vae: VAE
  init: Callable[[jax.Array], TrainState]
  train_step: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]
  train_epoch: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]
  evaluate: Callable[[Params, jax.Array, jax.Array], Metrics]
  steps_per_epoch: Callable[[int], int]


def burda_lr_factor(steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate factor of Burda et al. (2016): 10^(-i/7) for 3^i epochs, i = 0..7.

  Stage i starts at epoch (3^i - 1) / 2 (the sum of the earlier stages); after the
  3280 epochs of the eight stages the factor stays at 10^-1.
  """
  return optax.piecewise_constant_schedule(
      1.0, {steps_per_epoch * (3**i - 1) // 2: 10.0 ** (-1.0 / 7.0) for i in range(1, 8)}
  )


def make_optimizer(config: Config, steps_per_epoch: int = 1) -> optax.GradientTransformation:
  """Adam with its learning rate injected as a state array, times the configured schedule.

  ``optax.inject_hyperparams(optax.adam)`` keeps the learning rate in the optimizer
  state, so a sweep can give each model its own without recompiling; the ``burda``
  schedule multiplies the updates by :func:`burda_lr_factor` (``optax.scale_by_schedule``).
  """
  adam = optax.inject_hyperparams(optax.adam)(
      learning_rate=config.lr, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps
  )
  if config.lr_schedule == "burda":
    return optax.chain(adam, optax.scale_by_schedule(burda_lr_factor(steps_per_epoch)))
  return adam


def _adam_state(opt_state):
  return opt_state[0] if isinstance(opt_state, tuple) and not hasattr(opt_state, "hyperparams") else opt_state


def learning_rate(opt_state) -> jax.Array:
  """The base learning rate held in a :func:`make_optimizer` state."""
  return _adam_state(opt_state).hyperparams["learning_rate"]


def with_learning_rate(opt_state, lr: jax.Array | float):
  """A copy of a :func:`make_optimizer` state with the base learning rate set to ``lr``."""
  adam = _adam_state(opt_state)
  new = adam._replace(hyperparams={**adam.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32)})
  return (new,) + tuple(opt_state[1:]) if adam is not opt_state else new


def make_preprocess(config: Config) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """``(key, uint8 batch) -> float32 x`` for the configured binarization.

  dynamic: x ~ Bernoulli(pixel / 255), a fresh draw each time an image is used.
  static: the images are already 0/1 (drawn once by ``data.static_binarize``).
  """
  if config.binarization == "dynamic":
    return dynamic_binarize
  return lambda key, batch: batch.astype(jnp.float32)


def map_batches(fn: Callable[[jax.Array, jax.Array], Any], x: jax.Array, batch_size: int) -> Any:
  """Applies ``fn(x_chunk, chunk_index)`` to consecutive chunks of ``x`` and concatenates.

  Full chunks go through one ``lax.map`` (so memory is bounded by one chunk);
  a remainder chunk, if any, is one more call. Shapes are static.

  Args:
    fn: maps ``[b, ...]`` inputs and an int32 chunk index to a pytree of ``[b, ...]`` outputs.
    x: ``[n, ...]`` inputs.
    batch_size: chunk size.

  Returns:
    The pytree of ``[n, ...]`` outputs.
  """
  n = x.shape[0]
  full, rest = divmod(n, batch_size)
  parts = []
  if full:
    chunks = x[: full * batch_size].reshape((full, batch_size) + x.shape[1:])
    out = jax.lax.map(lambda a: fn(*a), (chunks, jnp.arange(full, dtype=jnp.int32)))
    parts.append(jax.tree.map(lambda o: o.reshape((full * batch_size,) + o.shape[2:]), out))
  if rest:
    parts.append(fn(x[full * batch_size :], jnp.int32(full)))
  return jax.tree.map(lambda *o: jnp.concatenate(o), *parts)


def make_objective(config: Config, vae: VAE):
  """``objective(params, x, key, hparams, step) -> (loss, metrics)`` of ``config.objective``.

  vae:  loss = -(1/B) sum_b (1/k) sum_i log p_theta(x_b|z_bi) + beta_t * R (see
        :func:`jaxvae.objectives.beta_elbo_loss`), beta_t = :func:`kl_warmup` at ``step``.
  iwae: loss = -(1/B) sum_b log (1/k) sum_i w(z_bi)  (Burda et al. 2016).
  Metrics are batch means, in nats: loss, elbo, log_p_x_given_z, kl (and kl_weight, iwae).
  """
  k = config.k
  if config.objective == "iwae":

    def iwae_objective(params, x, key, hparams, step):
      del hparams, step
      t = importance_terms(vae, params, x, key, k)
      bound = jnp.mean(iwae_bound(t.log_w))
      metrics = {
          "loss": -bound,
          "iwae": bound,
          "elbo": jnp.mean(t.log_w),
          "log_p_x_given_z": jnp.mean(t.log_p_x_given_z),
          "kl": jnp.mean(t.log_q_z_given_x - t.log_p_z),
      }
      return -bound, metrics

    return iwae_objective

  analytic_kl = config.kl == "analytic"

  def vae_objective(params, x, key, hparams, step):
    terms = elbo(vae, params, x, key, k=k, analytic_kl=analytic_kl)
    kl_weight = kl_warmup(hparams.beta, hparams.warmup_steps)(step)
    loss = beta_elbo_loss(terms, kl_weight, hparams.free_bits)
    metrics = {
        "loss": loss,
        "elbo": jnp.mean(terms.elbo),
        "log_p_x_given_z": jnp.mean(terms.log_p_x_given_z),
        "kl": jnp.mean(terms.kl),
        "kl_weight": kl_weight,
    }
    return loss, metrics

  return vae_objective


def make_train_step(
    config: Config, vae: VAE, optimizer: optax.GradientTransformation
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
  """The pure (un-jitted) training step of ``config``.

  train_step(state, batch, key):
    x ~ preprocess(batch)                    (dynamic binarization uses one half of key)
    loss(theta, phi) = the objective of ``config`` (:func:`make_objective`), e.g.
      -(1/B) sum_b [ log p_theta(x_b|z_b) - beta * KL(q_phi(z|x_b) || p(z)) ]
    (theta, phi) <- optax update with grad loss
  returns the new state and the batch means of the objective's metrics.

  Args:
    config: supplies the binarization, the objective and the KL estimator (static choices).
    vae: the model.
    optimizer: an optax transformation (its hyperparameters may live in its state).

  Returns:
    ``train_step(state, batch [B, H, W, C] uint8, key) -> (state, metrics)``.
  """
  preprocess = make_preprocess(config)
  objective = make_objective(config, vae)

  def train_step(state: TrainState, batch: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
    k_x, k_z = jax.random.split(key)
    x = preprocess(k_x, batch)
    loss_fn = lambda params: objective(params, x, k_z, state.hparams, state.step)  # noqa: E731
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state, state.step + 1, state.hparams), metrics

  return train_step


def make_train_epoch(
    train_step: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]],
    batch_size: int,
    on_progress: Callable[[jax.Array], None] | None = None,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
  """One epoch as one ``lax.scan`` of ``train_step`` over a shuffled pass through the data.

  The data order is a permutation drawn from ``key``; the ``N mod B`` images
  left over after ``N // B`` full batches are skipped this epoch (a different
  few each epoch). The images stay on the device; each step gathers its batch.

  Args:
    train_step: the pure step.
    batch_size: B.
    on_progress: if given, called on the host (``jax.debug.callback``) with the
      number of steps done, about 50 times per epoch; it does not block the epoch.
    batch_sharding: data parallelism: each batch is constrained to this sharding
      (e.g. its first axis over a mesh of devices); with the state replicated, XLA
      partitions the step and sums the gradients across devices.

  Returns:
    ``train_epoch(state, images [N, H, W, C], key) -> (state, metrics)``, the
    metrics averaged over the epoch's steps.
  """

  def train_epoch(state: TrainState, images: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
    steps = images.shape[0] // batch_size
    report_every = max(1, steps // 50)
    k_order, k_steps = jax.random.split(key)
    order = jax.random.permutation(k_order, images.shape[0])[: steps * batch_size]
    xs = (order.reshape(steps, batch_size), jax.random.split(k_steps, steps), jnp.arange(1, steps + 1))

    def body(state, inputs):
      idx, k, done = inputs
      if on_progress is not None:
        jax.lax.cond(done % report_every == 0, lambda: jax.debug.callback(on_progress, done), lambda: None)
      batch = jnp.take(images, idx, axis=0)
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      return train_step(state, batch, k)

    state, metrics = jax.lax.scan(body, state, xs)
    return state, jax.tree.map(jnp.mean, metrics)

  return train_epoch


def make_evaluate(config: Config, vae: VAE) -> Callable[[Params, jax.Array, jax.Array], Metrics]:
  """``evaluate(params, x [M, H, W, C] float32, key) -> metrics``: the mean single-sample ELBO terms.

  The test set is evaluated in chunks of ``config.eval_batch_size`` (memory is
  bounded by one chunk); chunk i draws its z with ``fold_in(key, i)``.
  """
  analytic_kl = config.kl == "analytic"

  def evaluate(params: Params, x: jax.Array, key: jax.Array) -> Metrics:
    def chunk(xb, i):
      terms = elbo(vae, params, xb, jax.random.fold_in(key, i), analytic_kl=analytic_kl)
      return {"elbo": terms.elbo, "log_p_x_given_z": terms.log_p_x_given_z, "kl": terms.kl}

    return {name: jnp.mean(value) for name, value in map_batches(chunk, x, config.eval_batch_size).items()}

  return evaluate


def make_trainer(
    config: Config,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    on_progress: Callable[[jax.Array], None] | None = None,
    train_size: int | None = None,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> Trainer:
  """Builds the model, the optimizer and the jitted step, epoch and evaluation of ``config``.

  Only shapes and static choices are taken from ``config`` at build time; beta
  and the learning rate are arrays in the state, read at run time.

  Args:
    config: the run configuration.
    image_shape: (H, W, C) of the data.
    on_progress: see :func:`make_train_epoch`.
    train_size: training images per epoch, for the schedules that count epochs
      (KL warm-up, the burda learning rate); default ``config.n_train`` or 60,000.
    batch_sharding: see :func:`make_train_epoch` (data parallelism).

  Returns:
    A :class:`Trainer`.

  Example:
    >>> trainer = make_trainer(Config())
    >>> state = trainer.init(jax.random.key(0))
    >>> state, metrics = trainer.train_step(state, batch, jax.random.key(1))
  """
  steps_per_epoch = (train_size or config.n_train or 60_000) // config.batch_size
  vae = make_vae(config, image_shape)
  optimizer = make_optimizer(config, steps_per_epoch)
  train_step = make_train_step(config, vae, optimizer)

  def init(key: jax.Array) -> TrainState:
    params = vae.init(key)
    hparams = HParams(
        beta=jnp.asarray(config.beta, jnp.float32),
        warmup_steps=jnp.asarray(config.warmup_epochs * steps_per_epoch, jnp.float32),
        free_bits=jnp.asarray(config.free_bits, jnp.float32),
    )
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), hparams)

  return Trainer(
      vae=vae,
      init=init,
      train_step=jax.jit(train_step),
      train_epoch=jax.jit(
          make_train_epoch(train_step, config.batch_size, on_progress, batch_sharding), donate_argnums=0
      ),
      evaluate=jax.jit(make_evaluate(config, vae)),
      steps_per_epoch=lambda n: n // config.batch_size,
  )


# ---------------------------------------------------------------------------
# The run: train_and_evaluate(config, workdir) and its run folder.
# ---------------------------------------------------------------------------


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
          f"run folder {workdir} exists and is not empty: choose a new --workdir, or pass --overwrite to replace it"
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


def prepare_test_set(config: Config, dataset: ImageDataset) -> np.ndarray:
  """The test set as evaluation reads it: ``[M, H, W, C]`` float32, one fixed 0/1 draw.

  The draw comes from ``binarization_seed`` alone, so every run (whatever its ``seed``)
  and every later evaluation see the same test set.
  """
  test = dataset.test_images[: config.n_test]
  key = jax.random.fold_in(jax.random.key(config.binarization_seed), 1)
  return static_binarize(test, key).astype(np.float32)


def prepare_data(config: Config, dataset: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
  """The training images as the step reads them and the test set as evaluation reads it.

  Returns:
    ``train``: ``[N, H, W, C]`` uint8, intensities (dynamic) or a fixed 0/1 draw (static);
    ``test``: ``[M, H, W, C]`` float32 (:func:`prepare_test_set`).
  """
  train = dataset.train_images[: config.n_train]
  if train.shape[0] < config.batch_size:
    raise JaxvaeError(
        f"batch_size={config.batch_size} is larger than the training set ({train.shape[0]} images): "
        "lower --batch-size or use more training images"
    )
  if config.binarization == "static":
    train = static_binarize(train, jax.random.fold_in(jax.random.key(config.binarization_seed), 0))
  return train, prepare_test_set(config, dataset)


def _write_json(path: str, obj: Any) -> None:
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


def train_and_evaluate(
    config: Config,
    workdir: str,
    *,
    overwrite: bool = False,
    dataset: ImageDataset | None = None,
    progress: bool = True,
    verbose: bool = True,
    data_parallel: bool = False,
) -> dict[str, Any]:
  """Trains ``config`` and writes the run folder ``workdir``.

  ``workdir`` receives ``config.json``, ``metrics.jsonl`` (one row per epoch),
  ``summary.json``, ``checkpoints/<epoch>/`` (orbax, the final state),
  ``samples.png`` and ``reconstructions.png``. Nothing is written before the
  config and the data have been checked.

  Args:
    config: the run configuration.
    workdir: the run folder; must not exist or be empty unless ``overwrite``.
    overwrite: replace a non-empty ``workdir``.
    dataset: the data (default: ``load_dataset(config.dataset)``).
    progress: show a progress bar per epoch (on terminals).
    verbose: print a line per epoch and a summary line.
    data_parallel: shard every batch over all devices (of all processes), with the
      parameters and the data replicated (:func:`jaxvae.sweep.data_parallel_shardings`).

  Returns:
    The summary (also in ``summary.json``).
  """
  t_start = time.perf_counter()
  config.validate()
  if dataset is None:
    dataset = load_dataset(config.dataset, config.tfds_data_dir)
  train_np, test_np = prepare_data(config, dataset)
  batch_sharding = replicated = None
  if data_parallel:
    from jaxvae.sweep import data_parallel_shardings

    batch_sharding, replicated = data_parallel_shardings(config.batch_size)
  # With several processes (multi-host data parallelism) only process 0 writes files;
  # every process takes part in the (collective) checkpoint.
  main_process = jax.process_index() == 0
  if main_process:
    prepare_workdir(workdir, overwrite)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json() + "\n")

  log = tqdm.tqdm.write if verbose and main_process else (lambda s: None)
  bar = EpochBar(progress)
  trainer = make_trainer(
      config, dataset.image_shape, on_progress=bar, train_size=len(train_np), batch_sharding=batch_sharding
  )
  k_init, k_train, k_eval, k_plot = jax.random.split(jax.random.key(config.seed), 4)
  state = trainer.init(k_init)
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
  )

  rows, train_seconds = [], 0.0
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  for epoch in range(1, config.epochs + 1):
    bar.start(f"epoch {epoch}/{config.epochs}", steps)
    t0 = time.perf_counter()
    state, train_m = train_epoch(state, train_x, jax.random.fold_in(k_train, epoch))
    train_m = jax.device_get(train_m)
    seconds = time.perf_counter() - t0
    bar.close()
    test_m = jax.device_get(evaluate(state.params, test_x, k_eval))
    train_seconds += seconds
    row = {"epoch": epoch}
    row.update({f"train_{k}": float(v) for k, v in train_m.items()})
    row.update({f"test_{k}": float(v) for k, v in test_m.items()})
    row.update(kl=row["test_kl"], images_per_sec=steps * config.batch_size / seconds, seconds=seconds)
    rows.append(row)
    if main_process:
      with open(metrics_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    bound = f"train IWAE_{config.k} {row['train_iwae']:9.3f}  " if "train_iwae" in row else ""
    log(
        f"epoch {epoch:>{len(str(config.epochs))}}/{config.epochs}  {bound}train ELBO {row['train_elbo']:9.3f}  "
        f"test ELBO {row['test_elbo']:9.3f}  KL {row['kl']:7.3f}  "
        f"{row['images_per_sec']:,.0f} images/s  {seconds:.2f} s"
    )

  save_checkpoint(workdir, config.epochs, state)
  if main_process:
    save_figures(trainer.vae, state.params, test_x, k_plot, workdir)
  last = rows[-1]
  summary = {
      "epochs": config.epochs,
      "test_elbo": last["test_elbo"],
      "test_kl": last["test_kl"],
      "test_log_p_x_given_z": last["test_log_p_x_given_z"],
      "train_elbo": last["train_elbo"],
      "images_per_sec": steps * config.batch_size * config.epochs / train_seconds,
      "seconds_per_epoch": train_seconds / config.epochs,
      "compile_seconds": compile_seconds,
      "seconds": time.perf_counter() - t_start,
      "n_train": int(train_x.shape[0]),
      "n_test": int(test_x.shape[0]),
      "device": str(jax.devices()[0].device_kind),
      "devices": jax.device_count() if data_parallel else 1,
      "jax_version": jax.__version__,
  }
  if main_process:
    _write_json(os.path.join(workdir, "summary.json"), summary)
  log(
      f"done: test ELBO {summary['test_elbo']:.3f} nats after {config.epochs} epochs, "
      f"{summary['images_per_sec']:,.0f} images/s, {summary['seconds']:.1f} s in all; results in {workdir}"
  )
  return summary


def save_figures(vae: VAE, params: Params, test_x: jax.Array, key: jax.Array, workdir: str, n: int = 64) -> None:
  """``samples.png``: x ~ p_theta(x|z), z ~ p(z), as E[x|z]; ``reconstructions.png``: x beside E[x|z=mu_phi(x)]."""
  k_z, k_means = jax.random.split(key)
  samples = vae.mean_x(vae.p_theta(params, vae.sample_p_z(params, k_z, n)))
  x = test_x[:n]
  means = vae.latent_means(params, x, k_means)  # E_q[z_l|x] of each stochastic layer
  recon = vae.mean_x(vae.p_theta(params, means[0] if len(means) == 1 else means))
  plots.save_samples(
      os.path.join(workdir, "samples.png"),
      np.asarray(samples),
      f"{n} samples x ~ p_theta(x|z), z ~ p(z), shown as Bernoulli means E[x|z]",
  )
  plots.save_reconstructions(
      os.path.join(workdir, "reconstructions.png"),
      np.asarray(x),
      np.asarray(recon),
      "test images (binarized) and their reconstructions E[x|z] at z = mean of q_phi(z|x)",
  )
