"""Likelihoods for 8-bit images, learned priors, conv networks and colour TFDS datasets."""

import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import mnist_trainer as make_trainer, mnist_vae as make_vae
from scipy import stats
from scipy.special import logsumexp

from jaxvae.core import distributions as D
from jaxvae.core.likelihoods import discretized_logistic, gaussian
from jaxvae.core.objectives import importance_terms
from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import Config
from jaxvae.runs.run import train_and_evaluate

RNG = np.random.default_rng(0)


def _mixture(shape_hw, c, k, scale=1.0):
  lead = shape_hw
  return D.LogisticMixture(
    jnp.asarray(RNG.normal(size=lead + (k,)), jnp.float32),
    jnp.asarray(RNG.uniform(-1.2, 1.2, size=lead + (c, k)), jnp.float32),
    jnp.asarray(RNG.uniform(-4, 0, size=lead + (c, k)) * scale, jnp.float32),
    jnp.asarray(RNG.uniform(-1, 1, size=lead + (c, k)), jnp.float32),
  )


@pytest.mark.slow
def test_discretized_logistic_sums_to_one_over_the_256_values_of_a_pixel():
  k = 5
  mix = _mixture((1, 1), 1, k)
  values = jnp.arange(256, dtype=jnp.float32) / 127.5 - 1.0  # every 8-bit value, scaled to [-1, 1]
  x = values.reshape(256, 1, 1, 1)
  batch = jax.tree.map(lambda a: jnp.broadcast_to(a, (256,) + a.shape), mix)
  log_p = D.discretized_logistic_mixture_log_prob(x, batch)
  np.testing.assert_allclose(float(jax.nn.logsumexp(log_p)), 0.0, atol=2e-5)
  # Sharp components (tiny scales) put the mass on one bin, still normalized.
  sharp = jax.tree.map(lambda a: jnp.broadcast_to(a, (256,) + a.shape), _mixture((1, 1), 1, k, scale=2.0))
  np.testing.assert_allclose(float(jax.nn.logsumexp(D.discretized_logistic_mixture_log_prob(x, sharp))), 0.0, atol=2e-5)


@pytest.mark.slow
def test_discretized_logistic_colour_pixel_sums_to_one_over_all_colours():
  bins = 8  # 8 values per channel: all 512 colours enumerated, the channel coupling included
  mix = _mixture((1, 1), 3, 4)
  grid = np.asarray(list(itertools.product(range(bins), repeat=3)), np.float32) / ((bins - 1) / 2) - 1.0
  x = jnp.asarray(grid).reshape(-1, 1, 1, 3)
  batch = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(grid),) + a.shape), mix)
  log_p = D.discretized_logistic_mixture_log_prob(x, batch, bins=bins)
  np.testing.assert_allclose(float(jax.nn.logsumexp(log_p)), 0.0, atol=2e-5)


def test_gaussian_on_dequantized_pixels_is_a_normalized_density_minus_the_bin_volume():
  mean, log_scale = jnp.array([[[[0.4]]]]), jnp.log(jnp.array([[[[0.07]]]]))
  x = jnp.linspace(-1.0, 2.0, 30001).reshape(-1, 1, 1, 1)
  log_p = D.gaussian_image_log_prob(x, jnp.broadcast_to(mean, x.shape), jnp.broadcast_to(log_scale, x.shape))
  density = np.exp(np.asarray(log_p, np.float64) + np.log(256))  # undo the -D log 256 of the discrete bound
  np.testing.assert_allclose(np.trapezoid(density, np.linspace(-1.0, 2.0, 30001)), 1.0, rtol=1e-4)
  np.testing.assert_allclose(log_p[15000], stats.norm.logpdf(0.5, 0.4, 0.07) - np.log(256), rtol=1e-5)


def test_likelihood_heads_shape_their_outputs():
  mono, colour = discretized_logistic((4, 4, 1), 10), discretized_logistic((4, 4, 3), 10)
  assert (mono.output_shape, colour.output_shape) == ((4, 4, 30), (4, 4, 100))
  out = colour.outputs({}, jnp.zeros((2, 4, 4, 100)))
  assert out.means.shape == (2, 4, 4, 3, 10) and out.logit_weights.shape == (2, 4, 4, 10)
  assert colour.mean(out).shape == (2, 4, 4, 3)
  g = gaussian((4, 4, 1), "per-pixel", 0.2)
  assert g.init()["log_scale"].shape == (4, 4, 1)
  assert gaussian((4, 4, 1), "fixed").init() == {}


