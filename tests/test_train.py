"""The training step: traced once, jit equals eager, deterministic per seed, learns."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import mnist_trainer as make_trainer, mnist_vae as make_vae

from jaxvae.core.trees import map_batches
from jaxvae.runs.build import burda_lr_factor, make_objective, make_optimizer
from jaxvae.runs.config import Config
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.setup import prepare
from jaxvae.training.train import make_train_step, with_learning_rate

SMALL = Config(hidden=(64,), latent_dim=8, batch_size=32, n_train=512, n_test=200, epochs=2)


def _batches(mnist, n, batch_size=32):
  return [jnp.asarray(mnist.train[i * batch_size : (i + 1) * batch_size]) for i in range(n)]


def test_train_step_is_traced_once_over_many_calls(mnist):
  config = SMALL
  vae = make_vae(config)
  optimizer = make_optimizer(config)
  step = jax.jit(chex.assert_max_traces(make_train_step(vae, make_objective(config, 1), optimizer), n=1))
  trainer = make_trainer(config)
  state = trainer.init(jax.random.key(0))
  for i, batch in enumerate(_batches(mnist, 6)):
    state, metrics = step(state, batch, jax.random.key(i))
  assert int(state.step) == 6
  assert np.isfinite(float(metrics["elbo"]))
  # A new beta or learning rate is new data, not a new program.
  state = state._replace(hparams=state.hparams._replace(beta=jnp.float32(4.0)))
  state = state._replace(opt_state=with_learning_rate(state.opt_state, 3e-4))
  state, _ = step(state, _batches(mnist, 1)[0], jax.random.key(99))


def test_scanned_epoch_is_compiled_once_across_epochs(mnist):
  trainer = make_trainer(SMALL)
  state = trainer.init(jax.random.key(0))
  images = jnp.asarray(mnist.train[:256])
  for epoch in range(3):
    state, metrics = trainer.train_epoch(state, images, jax.random.key(epoch))
  assert trainer.train_epoch.program._cache_size() == 1
  assert int(state.step) == 3 * (256 // SMALL.batch_size)
  assert set(metrics) == {"loss", "elbo", "log_p_x_given_z", "kl", "kl_weight", "grad_norm", "skipped_steps"}


@pytest.mark.slow
def test_jit_and_eager_steps_agree(mnist):
  config = SMALL
  trainer = make_trainer(config)
  step = make_train_step(trainer.vae, trainer.objective, make_optimizer(config, 60_000 // config.batch_size))
  batch, key = _batches(mnist, 1)[0], jax.random.key(3)
  state = trainer.init(jax.random.key(0))
  jit_state, jit_metrics = trainer.train_step(state, batch, key)
  with jax.disable_jit():
    eager_state, eager_metrics = step(state, batch, key)
  chex.assert_trees_all_close(jit_state, eager_state, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(jit_metrics, eager_metrics, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_epoch_equals_the_same_steps_taken_one_by_one(mnist):
  """The scanned epoch is a loop of train_step and nothing else."""
  config = SMALL
  trainer = make_trainer(config)
  images = jnp.asarray(mnist.train[:96])
  key = jax.random.key(7)
  state0 = trainer.init(jax.random.key(0))
  k_order, k_steps = jax.random.split(key)
  order = jax.random.permutation(k_order, 96)[:96].reshape(3, 32)
  state = state0
  for idx, k in zip(order, jax.random.split(k_steps, 3)):
    state, _ = trainer.train_step(state, images[idx], k)
  epoch_state, _ = trainer.train_epoch(trainer.init(jax.random.key(0)), images, key)
  chex.assert_trees_all_close(epoch_state.params, state.params, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_looped_epoch_trains_like_the_scanned_epoch(mnist):
  """Conv models on CPU use a host loop of jitted steps; same batches, keys and parameters as the scan."""
  config = Config(net="conv", conv_channels=(4,), latent_dim=4, batch_size=16, n_train=64)
  trainer = make_trainer(config)
  images = jnp.asarray(mnist.train[:56])  # 3 steps, 8 images left over
  looped, looped_metrics = trainer.train_epoch(trainer.init(jax.random.key(0)), images, jax.random.key(5))
  assert trainer.train_epoch.loop  # chosen from the step's jaxpr: it has convolutions, and this is a CPU
  scanned, scanned_metrics = trainer.epoch(loop=False)(trainer.init(jax.random.key(0)), images, jax.random.key(5))
  assert int(looped.step) == int(scanned.step) == 3
  chex.assert_trees_all_close(looped.params, scanned.params, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(looped_metrics, scanned_metrics, rtol=1e-4, atol=1e-5)


def test_training_improves_the_elbo(mnist):
  trainer = make_trainer(SMALL)
  state = trainer.init(jax.random.key(0))
  images = jnp.asarray(mnist.train[:2048])
  test = prepare(SMALL, data=mnist).test_x
  before = trainer.evaluate(state.params, jnp.asarray(test), jax.random.key(1))["elbo"]
  for epoch in range(3):
    state, _ = trainer.train_epoch(state, images, jax.random.key(epoch))
  after = trainer.evaluate(state.params, jnp.asarray(test), jax.random.key(1))["elbo"]
  assert float(after) > float(before) + 200.0  # from ~-545 nats (random decoder) to ~-200


def test_map_batches_equals_one_big_batch():
  x = jnp.arange(23 * 3, dtype=jnp.float32).reshape(23, 3)
  fn = lambda xb, i: {"s": jnp.sum(xb, axis=-1), "sq": xb * xb}  # noqa: E731
  out = map_batches(fn, x, 5)
  np.testing.assert_allclose(out["s"], jnp.sum(x, axis=-1))
  np.testing.assert_allclose(out["sq"], x * x)


def test_test_set_is_binarized_once_independently_of_the_run_seed(mnist):
  test_a, test_b, test_c = (
    prepare(c, data=mnist).test_x
    for c in (SMALL.replace(seed=0), SMALL.replace(seed=1), SMALL.replace(binarization_seed=1))
  )
  np.testing.assert_array_equal(test_a, test_b)
  assert not np.array_equal(test_a, test_c)
  assert set(np.unique(test_a)) == {0.0, 1.0}
  # P(x = 1) = intensity / 255: the binarized mean matches the intensity mean.
  np.testing.assert_allclose(test_a.mean(), mnist.test[:200].mean() / 255.0, rtol=0.02)


def test_static_binarization_draws_the_training_set_once(mnist):
  train = prepare(SMALL.replace(binarization="static"), data=mnist).train_data
  assert train.dtype == np.bool_ and set(np.unique(train)) == {False, True}
  again = prepare(SMALL.replace(binarization="static", seed=5), data=mnist).train_data
  np.testing.assert_array_equal(train, again)


def _metrics_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_same_seed_is_bit_identical_and_another_seed_differs(tmp_path, mnist):
  runs = {}
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    train_and_evaluate(SMALL.replace(seed=seed), str(tmp_path / name), data=mnist, progress=False)
    runs[name] = _metrics_rows(tmp_path / name)
  keys = ("train_elbo", "train_kl", "test_elbo", "test_kl", "kl")
  for ra, rb, rc in zip(runs["a"], runs["b"], runs["c"]):
    assert [ra[k] for k in keys] == [rb[k] for k in keys]
    assert [ra[k] for k in keys] != [rc[k] for k in keys]


def test_burda_learning_rate_schedule_is_3_to_the_i_epochs_at_10_to_the_minus_i_over_7():
  factor = burda_lr_factor(steps_per_epoch=10)
  # Stage i starts at epoch (3^i - 1) / 2: 0, 1, 4, 13, 40, 121, 364, 1093; the last ends at 3280.
  for epoch, stage in [(0, 0), (1, 1), (3, 1), (4, 2), (12, 2), (13, 3), (40, 4), (1093, 7), (3279, 7), (5000, 7)]:
    np.testing.assert_allclose(factor(epoch * 10), 10.0 ** (-stage / 7), rtol=1e-5)


@pytest.mark.slow
def test_a_sweep_of_conv_models_takes_the_host_loop_and_trains_like_the_scan(mnist):
  """A stacked epoch (a sweep's) takes the host loop for convolutions on a CPU, as a run does, with the same result."""
  config = Config(net="conv", conv_channels=(4,), latent_dim=4, batch_size=16, n_train=64)
  trainer = make_trainer(config)
  images = jnp.asarray(mnist.train[:48])
  stack = lambda states: jax.tree.map(lambda *a: jnp.stack(a), *states)  # noqa: E731
  states = stack([trainer.init(jax.random.key(s)) for s in (0, 1)])
  keys = jnp.stack([jax.random.key(5), jax.random.key(6)])
  looped = trainer.epoch(stacked=True)
  looped_state, looped_metrics = looped(states, images, keys)
  assert looped.loop
  scanned_state, scanned_metrics = trainer.epoch(stacked=True, loop=False)(
    stack([trainer.init(jax.random.key(s)) for s in (0, 1)]), images, keys
  )
  chex.assert_trees_all_close(looped_state.params, scanned_state.params, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(looped_metrics, scanned_metrics, rtol=1e-4, atol=1e-5)
  assert looped_metrics["elbo"].shape == (2,)
