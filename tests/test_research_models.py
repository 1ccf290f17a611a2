"""Research models on the open core: the IAF posterior, the Ladder VAE, the EMA, VAE/IWAE as one program."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import MNIST_SHAPE, mnist_trainer

from jaxvae.core import distributions as D, flows, ladder, objectives, rng
from jaxvae.core.estimators import optimize_local_q
from jaxvae.core.model import VAE
from jaxvae.core.nets import MLPDecoder
from jaxvae.errors import JaxvaeError
from jaxvae.runs.build import make_vae
from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import evaluate_run
from jaxvae.runs.grid import group_configs
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.sweep import train_group
from jaxvae.training.checkpoint import restore_checkpoint
from jaxvae.training.train import eval_params

TINY = dict(batch_size=32, n_train=256, n_test=64, epochs=2)
TINY_IAF = dict(TINY, hidden=(32,), latent_dim=4, posterior="iaf", flow_steps=2, flow_hidden=(16, 16))
TINY_LADDER = dict(TINY, model="ladder", hidden=(32,), ladder_layers=(4, 2), ladder_widths=(16, 8))


def _perturbed(tree, key, scale=0.3):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten([a + scale * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])


@pytest.mark.slow
def test_made_output_i_depends_only_on_earlier_inputs_in_its_order():
  for reverse in (False, True):
    made = flows.MADE((12, 12), reverse=reverse)
    params = _perturbed(made.init(jax.random.key(0), jnp.zeros((1, 5)), jnp.zeros((1, 3)))["params"], jax.random.key(1))
    jac = jax.jacfwd(lambda z: made.apply({"params": params}, z[None], jnp.ones((1, 3)))[0][0])(jnp.arange(5.0) / 5)
    order = np.arange(5)[::-1] if reverse else np.arange(5)  # order[r] = the input in position r
    rank = np.argsort(order)
    allowed = rank[None, :] < rank[:, None]  # d m_i / d z_j may be nonzero only if j comes before i
    assert np.all(np.asarray(jac)[~allowed] == 0)
    assert np.any(np.asarray(jac)[allowed] != 0)


@pytest.mark.slow
def test_iaf_log_density_is_the_change_of_variables_by_autodiff_and_the_inverse_recovers_it():
  d, c = 4, 3
  flow = flows.iaf_flow(d, steps=3, hidden=(16, 16), context_dim=c)
  posterior = flows.iaf(d, steps=3, hidden=(16, 16), context_dim=c)
  params = {"posterior": _perturbed(flow.init(jax.random.key(0)), jax.random.key(1), 0.2)}
  q0 = D.Gaussian(jnp.array([[0.3, -0.2, 0.1, 0.5]]), jnp.array([[-0.4, 0.2, 0.0, -0.1]]))
  context = jnp.array([[0.5, -1.0, 2.0]])
  z, log_q = posterior.sample(params, (q0, context), jax.random.key(2), (6,))  # [6, 1, d], [6, 1]
  z0 = q0.mean[None] + jnp.exp(q0.log_scale)[None] * rng.normal(jax.random.key(2), (6, 1, d))
  for s in range(6):
    f = lambda u: flow.forward(params, u[None], context)[0][0]  # noqa: E731
    log_det = np.linalg.slogdet(np.asarray(jax.jacfwd(f)(z0[s, 0]), np.float64))[1]
    expected = np.asarray(D.gaussian_log_prob(q0, z0[s]), np.float64) - log_det
    np.testing.assert_allclose(np.asarray(f(z0[s, 0])), np.asarray(z[s, 0]), atol=1e-5)
    np.testing.assert_allclose(float(log_q[s, 0]), float(expected[0]), rtol=1e-4, atol=2e-4)
  np.testing.assert_allclose(np.asarray(posterior.log_prob(params, (q0, context), z)), np.asarray(log_q), atol=2e-4)


def _tiny_ladder(latents=(3, 2), widths=(8, 8)):
  prior, posterior = ladder.ladder(latents, widths, "tanh")
  vae = VAE.from_modules(
    ladder.LadderEncoder(widths, latents, "tanh"),
    MLPDecoder((8,), (5,), "tanh"),
    data_shape=(5,),
    latent_dim=latents[0],
    prior=prior,
    posterior=posterior,
  )
  params = _perturbed(vae.init(jax.random.key(0)), jax.random.key(1), 0.2)
  x = (jax.random.uniform(jax.random.key(2), (4, 5)) > 0.5).astype(jnp.float32)
  return vae, params, x


@pytest.mark.slow
def test_ladder_posterior_is_the_precision_weighted_merge_and_its_layer_kls_are_closed_form():
  vae, params, x = _tiny_ladder()
  h = vae.encode(params, x)  # bottom-up (mu^, log sigma^) per layer
  z, log_q = vae.sample_q(params, x, jax.random.key(3), (2,))
  z1, z2 = (np.asarray(a, np.float64) for a in z)
  # An independent computation in float64 numpy: q(z2|x) = N(mu^2, s^2_2); p(z1|z2) from the
  # prior's top-down network; q(z1|z2, x) with precision = sum of precisions.
  mu_hat1, var_hat1 = np.asarray(h[0].mean, np.float64), np.exp(2 * np.asarray(h[0].log_scale, np.float64))
  mu_hat2, var_hat2 = np.asarray(h[1].mean, np.float64), np.exp(2 * np.asarray(h[1].log_scale, np.float64))
  top_down = ladder.GaussianMLP(hidden=(8, 8), out_dim=3, activation="tanh")
  p1 = top_down.apply({"params": params["prior"]["layer_1"]}, jnp.asarray(z2, jnp.float32))
  mu_p, var_p = np.asarray(p1.mean, np.float64), np.exp(2 * np.asarray(p1.log_scale, np.float64))
  var_q = 1 / (1 / var_hat1 + 1 / var_p)
  mu_q = (mu_hat1 / var_hat1 + mu_p / var_p) * var_q

  def log_normal(v, mu, var):
    return -0.5 * np.sum((v - mu) ** 2 / var + np.log(2 * np.pi * var), axis=-1)

  np.testing.assert_allclose(
    np.asarray(log_q), log_normal(z2, mu_hat2, var_hat2) + log_normal(z1, mu_q, var_q), rtol=1e-5
  )
  np.testing.assert_allclose(np.asarray(vae.log_q(params, x, z)), np.asarray(log_q), rtol=1e-5)
  log_p = log_normal(z2, 0.0, 1.0) + log_normal(z1, mu_p, var_p)
  np.testing.assert_allclose(np.asarray(vae.log_p_z(params, z)), log_p, rtol=1e-5)
  # Layer KLs: closed form at the drawn z2 (same key, same z).
  z_again, (kl1, kl2) = vae.sample_kl(params, x, jax.random.key(3), (2,))
  np.testing.assert_allclose(np.asarray(z_again[0]), z1, rtol=1e-6)
  kl1_np = 0.5 * np.sum(var_q / var_p + (mu_q - mu_p) ** 2 / var_p - 1 + np.log(var_p / var_q), axis=-1)
  kl2_np = 0.5 * np.sum(var_hat2 + mu_hat2**2 - 1 - np.log(var_hat2), axis=-1)
  np.testing.assert_allclose(np.asarray(jnp.sum(kl1, -1)), kl1_np, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(jnp.sum(kl2, -1)), np.broadcast_to(kl2_np, (2, 4)), rtol=1e-4, atol=1e-6)
  # E_q[z_2|x] is mu^_2 itself; E_q[z_1|x] averages q(z_1|z_2, x)'s means over draws of z_2.
  means = vae.latent_means(params, x, jax.random.key(4))
  np.testing.assert_array_equal(np.asarray(means[1]), np.asarray(h[1].mean))
  assert means[0].shape == (4, 3)


@pytest.mark.slow
def test_ladder_elbo_with_layer_kls_estimates_the_same_elbo_as_log_q_minus_log_p():
  vae, params, x = _tiny_ladder()
  k = 20_000
  analytic = objectives.elbo(vae, params, x, jax.random.key(4), k=k, analytic_kl=True)
  mc = objectives.importance_terms(vae, params, x, jax.random.key(5), k)
  assert analytic.kl_per_layer.shape == (4, 2) and analytic.kl_per_dim.shape == (4, 5)
  np.testing.assert_allclose(np.asarray(jnp.sum(analytic.kl_per_layer, -1)), np.asarray(analytic.kl), rtol=1e-5)
  mean_log_w = np.asarray(jnp.mean(mc.log_w, 0))
  se = np.asarray(jnp.std(mc.log_w, 0)) / np.sqrt(k)
  assert np.all(np.abs(np.asarray(analytic.elbo) - mean_log_w) < 4 * se + 1e-3)


@pytest.mark.slow
def test_ladder_trains_with_warmup_and_free_bits_per_layer_and_reports_each_layer(tmp_path, mnist):
  config = Config(**TINY_LADDER, warmup_epochs=1, free_bits=0.05)
  summary = train_and_evaluate(config, str(tmp_path / "ladder"), data=mnist, progress=False, verbose=False)
  with open(tmp_path / "ladder" / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  for row in rows:
    np.testing.assert_allclose(row["train_kl_layer1"] + row["train_kl_layer2"], row["train_kl"], rtol=1e-4)
    np.testing.assert_allclose(row["test_kl_layer1"] + row["test_kl_layer2"], row["test_kl"], rtol=1e-4)
  assert rows[0]["train_kl_weight"] < 1.0 == rows[1]["train_kl_weight"]
  assert len(summary["active_units_per_layer"]) == 2  # the estimator jaxvae eval uses, per layer


@pytest.mark.slow
def test_swept_iaf_and_ladder_models_equal_the_same_models_trained_alone(tmp_path, mnist):
  for base in (TINY_IAF, TINY_LADDER):
    configs = [Config(**dict(base, epochs=1), seed=0), Config(**dict(base, epochs=1), seed=1, lr=3e-4)]
    assert len(group_configs(configs)) == 1
    result = train_group(configs, mnist)
    for i, config in [(1, configs[1])]:  # the second model: its own seed and learning rate in the stack
      workdir = str(tmp_path / f"{config.model}{config.posterior}{i}")
      train_and_evaluate(config, workdir, data=mnist, progress=False, verbose=False)
      solo = restore_checkpoint(workdir, mnist_trainer(config, train_size=256).init(jax.random.key(0))).state
      for a, b in zip(jax.tree.leaves(solo.params), jax.tree.leaves(result.states[i].params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        last = [json.loads(line) for line in f][-1]
      np.testing.assert_allclose(result.rows[i][-1]["test_elbo"], last["test_elbo"], rtol=1e-4)


@pytest.mark.slow
def test_vae_and_iwae_of_one_k_train_in_one_program_as_they_train_alone(tmp_path, mnist):
  small = dict(TINY, hidden=(32,), latent_dim=4, k=3, kl="mc", epochs=1)
  configs = [Config(**small, objective="vae"), Config(**small, objective="iwae", seed=1)]
  assert len(group_configs(configs)) == 1  # the objective is a traced switch
  result = train_group(configs, mnist)
  assert [c.objective for c in result.configs] == ["vae", "iwae"]
  for i, config in enumerate(configs):
    workdir = str(tmp_path / config.objective)
    train_and_evaluate(config, workdir, data=mnist, progress=False, verbose=False)
    solo = restore_checkpoint(workdir, mnist_trainer(config, train_size=256).init(jax.random.key(0))).state
    for a, b in zip(jax.tree.leaves(solo.params), jax.tree.leaves(result.states[i].params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
    with open(os.path.join(workdir, "config.json")) as f:
      assert json.load(f)["objective"] == config.objective


@pytest.mark.slow
def test_ema_follows_its_recurrence_and_is_what_a_run_evaluates_and_eval_reads(tmp_path, mnist):
  config = Config(**dict(TINY, epochs=1), hidden=(32,), latent_dim=4, ema_decay=0.9)
  trainer = mnist_trainer(config, train_size=256)
  state = trainer.init(jax.random.key(0))
  expected = state.params
  batch = jnp.asarray(mnist.train[:32])
  for i in range(3):
    state, _ = trainer.train_step(state, batch, jax.random.key(i))
    expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, expected, state.params)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(state.ema.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

  workdir = str(tmp_path / "ema")
  summary = train_and_evaluate(config, workdir, data=mnist, progress=False, verbose=False)
  restored = restore_checkpoint(workdir, trainer.init(jax.random.key(0))).state
  assert restored.ema is not None and float(restored.ema.decay) == pytest.approx(0.9)
  test_x = jnp.asarray(mnist.test[:64] > 127, jnp.float32)  # not the run's binarization: compare the two params
  on_ema = trainer.evaluate(eval_params(restored), test_x, jax.random.key(0))["elbo"]
  on_raw = trainer.evaluate(restored.params, test_x, jax.random.key(0))["elbo"]
  assert float(on_ema) != float(on_raw)
  evaluated = evaluate_run(workdir, k=1, progress=False, write=False)
  assert evaluated["test_elbo"] == pytest.approx(summary["test_elbo"], abs=3.0)  # ELBO on the EMA params, new draws


@pytest.mark.slow
def test_local_q_through_a_flow_posterior_finds_the_q_star_of_the_closed_form_path():
  """A 0-step IAF is the diagonal Gaussian family without the closed-form KL: the generic q* (Adam
  on the encoder output, Monte-Carlo KL) must reach the ELBO of the closed-form path's q*."""
  from jaxvae.core import linear_gaussian as lg

  base = lg.make_linear_gaussian_vae(data_dim=3, latent_dim=2)
  params = _perturbed(base.init(jax.random.key(0)), jax.random.key(1), 0.5)
  vae = VAE.from_modules(
    lg.LinearEncoder(2),
    lg.LinearDecoder(3),
    data_shape=(3,),
    latent_dim=2,
    likelihood=base.likelihood,
    posterior=flows.iaf(2, steps=0)._replace(closed_form=False),
  )
  assert vae.kl_q_p_z is None  # the generic path
  x = jnp.array([0.5, -1.0, 2.0])
  options = dict(steps=400, lr=5e-2, samples=32, eval_samples=20_000)
  generic = optimize_local_q(vae, params, x, jax.random.key(2), **options)
  closed = optimize_local_q(base, params, x, jax.random.key(2), **options)
  assert float(generic["elbo_q_star"]) > float(generic["elbo_q_phi"]) + 0.1
  assert abs(float(generic["elbo_q_star"]) - float(closed["elbo_q_star"])) < 0.03
  assert float(generic["elbo_q_star"]) < float(lg.log_p_x(params, x[None])[0])  # a bound still


