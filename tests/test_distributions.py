"""Log-densities and KLs against scipy and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from jaxvae.core import distributions as D

RNG = np.random.default_rng(0)


def _gaussian(shape=(3, 4)):
  return D.Gaussian(
    jnp.asarray(RNG.normal(size=shape), jnp.float32), jnp.asarray(RNG.normal(scale=0.5, size=shape), jnp.float32)
  )


def test_gaussian_log_prob_matches_scipy():
  q = _gaussian()
  z = jnp.asarray(RNG.normal(size=(3, 4)), jnp.float32)
  expected = stats.norm.logpdf(np.asarray(z), np.asarray(q.mean), np.exp(np.asarray(q.log_scale))).sum(-1)
  np.testing.assert_allclose(D.gaussian_log_prob(q, z), expected, rtol=1e-5, atol=1e-5)


def test_standard_normal_log_prob_matches_scipy():
  z = jnp.asarray(RNG.normal(size=(5, 7)), jnp.float32)
  np.testing.assert_allclose(D.standard_normal_log_prob(z), stats.norm.logpdf(np.asarray(z)).sum(-1), rtol=1e-6)
  np.testing.assert_allclose(
    D.standard_normal_log_prob(z), D.gaussian_log_prob(D.standard_normal(z.shape), z), rtol=1e-6
  )


def test_gaussian_kl_matches_the_formula_and_the_standard_normal_special_case():
  q, p = _gaussian(), _gaussian()
  mq, sq = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_scale, np.float64))
  mp, sp = np.asarray(p.mean, np.float64), np.exp(np.asarray(p.log_scale, np.float64))
  expected = (np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(-1)
  np.testing.assert_allclose(D.gaussian_kl(q, p), expected, rtol=1e-5)
  np.testing.assert_allclose(
    D.gaussian_kl_to_standard_normal(q), D.gaussian_kl(q, D.standard_normal(q.mean.shape)), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(D.gaussian_kl(q, q), 0.0, atol=1e-6)
  assert np.all(np.asarray(D.gaussian_kl(q, p)) > 0)


@pytest.mark.parametrize("to_standard_normal", [True, False])
def test_analytic_kl_agrees_with_monte_carlo_within_its_standard_error(to_standard_normal):
  q, p = _gaussian((2, 3)), (D.standard_normal((2, 3)) if to_standard_normal else _gaussian((2, 3)))
  n = 200_000
  z = D.gaussian_sample(jax.random.key(1), q, (n,))
  expand = lambda g: D.Gaussian(g.mean[None], g.log_scale[None])  # noqa: E731
  log_ratio = np.asarray(D.gaussian_log_prob(expand(q), z) - D.gaussian_log_prob(expand(p), z), np.float64)
  mc, se = log_ratio.mean(0), log_ratio.std(0) / np.sqrt(n)
  analytic = np.asarray(D.gaussian_kl(q, p))
  assert np.all(np.abs(mc - analytic) < 4 * se + 1e-4), (mc, analytic, se)


def test_gaussian_sample_is_reparameterized_with_the_right_moments():
  q = D.Gaussian(jnp.array([1.0, -2.0]), jnp.log(jnp.array([0.5, 3.0])))
  z = np.asarray(D.gaussian_sample(jax.random.key(0), q, (100_000,)))
  np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.03)
  np.testing.assert_allclose(z.std(0), [0.5, 3.0], rtol=0.02)
  # dz/dmu = 1 and dz/dlog_sigma = sigma * eps = z - mu: gradients flow through the sample.
  grad_mean = jax.grad(lambda m: D.gaussian_sample(jax.random.key(0), D.Gaussian(m, q.log_scale)).sum())(q.mean)
  np.testing.assert_allclose(grad_mean, [1.0, 1.0])
  z1 = D.gaussian_sample(jax.random.key(0), q)
  grad_ls = jax.grad(lambda s: D.gaussian_sample(jax.random.key(0), D.Gaussian(q.mean, s)).sum())(q.log_scale)
  np.testing.assert_allclose(grad_ls, z1 - q.mean, rtol=1e-6)


def test_bernoulli_log_prob_matches_scipy_and_is_stable_for_saturated_logits():
  logits = jnp.asarray(RNG.normal(scale=3.0, size=(2, 4, 4, 1)), jnp.float32)
  x = jnp.asarray(RNG.integers(0, 2, size=(2, 4, 4, 1)), jnp.float32)
  expected = stats.bernoulli.logpmf(np.asarray(x), expit(np.asarray(logits, np.float64))).sum((1, 2, 3))
  np.testing.assert_allclose(D.bernoulli_log_prob(x, logits), expected, rtol=1e-5)
  # A saturated sigmoid must not give log(0): log p(x=1 | l=-100) = -100, log p(x=0 | l=-100) ~= 0.
  l = jnp.full((1, 1, 1, 1), -100.0)
  np.testing.assert_allclose(D.bernoulli_log_prob(jnp.ones_like(l), l), [-100.0])
  np.testing.assert_allclose(D.bernoulli_log_prob(jnp.zeros_like(l), l), [0.0], atol=1e-30)
  g = jax.grad(lambda l: D.bernoulli_log_prob(jnp.ones_like(l), l).sum())(l)
  assert np.all(np.isfinite(g))
  np.testing.assert_allclose(D.bernoulli_mean(jnp.array([0.0])), [0.5])
