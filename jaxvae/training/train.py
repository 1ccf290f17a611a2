"""Training: the state, one jitted step, one epoch, and the test evaluation, for any model and objective.

One optimizer step is one pure function

  train_step(state, batch, key) -> (state, metrics)

with the gradient of the objective, the optax update and the metrics inside one jit. One epoch
is one ``lax.scan`` of that step over a shuffled pass through the training set, which lives on
the device; the state buffers are donated, and the host sees the metrics once per epoch. The
objective's hyperparameters (beta, warm-up, free bits) and the learning rate are arrays in the
state, so ``jax.vmap`` over stacked states trains many models in one program (:class:`Epoch`
with ``stacked=True``; :mod:`jaxvae.runs.sweep`).

The model (:class:`jaxvae.VAE`), the objective (:class:`jaxvae.Objective`) and the optimizer
(an optax transformation) are values handed to :func:`make_trainer`; :mod:`jaxvae.runs.build` makes
the built-in ones from a :class:`jaxvae.Config`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxvae.core.model import STATE, VAE, Params, trainable, with_state
from jaxvae.core.objectives import Metrics, Objective, elbo, layer_kls
from jaxvae.core.trees import map_batches, stack


class TrainState(NamedTuple):
  """Everything a training step reads and writes: a pytree of arrays.

  Attributes:
    params: the model's parameters, ``{"encoder": ..., "decoder": ..., ...}``.
    opt_state: the optimizer state; for :func:`jaxvae.runs.build.make_optimizer`'s Adam the learning
      rate is a ``[]`` float32 array in it (:func:`learning_rate`, :func:`with_learning_rate`).
    step: ``[]`` int32, batches processed (skipped ones included; Adam counts its own).
    hparams: the objective's hyperparameters (:attr:`jaxvae.Objective.hparams`), e.g. beta.
    consecutive_skips: ``[]`` int32, the updates skipped in a row so far (non-finite
      loss or gradients, or a gradient norm above ``skip_grad_norm``).
    ema: an :class:`EMA` of the parameters (evaluated and checkpointed with the state), or None.
  """

  params: Params
  opt_state: optax.OptState
  step: jax.Array
  hparams: Any
  consecutive_skips: jax.Array
  ema: EMA | None = None


class EMA(NamedTuple):
  """An exponential moving average of the parameters: after each update,

    params_ema <- decay * params_ema + (1 - decay) * params      (optax.incremental_update)

  Deep VAEs (VDVAE, NVAE, Efficient-VDVAE) evaluate and sample with these smoothed weights.

  Attributes:
    decay: ``[]`` float32 (a sweep gives each model its own).
    params: the averaged parameters, the structure of ``TrainState.params``; they start at
      the initial parameters.
  """

  decay: jax.Array
  params: Params


def eval_params(state: TrainState) -> Params:
  """The parameters a run evaluates, samples and reports: the EMA's where the state has one."""
  return state.ema.params if state.ema is not None else state.params


def learning_rate(opt_state) -> jax.Array:
  """The base learning rate held in an ``optax.inject_hyperparams`` state inside ``opt_state``."""
  adam = next(s for s in jax.tree.leaves(opt_state, is_leaf=_has_lr) if _has_lr(s))
  return adam.hyperparams["learning_rate"]


def with_learning_rate(opt_state, lr: jax.Array | float):
  """A copy of ``opt_state`` with the injected base learning rate set to ``lr``."""
  lr = jnp.asarray(lr, jnp.float32)
  return jax.tree.map(
    lambda s: s._replace(hyperparams={**s.hyperparams, "learning_rate": lr}) if _has_lr(s) else s,
    opt_state,
    is_leaf=_has_lr,
  )


def _has_lr(node) -> bool:
  return hasattr(node, "hyperparams") and "learning_rate" in node.hyperparams


