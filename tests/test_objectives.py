"""The ELBO against the exact log p(x) of a linear-Gaussian VAE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxvae.core import linear_gaussian as LG
from jaxvae.core.distributions import Gaussian, gaussian_sample
from jaxvae.core.objectives import beta_elbo_loss, elbo

DATA_DIM, LATENT_DIM = 6, 3


@pytest.fixture
def model():
  """A linear-Gaussian VAE whose W has orthogonal columns, so the true posterior is diagonal."""
  key = jax.random.key(0)
  vae = LG.make_linear_gaussian_vae(DATA_DIM, LATENT_DIM)
  params = vae.init(key)
  q_mat, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(DATA_DIM, LATENT_DIM)))
  params["decoder"] = {
    "W": jnp.asarray(q_mat * np.array([2.0, 1.0, 0.5]), jnp.float32),
    "b": jnp.linspace(-1.0, 1.0, DATA_DIM),
    "log_sigma": jnp.asarray(np.log(0.7), jnp.float32),
  }
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, DATA_DIM)), jnp.float32)
  return vae, params, x


def test_exact_log_px_matches_scipy(model):
  vae, params, x = model
  d = params["decoder"]
  cov = np.asarray(d["W"] @ d["W"].T, np.float64) + np.exp(2 * float(d["log_sigma"])) * np.eye(DATA_DIM)
  expected = stats.multivariate_normal(np.asarray(d["b"]), cov).logpdf(np.asarray(x))
  np.testing.assert_allclose(LG.log_p_x(params, x), expected, rtol=1e-5)


@pytest.mark.slow
def test_elbo_equals_log_px_when_q_is_the_true_posterior(model):
  vae, params, x = model
  params = {**params, "encoder": LG.optimal_encoder(params)}
  log_px = LG.log_p_x(params, x)
  # With q = p(z|x) the importance weight p(x, z) / q(z|x) is the constant p(x):
  # the single-sample ELBO with the Monte-Carlo KL equals log p(x) for every z.
  for seed in range(5):
    terms = elbo(vae, params, x, jax.random.key(seed), analytic_kl=False)
    np.testing.assert_allclose(terms.elbo, log_px, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(LG.exact_elbo(params, x), log_px, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(LG.kl_to_true_posterior(params, vae.q_phi(params, x), x), 0.0, atol=1e-4)


@pytest.mark.parametrize("analytic_kl", [True, False])
@pytest.mark.slow
def test_elbo_of_a_wrong_q_is_log_px_minus_its_kl_to_the_posterior(model, analytic_kl):
  vae, params, x = model
  enc = LG.optimal_encoder(params)
  params = {**params, "encoder": {**enc, "c": enc["c"] + 0.5, "s": enc["s"] - 0.3}}
  q = vae.q_phi(params, x)
  gap = LG.kl_to_true_posterior(params, q, x)
  log_px = LG.log_p_x(params, x)
  assert np.all(np.asarray(gap) > 0.05)
  # The closed-form ELBO is log p(x) - KL(q || p(z|x)), exactly.
  np.testing.assert_allclose(LG.exact_elbo(params, x), log_px - gap, rtol=1e-5, atol=1e-4)
  # The single-sample estimator is unbiased for it: its mean over many draws agrees within 4 standard errors.
  n = 20_000
  draws = jax.vmap(lambda k: elbo(vae, params, x, k, analytic_kl=analytic_kl).elbo)(
    jax.random.split(jax.random.key(0), n)
  )
  draws = np.asarray(draws, np.float64)
  mean, se = draws.mean(0), draws.std(0) / np.sqrt(n)
  np.testing.assert_array_less(np.abs(mean - np.asarray(log_px - gap)), 4 * se + 1e-4)
  assert np.all(mean < np.asarray(log_px))


def test_elbo_terms_are_consistent_and_beta_weights_the_kl(model):
  vae, params, x = model
  terms = elbo(vae, params, x, jax.random.key(0))
  np.testing.assert_allclose(terms.elbo, terms.log_p_x_given_z - terms.kl, rtol=1e-6)
  assert terms.elbo.shape == (x.shape[0],)
  np.testing.assert_allclose(beta_elbo_loss(terms, 1.0), -jnp.mean(terms.elbo), rtol=1e-6)
  np.testing.assert_allclose(
    beta_elbo_loss(terms, 3.0), -jnp.mean(terms.log_p_x_given_z) + 3.0 * jnp.mean(terms.kl), rtol=1e-5
  )
  np.testing.assert_allclose(beta_elbo_loss(terms, 0.0), -jnp.mean(terms.log_p_x_given_z), rtol=1e-6)


def test_analytic_kl_is_kl_to_the_standard_normal_prior(model):
  vae, params, x = model
  q = vae.q_phi(params, x)
  assert isinstance(q, Gaussian)
  terms = elbo(vae, params, x, jax.random.key(0), analytic_kl=True)
  mean, var = np.asarray(q.mean, np.float64), np.exp(2 * np.asarray(q.log_scale, np.float64))
  np.testing.assert_allclose(terms.kl, 0.5 * (mean**2 + var - 1 - np.log(var)).sum(-1), rtol=1e-5)


# --- IWAE, importance sampling, free bits, warm-up -------------------------------------------------

from jaxvae.core.estimators import importance_sampled_log_px  # noqa: E402
from jaxvae.core.objectives import ELBOTerms, importance_terms, iwae_bound, kl_warmup  # noqa: E402


def _wrong_q(params):
  enc = LG.optimal_encoder(params)
  return {**params, "encoder": {**enc, "c": enc["c"] + 0.5, "s": enc["s"] - 0.3}}


def test_iwae_with_k_1_is_the_elbo(model):
  vae, params, x = model
  params = _wrong_q(params)
  key = jax.random.key(3)
  t = importance_terms(vae, params, x, key, 1)
  mc = elbo(vae, params, x, key, k=1, analytic_kl=False)
  np.testing.assert_allclose(iwae_bound(t.log_w), mc.elbo, rtol=1e-6)


def test_single_sample_elbo_equals_the_k_sample_formula_at_k_1(model):
  """elbo(k=1) skips the [k, B] sample axis (a CPU speed-up); its values are the axis version's."""
  vae, params, x = model
  params = _wrong_q(params)
  key = jax.random.key(4)
  q = vae.q_phi(params, x)
  z = gaussian_sample(key, q, (1,))
  on_axis = jnp.mean(vae.log_p_x_given_z(jnp.broadcast_to(x, (1,) + x.shape), vae.p_theta(params, z)), axis=0)
  terms = elbo(vae, params, x, key, k=1)
  np.testing.assert_allclose(terms.log_p_x_given_z, on_axis, rtol=1e-6)
  np.testing.assert_allclose(terms.elbo, on_axis - jnp.sum(vae.kl_q_p_z(params, q), axis=-1), rtol=1e-6)


