"""p and q, seen: the identity, the local q*, the inference gaps and the pictures."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.core import linear_gaussian as LG
from jaxvae.core.estimators import optimize_local_q
from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import inference_gaps, load_run
from jaxvae.runs.run import train_and_evaluate
from jaxvae.tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_log_px_is_elbo_plus_kl_to_the_true_posterior_for_any_q():
  with jax.enable_x64(True):
    vae = LG.make_linear_gaussian_vae(7, 3)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), vae.init(jax.random.key(0)))
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(50, 7)))
    for _ in range(5):  # random encoders: the identity holds for every q, not only good ones
      params["encoder"] = {
        "A": jnp.asarray(rng.normal(size=(3, 7))),
        "c": jnp.asarray(rng.normal(size=3)),
        "s": jnp.asarray(rng.normal(size=3)),
      }
      log_px = LG.log_p_x(params, x)
      gap = LG.kl_to_true_posterior(params, vae.q_phi(params, x), x)
      np.testing.assert_allclose(LG.exact_elbo(params, x) + gap, log_px, rtol=0, atol=1e-9)
      assert np.all(np.asarray(gap) >= 0)


@pytest.mark.slow
def test_identity_script_reports_the_identity_holding():
  proc = subprocess.run(
    [sys.executable, os.path.join(ROOT, "experiments", "teaching", "identity.py"), "--steps", "50", "--skip-mnist"],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("the identity holds to"))
  assert float(line.split()[4]) <= 1e-4


@pytest.fixture(scope="module")
def z2_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("teach") / "z2")
  config = Config(latent_dim=2, hidden=(128,), n_train=4096, n_test=300, epochs=3)
  train_and_evaluate(config, workdir, progress=False, verbose=False)
  return workdir


@pytest.mark.slow
def test_local_optimization_never_lowers_the_elbo(z2_run):
  run = load_run(z2_run)
  x = jnp.asarray(run.setup.test_x[:24])
  out = jax.jit(jax.vmap(lambda x, k: optimize_local_q(run.vae, run.params, x, k, steps=100)))(
    x, jax.random.split(jax.random.key(0), 24)
  )
  phi, star = np.asarray(out["elbo_q_phi"]), np.asarray(out["elbo_q_star"])
  assert np.all(star >= phi)
  assert np.mean(star - phi) > 0.05  # a 3-epoch encoder leaves room to improve


@pytest.mark.slow
def test_gaps_are_non_negative_within_their_error_and_written(z2_run, capsys):
  assert (
    main(
      [
        "gaps",
        "--workdir",
        z2_run,
        "--n-test",
        "60",
        "--k",
        "500",
        "--steps",
        "100",
        "--batch-size",
        "30",
        "--no-progress",
      ]
    )
    == 0
  )
  assert "amortization gap" in capsys.readouterr().out
  with open(os.path.join(z2_run, "gaps.json")) as f:
    r = json.load(f)
  assert r["amortization_gap"] >= 0
  assert r["approximation_gap"] >= -3 * r["approximation_gap_se"]
  np.testing.assert_allclose(r["amortization_gap"] + r["approximation_gap"], r["inference_gap"], rtol=1e-6, atol=1e-6)
  assert os.path.getsize(os.path.join(z2_run, "gaps.png")) > 10_000
  again = inference_gaps(z2_run, n_test=60, k=500, steps=100, batch_size=30, progress=False)
  assert again["log_px"] == r["log_px"] and again["amortization_gap"] == r["amortization_gap"]


@pytest.mark.slow
def test_plot_writes_the_four_pictures_of_a_2d_model(z2_run, tmp_path, capsys):
  out = str(tmp_path / "pictures")
  assert main(["plot", "--workdir", z2_run, "--out", out, "--n-posteriors", "3"]) == 0
  for name in ("manifold.png", "latent_scatter.png", "posterior_vs_q.png", "interpolations.png"):
    assert os.path.getsize(os.path.join(out, name)) > 10_000, name


@pytest.mark.slow
def test_plot_of_a_higher_dimensional_model_draws_what_applies(tmp_path):
  workdir = str(tmp_path / "z4")
  train_and_evaluate(
    Config(latent_dim=4, hidden=(64,), n_train=512, n_test=200, epochs=1), workdir, progress=False, verbose=False
  )
  assert main(["plot", "--workdir", workdir]) == 0
  assert os.path.exists(os.path.join(workdir, "latent_scatter.png"))
  assert not os.path.exists(os.path.join(workdir, "manifold.png"))