def test_gaussian_mixture_log_prob_matches_the_direct_sum():
  k, d = 7, 3
  means, log_scales = RNG.normal(size=(k, d)), RNG.normal(scale=0.3, size=(k, d))
  log_w = np.log(RNG.dirichlet(np.ones(k)))
  z = RNG.normal(size=(5, 4, d))
  direct = logsumexp(
    [log_w[j] + stats.norm.logpdf(z, means[j], np.exp(log_scales[j])).sum(-1) for j in range(k)], axis=0
  )
  ours = D.gaussian_mixture_log_prob(*(jnp.asarray(a, jnp.float32) for a in (z, means, log_scales, log_w)))
  np.testing.assert_allclose(ours, direct, rtol=1e-4, atol=1e-4)


def test_gaussian_mixture_log_prob_of_narrow_components_far_from_the_origin_stays_a_density():
  # Components 100x narrower than their distance from the origin: the expanded square
  # cancels in float32. The log-density must stay near the exact one and never exceed
  # the peak of the mixture (a negative "distance" would let training drive it to +inf).
  k, d = 50, 20
  means = 3.0 + RNG.normal(size=(k, d))
  log_scales = np.full((k, d), np.log(0.01))
  z = means[:8] + 0.01 * RNG.normal(size=(8, d))
  direct = logsumexp([stats.norm.logpdf(z, means[j], 0.01).sum(-1) for j in range(k)], axis=0) - np.log(k)
  ours = np.asarray(
    D.gaussian_mixture_log_prob(*(jnp.asarray(a, jnp.float32) for a in (z, means, log_scales, np.full(k, -np.log(k)))))
  )
  peak = -d * (np.log(0.01) + 0.5 * np.log(2 * np.pi))
  assert np.all(ours <= peak + 1e-3)
  np.testing.assert_allclose(ours, direct, atol=0.5)


@pytest.mark.parametrize("prior", ["normal", "mog", "vamp"])
@pytest.mark.slow
def test_each_prior_is_a_normalized_density_with_samples_where_it_says(prior):
  config = Config(latent_dim=2, hidden=(16,), prior=prior, prior_components=6)
  vae = make_vae(config)
  params = vae.init(jax.random.key(0))
  # Normalization on a 2-D grid.
  g = np.linspace(-9, 9, 601)
  z = jnp.asarray(np.stack(np.meshgrid(g, g), -1), jnp.float32)
  mass = np.exp(np.asarray(vae.log_p_z(params, z), np.float64)).sum() * (g[1] - g[0]) ** 2
  np.testing.assert_allclose(mass, 1.0, rtol=2e-3)
  # Samples: their mean log-density matches the density's negative entropy (Monte Carlo).
  samples = vae.sample_p_z(params, jax.random.key(1), 4000)
  assert samples.shape == (4000, 2) and np.all(np.isfinite(np.asarray(samples)))
  if prior == "vamp":  # p(z) = (1/K) sum_k q_phi(z|u_k): the encoder on the pseudo-inputs, directly
    u = jax.nn.sigmoid(params["prior"]["pseudo_inputs"])
    q = vae.q_phi(params, u)
    direct = logsumexp(
      [
        stats.norm.logpdf(np.asarray(z), np.asarray(q.mean[j]), np.exp(np.asarray(q.log_scale[j]))).sum(-1)
        for j in range(6)
      ],
      axis=0,
    ) - np.log(6)
    np.testing.assert_allclose(vae.log_p_z(params, z), direct, rtol=1e-3, atol=1e-3)
  if prior != "normal":
    assert vae.kl_q_p_z is None  # no closed form: the ELBO estimates the KL


@pytest.mark.slow
def test_learned_priors_change_log_px_through_the_prior_density(mnist):
  config = Config(latent_dim=4, hidden=(32,), prior="mog", prior_components=3)
  vae = make_vae(config)
  params = vae.init(jax.random.key(0))
  x = (jnp.asarray(mnist.test[:5]) > 127).astype(jnp.float32)
  t = importance_terms(vae, params, x, jax.random.key(1), 3)
  moved = {**params, "prior": {**params["prior"], "means": params["prior"]["means"] + 3.0}}
  t2 = importance_terms(vae, moved, x, jax.random.key(1), 3)
  assert np.all(np.asarray(t2.log_p_z) != np.asarray(t.log_p_z))
  np.testing.assert_array_equal(t.log_p_x_given_z, t2.log_p_x_given_z)


