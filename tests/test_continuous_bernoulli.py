"""The continuous Bernoulli likelihood against quadrature and its closed form, and through a run by its name."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import jaxvae
from jaxvae.core.likelihoods import LIKELIHOODS, continuous_bernoulli
from jaxvae.runs.folder import read_metrics

LOGITS = [-30.0, -4.0, -0.3, -0.05, -1e-4, 0.0, 2e-4, 0.07, 1.0, 9.0]


def _density(likelihood, logit):
  one = jax.jit(lambda x: likelihood.log_prob(jnp.full((1, 1), x, jnp.float32), jnp.full((1, 1), logit, jnp.float32)))
  return lambda x: math.exp(float(one(x)[0]))


@pytest.mark.parametrize("logit", LOGITS)
def test_it_is_a_density_on_the_unit_interval_whose_mean_is_the_closed_form(logit):
  """int_0^1 p(x|l) dx = 1 and int_0^1 x p(x|l) dx = the likelihood's mean, by scipy's quadrature."""
  likelihood = continuous_bernoulli((1,))
  p = _density(likelihood, logit)
  total, _ = integrate.quad(p, 0.0, 1.0, epsabs=1e-9)
  mean, _ = integrate.quad(lambda x: x * p(x), 0.0, 1.0, epsabs=1e-9)
  assert total == pytest.approx(1.0, abs=2e-5)
  assert float(likelihood.mean(jnp.float32(logit))) == pytest.approx(mean, abs=2e-5)


def test_the_normalizer_is_loaiza_ganem_and_cunninghams_in_float64():
  """log C(lambda) = log(2 artanh(1 - 2 lambda) / (1 - 2 lambda)) of the paper, in numpy float64, for lambda != 1/2."""
  likelihood = continuous_bernoulli((1,))
  for logit in (-12.0, -2.5, -0.01, 0.3, 6.0):
    lam = 1.0 / (1.0 + math.exp(-logit))
    paper = math.log(2.0 * math.atanh(1.0 - 2.0 * lam) / (1.0 - 2.0 * lam))
    x = 0.3
    expected = x * math.log(lam) + (1 - x) * math.log1p(-lam) + paper
    got = float(likelihood.log_prob(jnp.full((1, 1), x), jnp.full((1, 1), logit))[0])
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_the_gradient_is_the_closed_forms_near_and_finite_at_a_logit_of_zero():
  """d/dl log p(x|l) = x - sigmoid(l) + 1/l - 1/sinh(l) (-> x - 1/2 + l/6 at l = 0), in float64."""
  logits = np.array([1e-4, -2e-3, 0.05, -0.5, 5.0])
  likelihood = continuous_bernoulli((len(logits),))
  g = jax.grad(lambda l: likelihood.log_prob(jnp.full((1, len(logits)), 0.4), l).sum())(jnp.asarray(logits[None]))
  expected = 0.4 - 1.0 / (1.0 + np.exp(-logits)) + 1.0 / logits - 1.0 / np.sinh(logits)
  np.testing.assert_allclose(np.asarray(g[0]), expected, atol=2e-6)
  assert np.all(np.isfinite(jax.grad(lambda l: likelihood.log_prob(jnp.full((1, 5), 0.4), l).sum())(jnp.zeros((1, 5)))))


@pytest.mark.slow
def test_it_is_a_registered_likelihood_that_trains_on_grey_levels_by_its_name(tmp_path, mnist):
  assert "continuous-bernoulli" in LIKELIHOODS
  data = jaxvae.Dataset.from_arrays(mnist.train[:256], mnist.test[:64])
  config = jaxvae.Config(likelihood="continuous-bernoulli", hidden=(32,), latent_dim=4, batch_size=32, epochs=2)
  summary = jaxvae.train_and_evaluate(config, str(tmp_path / "cb"), data=data, progress=False, verbose=False)
  rows = [r["test_elbo"] for r in read_metrics(str(tmp_path / "cb"))]
  assert np.isfinite(summary["test_elbo"]) and rows[1] > rows[0]
  # By its name in Python too, as a density of continuous x (not a likelihood of 8-bit values).
  vae = jaxvae.VAE.from_modules(
    jaxvae.nets.MLPEncoder((8,), 2),
    jaxvae.nets.MLPDecoder((8,), (28, 28, 1)),
    data_shape=(28, 28, 1),
    latent_dim=2,
    likelihood="continuous-bernoulli",
  )
  assert vae.likelihood.name == "continuous-bernoulli" and not vae.likelihood.eight_bit