def test_research_model_configs_are_checked_with_one_line_errors():
  for bad, says in (
    (dict(model="ladder", prior="mog"), "own top-down prior"),
    (dict(model="ladder", ladder_layers=(8, 4), ladder_widths=(32,)), "one width per stochastic layer"),
    (dict(model="ladder", latent_dim=10), "leave --latent-dim unset"),
    (dict(ladder_layers=(8, 4)), "use them with --model ladder"),
    (dict(model="burda2", posterior="iaf"), "--posterior gaussian"),
    (dict(posterior="iaf", free_bits=0.5), "free_bits"),
    (dict(ema_decay=1.0), "ema_decay"),
  ):
    with pytest.raises(JaxvaeError, match=says):
      Config(**bad).validate()
  assert Config(model="ladder").latent_dim == 64
  assert isinstance(
    make_vae(
      Config(model="ladder", net="conv", conv_channels=(8,), ladder_layers=(4, 2), ladder_widths=(16, 8)), MNIST_SHAPE
    ),
    VAE,
  )


@pytest.mark.slow
def test_burda2_log_weights_equal_an_independent_numpy_computation_of_the_two_layer_model():
  """Burda et al.'s two-layer model, log w = log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1),
  recomputed in float64 numpy from the parameters alone (Dense layers, tanh, (mu, log sigma) heads)."""
  config = Config(model="burda2", hidden=(16,), latent_dim=4, hidden2=(8,), latent_dim2=3)
  vae = make_vae(config, (6,), np.float32)
  params = _perturbed(vae.init(jax.random.key(0)), jax.random.key(1), 0.2)
  x = (np.random.default_rng(0).random((5, 6)) > 0.5).astype(np.float32)
  t = objectives.importance_terms(vae, params, jnp.asarray(x), jax.random.key(2), 3)
  (z1, z2), _ = vae.sample_q(params, jnp.asarray(x), jax.random.key(2), (3,))
  z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)

  def mlp(tree, h, hidden_layers):
    for i in range(hidden_layers):
      h = np.tanh(h @ tree[f"Dense_{i}"]["kernel"] + tree[f"Dense_{i}"]["bias"])
    return h @ tree[f"Dense_{hidden_layers}"]["kernel"] + tree[f"Dense_{hidden_layers}"]["bias"]

  def log_normal(v, out):
    mu, log_s = np.split(out, 2, axis=-1)
    return np.sum(-0.5 * ((v - mu) / np.exp(log_s)) ** 2 - log_s - 0.5 * np.log(2 * np.pi), axis=-1)

  logits = mlp(p["decoder"], z1, 1)
  log_px_z = np.sum(x * logits - np.logaddexp(0, logits), axis=-1)
  log_p = log_normal(z1, mlp(p["prior"], z2, 1)) + np.sum(-0.5 * z2**2 - 0.5 * np.log(2 * np.pi), axis=-1)
  log_q = log_normal(z1, mlp(p["encoder"], x, 1)) + log_normal(z2, mlp(p["posterior"], z1, 1))
  np.testing.assert_allclose(np.asarray(t.log_w), log_px_z + log_p - log_q, rtol=1e-5)