@pytest.mark.parametrize(
  "changes",
  [
    dict(net="conv", likelihood="bernoulli"),
    dict(net="conv", likelihood="discretized-logistic", mixtures=3),
    dict(net="conv", likelihood="gaussian", gaussian_scale="per-pixel", prior="vamp", prior_components=5),
    dict(likelihood="gaussian", gaussian_scale="fixed", prior="mog"),
  ],
)
@pytest.mark.slow
def test_conv_and_8_bit_models_train(mnist, changes):
  config = Config(batch_size=16, n_train=64, latent_dim=4, hidden=(32,), conv_channels=(4, 8), **changes)
  trainer = make_trainer(config, train_size=64)
  state = trainer.init(jax.random.key(0))
  images = jnp.asarray(mnist.train[:64])
  losses = []
  for epoch in range(4):
    state, metrics = trainer.train_epoch(state, images, jax.random.key(epoch))
    losses.append(float(metrics["loss"]))
  assert all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.slow
def test_8_bit_run_reports_bits_per_dim(tmp_path, mnist):
  config = Config(
    likelihood="discretized-logistic",
    mixtures=3,
    net="conv",
    conv_channels=(4, 8),
    latent_dim=4,
    batch_size=32,
    n_train=128,
    n_test=64,
    epochs=1,
  )
  summary = train_and_evaluate(config, str(tmp_path / "dl"), data=mnist, progress=False, verbose=False)
  assert summary["bits_per_dim"] == pytest.approx(-summary["test_elbo"] / (784 * np.log(2)))
  assert 0 < summary["bits_per_dim"] < 10  # nats of 8-bit data: below 8 bits of a uniform model once trained a bit
  assert os.path.exists(tmp_path / "dl" / "samples.png")


@pytest.mark.parametrize(
  "name, size, shape", [("cifar10", None, (32, 32, 3)), ("celeb_a", 16, (16, 16, 3)), ("kmnist", None, (28, 28, 1))]
)
@pytest.mark.slow
def test_tfds_colour_and_grey_datasets_train_with_a_conv_model(tmp_path, name, size, shape):
  config = Config(
    dataset=f"tfds:{name}",
    image_size=size,
    net="conv",
    conv_channels=(4, 8),
    latent_dim=4,
    likelihood="discretized-logistic",
    mixtures=2,
    batch_size=8,
    epochs=1,
  )
  with tfds.testing.mock_data(num_examples=24):
    summary = train_and_evaluate(config, str(tmp_path / name), progress=False, verbose=False)
  assert summary["n_train"] == 24 and np.isfinite(summary["bits_per_dim"])
  with open(tmp_path / name / "config.json") as f:
    assert Config.from_dict(json.load(f)).image_size == size
  from jaxvae.runs.sources import load_dataset

  with tfds.testing.mock_data(num_examples=4):
    assert load_dataset(f"tfds:{name}", image_size=size).event_shape == shape


@pytest.mark.parametrize(
  "changes, named",
  [
    (dict(likelihood="poisson"), "likelihood"),
    (dict(prior="flow"), "prior"),
    (dict(net="resnet"), "net"),
    (dict(model="burda2", net="conv"), "burda2"),
    (dict(prior="vamp", free_bits=0.5), "free_bits"),
    (dict(gaussian_scale="learned"), "gaussian_scale"),
    (dict(image_size=2), "image_size"),
  ],
)
def test_invalid_likelihood_and_prior_settings_name_the_field(changes, named):
  with pytest.raises(JaxvaeError, match=named):
    Config(**changes).validate()


def test_conv_model_needs_images_that_halve(tmp_path, mnist):
  config = Config(net="conv", conv_channels=(4, 8, 16), batch_size=8, n_train=16, epochs=1)
  with pytest.raises(JaxvaeError, match="--image-size"):
    train_and_evaluate(config, str(tmp_path / "odd"), data=mnist, progress=False, verbose=False)
  assert not (tmp_path / "odd").exists()


def test_conv_nets_default_to_elu_and_the_mlp_keeps_relu():
  assert Config(net="conv").activation == "elu"
  assert Config().activation == "relu" and Config(model="burda1").activation == "tanh"
  assert Config(net="conv", activation="relu").activation == "relu"
