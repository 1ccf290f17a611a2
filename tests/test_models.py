"""Burda et al.'s one- and two-stochastic-layer models, and training with every objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import mnist_trainer as make_trainer, mnist_vae as make_vae

from jaxvae.core.objectives import elbo, importance_terms
from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import Config


def _shapes(params):
  return {k: {n: tuple(v["kernel"].shape) for n, v in sorted(layer.items())} for k, layer in params.items()}


def test_burda1_is_784_200_200_50_tanh():
  config = Config(model="burda1")
  assert (config.hidden, config.latent_dim, config.activation) == ((200, 200), 50, "tanh")
  params = make_vae(config).init(jax.random.key(0))
  assert _shapes(params) == {
    "encoder": {"Dense_0": (784, 200), "Dense_1": (200, 200), "Dense_2": (200, 100)},
    "decoder": {"Dense_0": (50, 200), "Dense_1": (200, 200), "Dense_2": (200, 784)},
  }


@pytest.mark.slow
def test_burda2_has_two_stochastic_layers_with_their_own_prior_and_inference_nets():
  config = Config(model="burda2")
  vae = make_vae(config)
  params = vae.init(jax.random.key(0))
  assert _shapes(params) == {
    "encoder": {"Dense_0": (784, 200), "Dense_1": (200, 200), "Dense_2": (200, 200)},  # q(z1|x): 2 x 100
    "posterior": {"Dense_0": (100, 100), "Dense_1": (100, 100), "Dense_2": (100, 100)},  # q(z2|z1): 2 x 50
    "prior": {"Dense_0": (50, 100), "Dense_1": (100, 100), "Dense_2": (100, 200)},  # p(z1|z2): 2 x 100
    "decoder": {"Dense_0": (100, 200), "Dense_1": (200, 200), "Dense_2": (200, 784)},  # p(x|z1)
  }
  assert vae.kl_q_p_z is None
  x = (jax.random.uniform(jax.random.key(1), (6, 28, 28, 1)) < 0.3).astype(jnp.float32)
  (z1, z2), log_q = vae.sample_q(params, x, jax.random.key(2), (5,))
  assert z1.shape == (5, 6, 100) and z2.shape == (5, 6, 50) and log_q.shape == (5, 6)
  t = importance_terms(vae, params, x, jax.random.key(2), 5)
  assert t.log_w.shape == (5, 6) and np.all(np.isfinite(np.asarray(t.log_w)))
  # Without a closed form, the ELBO falls back to the estimate log q - log p(z), whatever analytic_kl says.
  a = elbo(vae, params, x, jax.random.key(3), analytic_kl=True)
  b = elbo(vae, params, x, jax.random.key(3), analytic_kl=False)
  np.testing.assert_allclose(a.elbo, b.elbo)
  z = vae.sample_p_z(params, jax.random.key(4), 3)
  assert z[0].shape == (3, 100) and z[1].shape == (3, 50)
  assert vae.p_theta(params, z).shape == (3, 28, 28, 1)


@pytest.mark.parametrize(
  "changes",
  [
    dict(model="burda1", objective="iwae", k=5),
    dict(model="burda2", objective="vae", k=2),
    dict(model="burda2", objective="iwae", k=3),
    dict(objective="vae", k=3, kl="mc"),
    dict(beta=4.0, warmup_epochs=2.0, free_bits=0.5),
  ],
)
@pytest.mark.slow
def test_every_objective_trains(mnist, changes):
  config = Config(batch_size=32, n_train=256, **changes).validate()
  trainer = make_trainer(config, train_size=256)
  state = trainer.init(jax.random.key(0))
  images = jnp.asarray(mnist.train[:256])
  first = None
  for epoch in range(4):
    state, metrics = trainer.train_epoch(state, images, jax.random.key(epoch))
    first = first if first is not None else metrics
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert float(metrics["elbo"]) > float(first["elbo"])
  if config.objective == "iwae":
    assert float(metrics["iwae"]) >= float(metrics["elbo"])


def test_kl_warmup_ramps_the_kl_weight_over_the_configured_epochs(mnist):
  config = Config(batch_size=32, n_train=256, warmup_epochs=2.0, beta=1.0)
  trainer = make_trainer(config, train_size=256)
  state = trainer.init(jax.random.key(0))
  assert float(state.hparams.warmup_steps) == 2 * 256 // 32
  images = jnp.asarray(mnist.train[:256])
  weights = []
  for epoch in range(3):
    state, metrics = trainer.train_epoch(state, images, jax.random.key(epoch))
    weights.append(float(metrics["kl_weight"]))
  # Mean weight over epoch 1 (steps 0..7 of 16): 3.5/16; epoch 2: 11.5/16; epoch 3: 1.
  np.testing.assert_allclose(weights, [3.5 / 16, 11.5 / 16, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
  "changes, named",
  [
    (dict(objective="iwae", k=5, beta=2.0), "beta"),
    (dict(model="burda2", free_bits=1.0), "free_bits"),
    (dict(model="mlp", hidden2=(10,)), "hidden2"),
    (dict(model="vgg"), "model"),
    (dict(objective="elbo"), "objective"),
    (dict(k=0), "k"),
    (dict(lr_schedule="linear"), "lr_schedule"),
    (dict(free_bits=-1.0), "free_bits"),
  ],
)
def test_invalid_objective_settings_name_the_field(changes, named):
  with pytest.raises(JaxvaeError, match=named):
    Config(**changes).validate()