def make_train_step(
  vae: VAE, objective: Objective, optimizer: optax.GradientTransformation, skip_grad_norm: float | None = None
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
  """The pure (un-jitted) training step.

  In outline::

    train_step(state, batch, key):
      x = preprocess(batch)                   (e.g. a fresh binarization, from one half of key)
      loss(theta, phi) = objective.loss(vae, params, x, other half of key, hparams, step), e.g.
        -(1/B) sum_b [ log p_theta(x_b|z_b) - beta * KL(q_phi(z|x_b) || p(z)) ]
      (theta, phi) <- optax update with grad loss

  It returns the new state and the batch means of the objective's metrics, with ``grad_norm``
  and ``skipped_steps``. An update whose loss or gradients are not finite (or whose gradient
  norm exceeds ``skip_grad_norm``) is skipped: parameters and optimizer state stay as they
  were (vdvae's rule). With an :class:`EMA` in the state, the average moves after the update.

  Networks that behave differently in training (dropout, batch normalization:
  :attr:`jaxvae.VAE.training`) run in training mode inside the loss, with dropout keys from
  ``fold_in(key, 2)``; the gradient and the optimizer see only :func:`jaxvae.core.model.trainable`
  parameters, and the networks' new running statistics (``params["state"]``) come out of the
  loss beside the metrics and are kept with the update (a skipped update keeps the old ones).

  Args:
    vae: the model; its likelihood's ``preprocess`` makes x from the stored batch.
    objective: the loss and its hyperparameters (read from ``state.hparams``).
    optimizer: an optax transformation (its hyperparameters may live in its state).
    skip_grad_norm: skip updates whose global gradient norm exceeds this (None: only non-finite).

  Returns:
    ``train_step(state, batch [B, ...], key) -> (state, metrics)``.
  """
  preprocess = vae.likelihood.preprocess

  def train_step(state: TrainState, batch: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
    k_x, k_z = jax.random.split(key)
    x = preprocess(k_x, batch)
    weights, net_state = trainable(state.params), state.params.get(STATE, {})

    def loss_fn(weights):
      if vae.training is None:
        loss, metrics = objective.loss(vae, weights, x, k_z, state.hparams, state.step)
        return loss, (metrics, net_state)
      model, new_state = vae.training(jax.random.fold_in(key, 2))  # dropout: a third key beside k_x and k_z
      loss, metrics = objective.loss(model, with_state(weights, net_state), x, k_z, state.hparams, state.step)
      return loss, (metrics, {**net_state, **new_state()})

    grads, (metrics, new_net_state) = jax.grad(loss_fn, has_aux=True)(weights)
    metrics = dict(metrics)
    grad_norm = optax.tree.norm(grads)
    ok = jnp.isfinite(metrics.get("loss", grad_norm)) & jnp.isfinite(grad_norm)
    if skip_grad_norm is not None:
      ok = ok & (grad_norm <= skip_grad_norm)

    def update(_):
      updates, opt_state = optimizer.update(grads, state.opt_state, weights)
      return optax.apply_updates(weights, updates), opt_state, new_net_state

    # lax.cond rather than a select over the trees: 7-10% cheaper on CPU (benchmarks/RESULTS.md).
    weights, opt_state, net_state = jax.lax.cond(ok, update, lambda _: (weights, state.opt_state, net_state), None)
    skips = jnp.where(ok, 0, state.consecutive_skips + 1)
    metrics = {**metrics, "grad_norm": grad_norm, "skipped_steps": (~ok).astype(jnp.int32)}
    ema = state.ema
    if ema is not None:  # the average of the weights; the networks' running statistics as they are
      ema = EMA(
        ema.decay, with_state(optax.incremental_update(weights, trainable(ema.params), 1.0 - ema.decay), net_state)
      )
    params = with_state(weights, net_state)
    return TrainState(params, opt_state, state.step + 1, state.hparams, skips, ema), metrics

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

  The order is a permutation of the N examples drawn from ``key``; the ``N mod B`` left
  over after ``N // B`` full batches are skipped this epoch (a different few each epoch).
  Both epoch drivers (the scan and the host loop of :class:`Epoch`) use it, so they train
  on the same batches with the same keys.
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
  unroll: int = 1,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
  """One epoch as one ``lax.scan`` of ``train_step`` over a shuffled pass through the data.

  The data order and the step keys come from :func:`epoch_order`. The data stay on the
  device; each step gathers its batch.

  Args:
    train_step: the pure step.
    batch_size: B.
    on_progress: if given, called on the host (``jax.debug.callback``) with the
      number of steps done, about 50 times per epoch; it does not block the epoch.
    batch_sharding: data parallelism: each batch is constrained to this sharding
      (e.g. its first axis over a mesh of devices); with the state replicated, XLA
      partitions the step and sums the gradients across devices.
    unroll: steps per iteration of the scan's loop (``lax.scan(unroll=...)``): fewer loop
      iterations, each with more work, for small steps whose time is the loop's overhead
      (benchmarks/table1_steps.py measures it).

  Returns:
    ``train_epoch(state, data [N, ...], key) -> (state, metrics)`` (pure, un-jitted), the
    metrics averaged over the epoch's steps.
  """

  def train_epoch(state: TrainState, data: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
    order, keys = epoch_order(key, data.shape[0], batch_size)
    steps = order.shape[0]
    report_every = max(1, steps // 50)
    xs = (order, keys, jnp.arange(1, steps + 1))

    def body(state, inputs):
      idx, k, done = inputs
      if on_progress is not None:
        jax.lax.cond(done % report_every == 0, lambda: jax.debug.callback(on_progress, done), lambda: None)
      batch = jnp.take(data, idx, axis=0)
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      return train_step(state, batch, k)

    state, metrics = jax.lax.scan(body, state, xs, unroll=unroll)
    return state, epoch_means(metrics)

  return train_epoch


class Epoch:
  """One epoch of a training step, for one model or a stack of models: the program a run executes.

  The epoch is one jitted ``lax.scan`` (:func:`make_train_epoch`), with the state donated (``donate``);
  with ``stacked=True``, ``jax.vmap`` of it over a leading models axis of the state and the
  keys (and of the data, if ``data_axis=0``). XLA's CPU backend differentiates convolutions
  inside a while loop about 20 times more slowly than in a plain jitted function (jaxlib
  0.10, 2 cores: 1.04 s against 0.057 s for one 3x3 convolution's gradient at batch 128), so
  on a CPU the step of a model with convolutions runs as a host loop of jitted steps instead:
  the same permutation, the same per-step keys and the same step, dispatched asynchronously; the
  host still waits once per epoch. The model declares it (:attr:`jaxvae.VAE.host_loop_on_cpu`,
  passed here as ``host_loop_on_cpu``), for single runs and sweeps alike; ``loop=True`` or
  ``False`` forces the choice on any backend. ``unroll`` is the scan's (:func:`make_train_epoch`).
  ``donate``: the input state's buffers are reused for the output (it cannot be used again),
  which saves one copy of the parameters and optimizer state in memory.

  Call it like the jitted epoch, ``epoch(state, data, key) -> (state, metrics)``;
  :meth:`compile` compiles the scanned program for given arguments ahead of time.
  """

  def __init__(
    self,
    train_step,
    batch_size: int,
    *,
    stacked: bool = False,
    data_axis: int | None = None,
    host_loop_on_cpu: bool = False,
    loop: bool | None = None,
    on_progress=None,
    batch_sharding=None,
    unroll: int = 1,
    donate: bool = True,
  ):
    self._train_step = train_step
    self._donate = (0,) if donate else ()
    self._batch_size = batch_size
    self._stacked = stacked
    self._data_axis = data_axis
    self._on_progress = on_progress
    self._batch_sharding = batch_sharding
    self._unroll = unroll
    self.loop = loop if loop is not None else host_loop_on_cpu and jax.default_backend() == "cpu"
    self.program = None  # the jitted scanned epoch
    self.compiled = None  # its ahead-of-time compiled form, once compile() ran
    self._looped = None

  def _examples(self, data) -> int:
    return data.shape[1] if self._stacked and self._data_axis == 0 else data.shape[0]

  def _orders(self, key, n):
    if self._stacked:
      return jax.vmap(epoch_order, in_axes=(0, None, None))(key, n, self._batch_size)
    return epoch_order(key, n, self._batch_size)

  def _gathered_step(self):
    def step(state, data, idx, key):
      batch = jnp.take(data, idx, axis=0)
      if self._batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, self._batch_sharding)
      return self._train_step(state, batch, key)

    return jax.vmap(step, in_axes=(0, self._data_axis, 0, 0)) if self._stacked else step

  def _scan(self):
    if self.program is None:
      epoch = make_train_epoch(
        self._train_step, self._batch_size, self._on_progress, self._batch_sharding, self._unroll
      )
      if self._stacked:
        epoch = jax.vmap(epoch, in_axes=(0, self._data_axis, 0))
      self.program = jax.jit(epoch, donate_argnums=self._donate)
    return self.program

  def compile(self, state, data, key) -> Epoch:
    """Compiles the scanned epoch for these arguments ahead of time (the host loop compiles its step when called)."""
    if not self.loop:
      self.compiled = self._scan().lower(state, data, key).compile()
    return self

  def __call__(self, state: TrainState, data: jax.Array, key: jax.Array) -> tuple[TrainState, Metrics]:
    if not self.loop:
      return (self.compiled or self._scan())(state, data, key)
    if self._looped is None:
      means = jax.vmap(epoch_means, in_axes=1) if self._stacked else epoch_means
      self._looped = (
        jax.jit(self._gathered_step(), donate_argnums=self._donate),
        jax.jit(self._orders, static_argnums=1),
        jax.jit(lambda ms: means(stack(ms))),
      )
    step, orders, mean = self._looped
    order, keys = orders(key, self._examples(data))
    steps = order.shape[-2]
    report_every = max(1, steps // 50)
    metrics = []
    for i in range(steps):
      idx, k = (order[:, i], keys[:, i]) if self._stacked else (order[i], keys[i])
      state, m = step(state, data, idx, k)
      metrics.append(m)
      if self._on_progress is not None and (i + 1) % report_every == 0:
        self._on_progress(i + 1)
    return state, mean(metrics)


def make_evaluate(
  vae: VAE, batch_size: int = 1000, analytic_kl: bool = True
) -> Callable[[Params, jax.Array, jax.Array], Metrics]:
  """``evaluate(params, x [M, ...] float32, key) -> metrics``: the mean single-sample ELBO terms.

  The test set is evaluated in chunks of ``batch_size`` (memory is bounded by one chunk);
  chunk i draws its z with ``fold_in(key, i)``.
  """

  def evaluate(params: Params, x: jax.Array, key: jax.Array) -> Metrics:
    def chunk(xb, i):
      terms = elbo(vae, params, xb, jax.random.fold_in(key, i), analytic_kl=analytic_kl)
      return {"elbo": terms.elbo, "log_p_x_given_z": terms.log_p_x_given_z, "kl": terms.kl, **layer_kls(terms)}

    return {name: jnp.mean(value) for name, value in map_batches(chunk, x, batch_size).items()}

  return evaluate


class Trainer(NamedTuple):
  """The pure functions that train and evaluate one model with one objective and optimizer.

  Attributes:
    vae: the model.
    objective: the training objective.
    init: ``(key, data=None) -> TrainState``; ``data`` (the stored training data) initialises
      a VampPrior's pseudo-inputs.
    step: the pure ``(state, batch [B, ...], key) -> (state, metrics)``, for callers that
      transform it further (sweeps vmap it).
    train_step: ``step``, jitted.
    train_epoch: an :class:`Epoch` of ``step``: ``(state, data [N, ...], key) -> (state,
      metrics)``; metrics are means over the epoch's ``N // B`` steps. It leaves its input state
      usable unless the trainer was made with ``donate=True``.
    evaluate: ``(params, x [M, ...] float32, key) -> metrics``, jitted: the single-sample ELBO
      and its terms averaged over all M examples of ``x`` (pure: ``evaluate_fn``).
    evaluate_fn: the pure evaluation behind ``evaluate``.
    batch_size: B.
  """

  vae: VAE
  objective: Objective
  init: Callable[..., TrainState]
  step: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]
  train_step: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]
  train_epoch: Epoch
  evaluate: Callable[[Params, jax.Array, jax.Array], Metrics]
  evaluate_fn: Callable[[Params, jax.Array, jax.Array], Metrics]
  batch_size: int

  def steps_per_epoch(self, n: int) -> int:
    """Optimizer steps in an epoch over ``n`` examples: ``n // B``."""
    return n // self.batch_size

  def epoch(self, **options: Any) -> Epoch:
    """A new :class:`Epoch` of this trainer's step, e.g. ``stacked=True`` for a sweep."""
    return Epoch(self.step, self.batch_size, host_loop_on_cpu=self.vae.host_loop_on_cpu, **options)


def make_trainer(
  vae: VAE,
  objective: Objective,
  optimizer: optax.GradientTransformation,
  *,
  batch_size: int,
  eval_batch_size: int = 1000,
  analytic_kl: bool = True,
  skip_grad_norm: float | None = None,
  ema_decay: float | None = None,
  on_progress: Callable[[jax.Array], None] | None = None,
  batch_sharding: jax.sharding.Sharding | None = None,
  donate: bool = False,
) -> Trainer:
  """The jitted step, epoch and evaluation of a model, an objective and an optimizer.

  Args:
    vae: a :class:`jaxvae.VAE` (e.g. :meth:`jaxvae.VAE.from_modules`).
    objective: a :class:`jaxvae.Objective` (e.g. :func:`jaxvae.core.objectives.beta_elbo`).
    optimizer: an optax transformation.
    batch_size: B, examples per step.
    eval_batch_size: test examples per evaluation chunk.
    analytic_kl: the test ELBO uses the closed-form KL where the model has one.
    skip_grad_norm: see :func:`make_train_step`.
    ema_decay: keep an :class:`EMA` of the parameters with this decay (None: none).
    on_progress, batch_sharding: see :func:`make_train_epoch`.
    donate: ``train_epoch`` consumes its input state (its buffers become the output's), as the
      run driver's does: one copy of the state less in memory. Without it, a state can be
      trained from twice, the functional habit.

  Returns:
    A :class:`Trainer`.

  Example:
    >>> trainer = make_trainer(vae, objectives.beta_elbo(), optax.adam(1e-3), batch_size=128)
    >>> state = trainer.init(jax.random.key(0))
    >>> state, metrics = trainer.train_step(state, batch, jax.random.key(1))
  """
  if not isinstance(vae, VAE):
    raise TypeError(
      f"make_trainer takes a jaxvae.VAE, not {type(vae).__name__}: for the trainer a jaxvae.Config describes, "
      "use jaxvae.runs.build.trainer_for(config, data_shape=..., train_size=...)"
    )
  train_step = make_train_step(vae, objective, optimizer, skip_grad_norm)

  init_optimizer = jax.jit(optimizer.init)

  def init(key: jax.Array, data: jax.Array | None = None) -> TrainState:
    params = vae.init(key, data)
    hparams = jax.tree.map(jnp.array, objective.hparams)  # copies: the state's buffers are donated
    ema = None
    if ema_decay is not None:  # copies: the state's buffers are donated
      ema = EMA(jnp.asarray(ema_decay, jnp.float32), jax.tree.map(jnp.array, params))
    opt_state = init_optimizer(trainable(params))  # the networks' running statistics are not trained
    return TrainState(params, opt_state, jnp.zeros((), jnp.int32), hparams, jnp.zeros((), jnp.int32), ema)

  evaluate = make_evaluate(vae, eval_batch_size, analytic_kl)
  return Trainer(
    vae=vae,
    objective=objective,
    init=init,
    step=train_step,
    train_step=jax.jit(train_step),
    train_epoch=Epoch(
      train_step,
      batch_size,
      host_loop_on_cpu=vae.host_loop_on_cpu,
      on_progress=on_progress,
      batch_sharding=batch_sharding,
      donate=donate,
    ),
    evaluate=jax.jit(evaluate),
    evaluate_fn=evaluate,
    batch_size=batch_size,
  )
