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

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxvae.config import Config
from jaxvae.likelihoods import make_likelihood
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
    step: ``[]`` int32, batches processed (skipped ones included; Adam counts its own).
    hparams: :class:`HParams`.
    consecutive_skips: ``[]`` int32, the updates skipped in a row so far (non-finite
      loss or gradients, or a gradient norm above ``skip_grad_norm``).
  """

  params: Params
  opt_state: optax.OptState
  step: jax.Array
  hparams: HParams
  consecutive_skips: jax.Array


class Trainer(NamedTuple):
  """The pure functions that train and evaluate one configuration.

  Attributes:
    vae: the model.
    init: ``(key, data=None) -> TrainState``; ``data`` (the training images) initialises
      a VampPrior's pseudo-inputs.
    train_step: ``(state, batch [B, H, W, C] uint8, key) -> (state, metrics)``, jitted.
    train_epoch: ``(state, images [N, H, W, C] uint8, key) -> (state, metrics)``, jitted,
      the state donated; metrics are means over the epoch's ``N // B`` steps (a
      :class:`LoopedEpoch` for convolutional models on CPU).
    evaluate: ``(params, x [M, H, W, C] float32, key) -> metrics``, jitted: the
      single-sample ELBO and its terms averaged over all M examples of ``x``.
    steps_per_epoch: ``N -> N // B``.
    scan_epoch: the pure, un-jitted scanned epoch behind ``train_epoch``, for callers
      that transform it further (the vmapped sweeps).
  """

  vae: VAE
  init: Callable[..., TrainState]
  train_step: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]
  train_epoch: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]
  evaluate: Callable[[Params, jax.Array, jax.Array], Metrics]
  steps_per_epoch: Callable[[int], int]
  scan_epoch: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]


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
  parts = [adam]
  if config.clip_grad_norm is not None:
    parts.insert(0, optax.clip_by_global_norm(config.clip_grad_norm))
  if config.lr_schedule == "burda":
    parts.append(optax.scale_by_schedule(burda_lr_factor(steps_per_epoch)))
  return parts[0] if len(parts) == 1 else optax.chain(*parts)


def _is_adam(node) -> bool:
  return hasattr(node, "hyperparams") and "learning_rate" in node.hyperparams


def learning_rate(opt_state) -> jax.Array:
  """The base learning rate held in a :func:`make_optimizer` state."""
  adam = next(s for s in jax.tree.leaves(opt_state, is_leaf=_is_adam) if _is_adam(s))
  return adam.hyperparams["learning_rate"]


def with_learning_rate(opt_state, lr: jax.Array | float):
  """A copy of a :func:`make_optimizer` state with the base learning rate set to ``lr``."""
  lr = jnp.asarray(lr, jnp.float32)
  return jax.tree.map(
      lambda s: s._replace(hyperparams={**s.hyperparams, "learning_rate": lr}) if _is_adam(s) else s,
      opt_state,
      is_leaf=_is_adam,
  )


def make_preprocess(config: Config, image_shape: tuple[int, int, int] = (28, 28, 1)):
  """``(key, uint8 batch) -> float32 x``: the likelihood's view of the data.

  Bernoulli: x ~ Bernoulli(pixel / 255), a fresh draw each time an image is used (dynamic),
  or the images as drawn once (static); Gaussian: a fresh dequantization; discretized
  logistic: pixel / 127.5 - 1 (see :mod:`jaxvae.likelihoods`).
  """
  return make_likelihood(config, image_shape).preprocess


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
  preprocess = make_preprocess(config, vae.image_shape)
  objective = make_objective(config, vae)

  skip_grad_norm = config.skip_grad_norm

  def train_step(state: TrainState, batch: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
    k_x, k_z = jax.random.split(key)
    x = preprocess(k_x, batch)
    loss_fn = lambda params: objective(params, x, k_z, state.hparams, state.step)  # noqa: E731
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.tree.norm(grads)
    # An update whose loss or gradients are not finite (or too large) is skipped:
    # parameters and optimizer state stay as they were (vdvae's rule).
    ok = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    if skip_grad_norm is not None:
      ok = ok & (grad_norm <= skip_grad_norm)

    def update(_):
      updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
      return optax.apply_updates(state.params, updates), opt_state

    # lax.cond rather than a select over the trees: 7-10% cheaper on CPU (benchmarks/RESULTS.md).
    params, opt_state = jax.lax.cond(ok, update, lambda _: (state.params, state.opt_state), None)
    skips = jnp.where(ok, 0, state.consecutive_skips + 1)
    metrics = {**metrics, "grad_norm": grad_norm, "skipped_steps": (~ok).astype(jnp.int32)}
    return TrainState(params, opt_state, state.step + 1, state.hparams, skips), metrics

  return train_step


def epoch_means(metrics: Metrics) -> Metrics:
  """Per-step metrics ``[steps]`` -> epoch values: ``skipped_steps`` summed; the others
  averaged over the steps that were not skipped (a skipped step's loss may be NaN)."""
  skipped = metrics["skipped_steps"]
  kept = 1 - skipped
  n = jnp.maximum(jnp.sum(kept), 1)
  out = {k: jnp.sum(jnp.where(kept > 0, v, 0.0)) / n for k, v in metrics.items() if k != "skipped_steps"}
  out["skipped_steps"] = jnp.sum(skipped)
  return out


def epoch_order(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
  """The data order and step keys of one epoch: ``(indices [N // B, B], keys [N // B])``.

  The order is a permutation of the N images drawn from ``key``; the ``N mod B`` left
  over after ``N // B`` full batches are skipped this epoch (a different few each epoch).
  Both epoch drivers (:func:`make_train_epoch`, :class:`LoopedEpoch`) use it, so they
  train on the same batches with the same keys.
  """
  steps = n // batch_size
  k_order, k_steps = jax.random.split(key)
  order = jax.random.permutation(k_order, n)[: steps * batch_size]
  return order.reshape(steps, batch_size), jax.random.split(k_steps, steps)


def make_train_epoch(
    train_step: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]],
    batch_size: int,
    on_progress: Callable[[jax.Array], None] | None = None,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
  """One epoch as one ``lax.scan`` of ``train_step`` over a shuffled pass through the data.

  The data order and the step keys come from :func:`epoch_order`. The images stay
  on the device; each step gathers its batch.

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
    order, keys = epoch_order(key, images.shape[0], batch_size)
    steps = order.shape[0]
    report_every = max(1, steps // 50)
    xs = (order, keys, jnp.arange(1, steps + 1))

    def body(state, inputs):
      idx, k, done = inputs
      if on_progress is not None:
        jax.lax.cond(done % report_every == 0, lambda: jax.debug.callback(on_progress, done), lambda: None)
      batch = jnp.take(images, idx, axis=0)
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      return train_step(state, batch, k)

    state, metrics = jax.lax.scan(body, state, xs)
    return state, epoch_means(metrics)

  return train_epoch


class LoopedEpoch:
  """One epoch as a host loop of jitted steps, for what XLA cannot run well inside a scan.

  XLA's CPU backend differentiates convolutions inside a while loop about 20 times more
  slowly than in a plain jitted function (measured with jaxlib 0.10 on a 2-core CPU:
  1.04 s against 0.057 s for one 3x3 convolution's gradient at batch 128). For
  convolutional models on CPU an epoch is therefore this loop: the same permutation, the
  same per-step keys and the same step as :func:`make_train_epoch`, each step jitted with
  the state donated, dispatched asynchronously; the host still waits once per epoch.

  Like a jitted function it offers ``lower(...).compile()``, so the run code treats both alike.
  """

  def __init__(self, train_step, batch_size: int, on_progress=None, batch_sharding=None):
    def step(state, images, idx, key):
      batch = jnp.take(images, idx, axis=0)
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      return train_step(state, batch, key)

    self._step = jax.jit(step, donate_argnums=0)
    self._order = jax.jit(epoch_order, static_argnums=(1, 2))
    self._means = jax.jit(lambda ms: epoch_means(jax.tree.map(lambda *a: jnp.stack(a), *ms)))
    self._batch_size = batch_size
    self._on_progress = on_progress

  def lower(self, state, images, key):
    del state, images, key  # the steps compile on their first call
    return self

  def compile(self):
    return self

  def __call__(self, state: TrainState, images: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
    order, keys = self._order(key, images.shape[0], self._batch_size)
    steps = order.shape[0]
    report_every = max(1, steps // 50)
    metrics = []
    for i in range(steps):
      state, m = self._step(state, images, order[i], keys[i])
      metrics.append(m)
      if self._on_progress is not None and (i + 1) % report_every == 0:
        self._on_progress(i + 1)
    return state, self._means(metrics)


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

  def init(key: jax.Array, data: jax.Array | None = None) -> TrainState:
    params = vae.init(key, data)
    hparams = HParams(
        beta=jnp.asarray(config.beta, jnp.float32),
        warmup_steps=jnp.asarray(config.warmup_epochs * steps_per_epoch, jnp.float32),
        free_bits=jnp.asarray(config.free_bits, jnp.float32),
    )
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), hparams, jnp.zeros((), jnp.int32))

  scan_epoch = make_train_epoch(train_step, config.batch_size, on_progress, batch_sharding)
  if config.net == "conv" and jax.default_backend() == "cpu":
    train_epoch = LoopedEpoch(train_step, config.batch_size, on_progress, batch_sharding)
  else:
    train_epoch = jax.jit(scan_epoch, donate_argnums=0)
  return Trainer(
      vae=vae,
      init=init,
      train_step=jax.jit(train_step),
      train_epoch=train_epoch,
      evaluate=jax.jit(make_evaluate(config, vae)),
      steps_per_epoch=lambda n: n // config.batch_size,
      scan_epoch=scan_epoch,
  )