@pytest.mark.slow
def test_iwae_bound_is_above_the_elbo_and_grows_with_k(model):
  vae, params, x = model
  params = _wrong_q(params)
  exact_elbo = LG.exact_elbo(params, x)
  log_px = LG.log_p_x(params, x)
  means, ses = {}, {}
  n = 4000
  for k in (1, 5, 50):
    draws = jax.vmap(lambda key: iwae_bound(importance_terms(vae, params, x, key, k).log_w))(
      jax.random.split(jax.random.key(k), n)
    )
    draws = np.asarray(draws, np.float64)
    means[k], ses[k] = draws.mean(0), draws.std(0) / np.sqrt(n)
  # E[IWAE_1] = ELBO (within Monte-Carlo error); then increasing in k, and below log p(x).
  assert np.all(np.abs(means[1] - np.asarray(exact_elbo)) < 4 * ses[1])
  assert np.all(means[5] - means[1] > 4 * np.hypot(ses[5], ses[1]))
  assert np.all(means[50] - means[5] > 4 * np.hypot(ses[50], ses[5]))
  assert np.all(means[50] < np.asarray(log_px))


@pytest.mark.slow
def test_importance_sampling_converges_to_the_exact_log_px(model):
  vae, params, x = model
  # A proposal wider than the posterior (as a good IS proposal is) and off-centre: light-tailed weights.
  enc = LG.optimal_encoder(params)
  params = {**params, "encoder": {**enc, "c": enc["c"] + 0.5, "s": enc["s"] + 0.3}}
  log_px = np.asarray(LG.log_p_x(params, x))
  se = {}
  for k, chunk in ((1000, 1000), (100_000, 7_000)):
    out = importance_sampled_log_px(vae, params, x, jax.random.key(0), k, chunk)
    se[k] = np.sqrt(np.asarray(out["mc_var"]))
    assert np.all(np.abs(np.asarray(out["log_px"]) - log_px) < 4 * se[k] + 1e-4), (out["log_px"], log_px, se[k])
  # The error shrinks as 1 / sqrt(k): 100x the samples, about a tenth of the error.
  assert np.all(se[100_000] < se[1000] / 5) and np.all(se[100_000] < 0.08)
  # The chunking changes the draws, not the estimator: any chunking agrees within the error.
  a = importance_sampled_log_px(vae, params, x, jax.random.key(0), 5000, 5000)["log_px"]
  b = importance_sampled_log_px(vae, params, x, jax.random.key(0), 5000, 333)["log_px"]
  np.testing.assert_allclose(a, b, atol=0.05)


def test_free_bits_floor_removes_the_kl_gradient_of_dimensions_below_it():
  kl_per_dim = jnp.array([[0.05, 2.0, 0.5], [0.15, 3.0, 0.7]])  # batch means: 0.1, 2.5, 0.6
  rec = jnp.array([-80.0, -90.0])

  def loss(kpd, free_bits):
    terms = ELBOTerms(rec, jnp.sum(kpd, -1), rec - jnp.sum(kpd, -1), kpd)
    return beta_elbo_loss(terms, 1.0, free_bits)

  # No floor: d loss / d KL_bj = 1 / B for every dimension.
  np.testing.assert_allclose(jax.grad(loss)(kl_per_dim, 0.0), np.full((2, 3), 0.5))
  # Floor 1 nat: dimensions 0 and 2 (batch means 0.1 and 0.6 < 1) contribute 1 nat each and no gradient.
  np.testing.assert_allclose(jax.grad(loss)(kl_per_dim, 1.0), [[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]])
  np.testing.assert_allclose(loss(kl_per_dim, 1.0), 85.0 + 1.0 + 2.5 + 1.0, rtol=1e-6)


def test_kl_warmup_scales_the_kl_gradient_linearly():
  schedule = kl_warmup(2.0, 100.0)
  np.testing.assert_allclose([schedule(0), schedule(25), schedule(100), schedule(1000)], [0.0, 0.5, 2.0, 2.0])
  np.testing.assert_allclose(kl_warmup(2.0, 0.0)(0), 2.0)
  rec, kl = jnp.array([-80.0]), jnp.array([10.0])
  grad_kl = lambda w: jax.grad(lambda k: beta_elbo_loss(ELBOTerms(rec, k, rec - k), w))(kl)  # noqa: E731
  np.testing.assert_allclose(grad_kl(schedule(25)), [0.5])
  np.testing.assert_allclose(grad_kl(schedule(0)), [0.0])
