"""The open core: a user's model, likelihood, prior, objective and data through the whole machinery."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvae
from jaxvae.core import linear_gaussian as LG
from jaxvae.core.data import Dataset
from jaxvae.core.estimators import importance_sampled_log_px
from jaxvae.core.nets import MLPDecoder, MLPEncoder
from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import evaluate_run, load_run
from jaxvae.runs.folder import read_metrics
from jaxvae.runs.records import TIMING_KEYS
from jaxvae.runs.run import train_and_evaluate
from jaxvae.tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = Config(hidden=(32,), latent_dim=4, batch_size=32, n_train=256, n_test=64, epochs=2)


def _rows(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(workdir)]


def _close(rows_a, rows_b, rtol):
  assert [r["epoch"] for r in rows_a] == [r["epoch"] for r in rows_b]
  for a, b in zip(rows_a, rows_b):
    for key in ("train_elbo", "train_kl", "test_elbo", "test_kl", "test_log_p_x_given_z"):
      np.testing.assert_allclose(a[key], b[key], rtol=rtol, err_msg=key)


# ---------------------------------------------------------------------------
# A model from a file, by reference: train, resume, eval, sweep (SIGTERM: tests/test_networks.py, through
# examples/own_model/stop_and_resume.py with a model that has batch normalization and dropout).
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_model_from_a_file_trains_resumes_evaluates_and_sweeps_by_reference(tmp_path, capsys):
  """The smoke version of the next test, in this process: the same reference through every command."""
  reference = os.path.join(ROOT, "examples", "own_model", "my_models.py") + ":make_vae"
  tiny = [
    "--model",
    reference,
    "--n-train",
    "512",
    "--n-test",
    "64",
    "--batch-size",
    "64",
    "--no-progress",
    "--no-tensorboard",
  ]
  a, b = str(tmp_path / "A"), str(tmp_path / "B")
  assert main(["train", *tiny, "--epochs", "3", "--workdir", a]) == 0
  assert main(["train", *tiny, "--epochs", "2", "--workdir", b]) == 0
  assert main(["train", "--resume", b, "--epochs", "3", "--no-progress", "--no-tensorboard"]) == 0
  same = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]  # noqa: E731
  assert same(read_metrics(b)) == same(read_metrics(a))  # resumed by reference, bit for bit
  assert main(["eval", "--workdir", b, "--k", "5", "--no-progress"]) == 0
  assert main(["sweep", *tiny, "--epochs", "1", "--grid", "seed=0,1", "--workdir", str(tmp_path / "sweep")]) == 0
  # The same reference serves the teaching tools.
  gaps = ["gaps", "--workdir", a, "--n-test", "8", "--k", "20", "--steps", "5", "--batch-size", "8", "--no-progress"]
  assert main(gaps) == 0
  assert main(["plot", "--workdir", a, "--out", str(tmp_path / "pictures"), "--n-posteriors", "2"]) == 0
  assert os.path.exists(tmp_path / "pictures" / "latent_scatter.png")
  with open(tmp_path / "sweep" / "sweep.json") as f:
    assert len(json.load(f)["rows"]) == 2
  capsys.readouterr()


@pytest.mark.parametrize(
  "reference, words",
  [
    ("nowhere/missing.py:make_vae", ["no file", "missing.py"]),
    ("{dir}/parts.py:nothing_here", ["no function", "nothing_here"]),
    ("{dir}/parts.py:not_a_vae", ["returned int", "jaxvae.VAE"]),
    ("{dir}/broken.py:make_vae", ["importing", "ZeroDivisionError"]),
    ("{dir}/parts.py:needs_more", ["takes", "learning_rate"]),
  ],
)
def test_a_bad_model_reference_is_one_line_and_writes_nothing(tmp_path, capsys, reference, words):
  (tmp_path / "parts.py").write_text(
    "def not_a_vae(config):\n  return 3\n\ndef needs_more(config, learning_rate):\n  pass\n"
  )
  (tmp_path / "broken.py").write_text("x = 1 / 0\n")
  workdir = tmp_path / "run"
  assert main(["train", "--model", reference.format(dir=tmp_path), "--workdir", str(workdir), "--no-progress"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and all(w in err for w in words), err
  assert not workdir.exists()


# ---------------------------------------------------------------------------
# A likelihood, a prior and an objective of one's own, as values.
# ---------------------------------------------------------------------------


def _my_bernoulli(data_shape):
  """A Bernoulli likelihood written from scratch: log p(x|z) = sum x log s(l) + (1 - x) log s(-l)."""

  def log_prob(x, logits):
    per_pixel = x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits)
    return jnp.sum(per_pixel.reshape(per_pixel.shape[: per_pixel.ndim - 3] + (-1,)), axis=-1)

  return jaxvae.Likelihood(
    name="my-bernoulli",
    output_shape=data_shape,
    init=lambda: {},
    outputs=lambda params, raw: raw,
    log_prob=log_prob,
    mean=jax.nn.sigmoid,
    preprocess=jaxvae.core.likelihoods.bernoulli(data_shape).preprocess,
    check=jaxvae.core.likelihoods.bernoulli(data_shape).check,
  )


def _my_standard_normal(latent_dim, closed_form):
  def kl(params, q):  # KL(N(mu, s^2) || N(0, 1)) per dimension
    return 0.5 * (q.mean**2 + jnp.exp(2 * q.log_scale) - 1.0) - q.log_scale

  return jaxvae.Prior(
    name="my-normal",
    init=lambda key, data=None: {},
    log_prob=lambda params, z: jnp.sum(-0.5 * z * z - 0.5 * np.log(2 * np.pi), axis=-1),
    sample=lambda params, key, n: jax.random.normal(key, (n, latent_dim)),
    kl_per_dim=kl if closed_form else None,
  )


@pytest.mark.parametrize("closed_form", [True, False])
@pytest.mark.slow
def test_a_likelihood_and_a_prior_of_ones_own_train_as_the_built_ins_do(tmp_path, mnist, closed_form):
  config = TINY.replace(kl="analytic" if closed_form else "mc")
  shape = (28, 28, 1)
  mine = jaxvae.VAE.from_modules(
    MLPEncoder(hidden=(32,), latent_dim=4),
    MLPDecoder(hidden=(32,), out_shape=shape),
    data_shape=shape,
    latent_dim=4,
    likelihood=_my_bernoulli(shape),
    prior=_my_standard_normal(4, closed_form),
  )
  train_and_evaluate(config, str(tmp_path / "mine"), model=mine, data=mnist, progress=False, verbose=False)
  train_and_evaluate(config, str(tmp_path / "builtin"), data=mnist, progress=False, verbose=False)
  _close(_rows(tmp_path / "mine"), _rows(tmp_path / "builtin"), rtol=1e-4)
  with open(tmp_path / "mine" / "config.json") as f:
    assert json.load(f)["model"] == "custom"  # a value: the run folder says so, and eval needs it again
  assert main(["eval", "--workdir", str(tmp_path / "mine"), "--k", "5"]) == 2
  assert evaluate_run(str(tmp_path / "mine"), k=5, model=mine, data=mnist, progress=False, write=False)["k"] == 5


OBJECTIVE_FILE = textwrap.dedent(
  """
    import jax.numpy as jnp
    import jaxvae

    def make_objective(config):
      def loss(vae, params, x, key, hparams, step):
        terms = jaxvae.elbo(vae, params, x, key, k=config.k)
        value = -jnp.mean(terms.log_p_x_given_z) + hparams["beta"] * jnp.mean(terms.kl)
        means = {"elbo": terms.elbo, "kl": terms.kl, "log_p_x_given_z": terms.log_p_x_given_z}
        return value, {name: jnp.mean(v) for name, v in means.items()}
      return jaxvae.Objective("my-beta-elbo", loss, {"beta": jnp.float32(config.beta)})
    """
)


@pytest.mark.slow
def test_an_objective_of_ones_own_trains_resumes_and_sweeps_by_reference(tmp_path, capsys):
  (tmp_path / "objectives.py").write_text(OBJECTIVE_FILE)
  ref = f"{tmp_path}/objectives.py:make_objective"
  flags = [
    "--hidden",
    "32",
    "--latent-dim",
    "4",
    "--batch-size",
    "32",
    "--n-train",
    "256",
    "--n-test",
    "64",
    "--no-progress",
  ]
  assert main(["train", *flags, "--epochs", "3", "--objective", ref, "--workdir", str(tmp_path / "mine")]) == 0
  assert main(["train", *flags, "--epochs", "3", "--workdir", str(tmp_path / "builtin")]) == 0
  _close(_rows(tmp_path / "mine"), _rows(tmp_path / "builtin"), rtol=1e-4)
  # Resumed from its checkpoint (the objective's own hyperparameters are in the state), it continues exactly.
  assert main(["train", *flags, "--epochs", "2", "--objective", ref, "--workdir", str(tmp_path / "short")]) == 0
  assert main(["train", "--resume", str(tmp_path / "short"), "--epochs", "3", "--no-progress"]) == 0
  assert _rows(tmp_path / "short") == _rows(tmp_path / "mine")
  # A sweep vmaps over the objective's own beta: the factory is called per config.
  assert (
    main(
      [
        "sweep",
        *flags,
        "--epochs",
        "1",
        "--objective",
        ref,
        "--grid",
        "beta=0.5,4",
        "--workdir",
        str(tmp_path / "sweep"),
      ]
    )
    == 0
  )
  with open(tmp_path / "sweep" / "sweep.json") as f:
    kl = {r["beta"]: r["kl"] for r in json.load(f)["rows"]}
  assert kl[4.0] < kl[0.5]


# ---------------------------------------------------------------------------
# Data as a value: npz files of images and of vectors.
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_npz_images_train_and_evaluate_from_the_command_line(tmp_path, mnist, capsys):
  path = tmp_path / "digits.npz"
  small = mnist.train[:400, ::2, ::2]  # 14 x 14 images, uint8
  np.savez(
    path,
    train=small[:300],
    test=small[300:],
    train_labels=mnist.train_labels[:300],
    test_labels=mnist.train_labels[300:400],
  )
  workdir = str(tmp_path / "run")
  assert (
    main(
      [
        "train",
        "--dataset",
        f"npz:{path}",
        "--hidden",
        "32",
        "--latent-dim",
        "2",
        "--batch-size",
        "50",
        "--epochs",
        "2",
        "--workdir",
        workdir,
        "--no-progress",
      ]
    )
    == 0
  )
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["n_train"] == 300 and summary["n_test"] == 100 and np.isfinite(summary["test_elbo"])
  assert main(["eval", "--workdir", workdir, "--k", "10", "--no-progress"]) == 0  # the folder reloads the file
  assert main(["plot", "--workdir", workdir]) == 0 and os.path.exists(os.path.join(workdir, "manifold.png"))


@pytest.mark.slow
def test_npz_vectors_train_with_a_real_valued_gaussian_likelihood(tmp_path, capsys):
  rng = np.random.default_rng(0)
  z = rng.normal(size=(600, 2))
  x = np.concatenate([z, z[:, :1] * z[:, 1:]], axis=1) + 0.05 * rng.normal(size=(600, 3))  # float64 vectors
  path = tmp_path / "vectors.npz"
  np.savez(path, train=x[:500], test=x[500:])
  workdir = str(tmp_path / "run")
  assert (
    main(
      [
        "train",
        "--dataset",
        f"npz:{path}",
        "--likelihood",
        "gaussian",
        "--gaussian-scale",
        "per-pixel",
        "--gaussian-sigma",
        "1",
        "--hidden",
        "32",
        "--latent-dim",
        "2",
        "--batch-size",
        "50",
        "--epochs",
        "30",
        "--lr",
        "3e-3",
        "--workdir",
        workdir,
        "--no-progress",
      ]
    )
    == 0
  )
  run = load_run(workdir)
  assert run.vae.data_shape == (3,) and not run.vae.likelihood.eight_bit  # real values: no dequantization
  np.testing.assert_allclose(run.setup.test_x, x[500:].astype(np.float32))  # x is the data, as given
  assert main(["eval", "--workdir", workdir, "--k", "100", "--no-progress"]) == 0
  with open(os.path.join(workdir, "eval.json")) as f:
    assert json.load(f)["test_log_px"] > -10  # a density of 3 numbers, not of 784 pixels
  # Bad vectors: the same one-line errors as bad images.
  np.savez(tmp_path / "nan.npz", train=np.full((10, 3), np.nan), test=x[:5])
  assert (
    main(
      [
        "train",
        "--dataset",
        f"npz:{tmp_path}/nan.npz",
        "--likelihood",
        "gaussian",
        "--batch-size",
        "5",
        "--workdir",
        str(tmp_path / "never"),
      ]
    )
    == 2
  )
  np.savez(tmp_path / "half.npz", train=x)
  assert main(["train", "--dataset", f"npz:{tmp_path}/half.npz", "--workdir", str(tmp_path / "never")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert "NaN" in err[-2] and "no array test" in err[-1] and not (tmp_path / "never").exists()


# ---------------------------------------------------------------------------
# float64 end to end.
# ---------------------------------------------------------------------------


def _orthogonal_decoder(dtype):
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 3)))
  return {
    "W": jnp.asarray(q * np.array([2.0, 1.0, 0.5]), dtype),
    "b": jnp.linspace(-1.0, 1.0, 6, dtype=dtype),
    "log_sigma": jnp.asarray(np.log(0.7), dtype),
  }


@pytest.mark.slow
def test_float64_importance_sampling_is_exact_where_the_proposal_is_the_posterior():
  with jax.enable_x64(True):
    vae = LG.make_linear_gaussian_vae(6, 3, param_dtype=jnp.float64)
    params = vae.init(jax.random.key(0))
    params["decoder"] = _orthogonal_decoder(jnp.float64)
    params["encoder"] = LG.optimal_encoder(params)  # q_phi(z|x) = p_theta(z|x): every weight equals p(x)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 6)))
    out = importance_sampled_log_px(vae, params, x, jax.random.key(2), 3000, 700)
    assert out["log_px"].dtype == jnp.float64
    np.testing.assert_allclose(out["log_px"], LG.log_p_x(params, x), rtol=0, atol=1e-10)
    # A wider, shifted proposal: within the estimate's own Monte-Carlo error.
    params["encoder"] = {**params["encoder"], "c": params["encoder"]["c"] + 0.3, "s": params["encoder"]["s"] + 0.2}
    out = importance_sampled_log_px(vae, params, x, jax.random.key(3), 20_000, 5000)
    assert np.all(np.abs(out["log_px"] - LG.log_p_x(params, x)) < 4 * np.sqrt(out["mc_var"]) + 1e-9)


@pytest.mark.slow
def test_float64_trains_resumes_and_evaluates_a_float64_model(tmp_path):
  with jax.enable_x64(True):
    vae = LG.make_linear_gaussian_vae(6, 3, param_dtype=jnp.float64)
    truth = {**vae.init(jax.random.key(0)), "decoder": _orthogonal_decoder(jnp.float64)}
    rng = np.random.default_rng(2)
    z = rng.normal(size=(1200, 3))
    x = z @ np.asarray(truth["decoder"]["W"]).T + np.asarray(truth["decoder"]["b"]) + 0.7 * rng.normal(size=(1200, 6))
    data = Dataset.from_arrays(x[:1000], x[1000:], name="linear-gaussian")
    config = Config(batch_size=50, epochs=4, lr=1e-2)
    train_and_evaluate(config, str(tmp_path / "a"), model=vae, data=data, progress=False, verbose=False)
    train_and_evaluate(
      config.replace(epochs=2), str(tmp_path / "b"), model=vae, data=data, progress=False, verbose=False
    )
    train_and_evaluate(config, str(tmp_path / "b"), model=vae, data=data, resume=True, progress=False, verbose=False)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    run = load_run(str(tmp_path / "a"), model=vae, data=data)
    assert all(a.dtype == np.float64 for a in jax.tree.leaves(run.params))
    test = jnp.asarray(run.setup.test_x)
    assert test.dtype == jnp.float64
    evaluation = evaluate_run(str(tmp_path / "a"), k=2000, model=vae, data=data, progress=False, write=False)
    exact = float(np.mean(LG.log_p_x(run.params, test)))
    assert abs(evaluation["test_log_px"] - exact) < 4 * evaluation["test_log_px_mc_se"] + 1e-6
    assert evaluation["test_elbo"] < exact


# ---------------------------------------------------------------------------
# IWAE-DReG.
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_dreg_estimates_the_iwae_gradient_with_less_encoder_noise():
  """On a linear-Gaussian VAE: IWAE's gradient in expectation, IWAE's decoder gradient draw by draw, and
  an encoder gradient that is exactly zero where q_phi is the true posterior (IWAE's is not)."""
  vae = LG.make_linear_gaussian_vae(6, 3)
  params = vae.init(jax.random.key(0))
  params["decoder"] = _orthogonal_decoder(jnp.float32)
  posterior = LG.optimal_encoder(params)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6)), jnp.float32)
  n = 4000

  def grads(objective, shift):
    p = {**params, "encoder": {**posterior, "c": posterior["c"] + shift, "s": posterior["s"] - shift / 2}}
    loss = lambda p, key: objective.loss(vae, p, x, key, objective.hparams, jnp.int32(0))[0]  # noqa: E731
    g = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(p, jax.random.split(jax.random.key(5), n))
    return jax.tree.map(lambda a: np.asarray(a, np.float64), g)

  iwae, dreg = jaxvae.core.objectives.iwae, jaxvae.core.objectives.iwae_dreg
  a, b = grads(iwae(5), 0.4), grads(dreg(5), 0.4)  # a poor q: both estimators are noisy
  for u, v in zip(jax.tree.leaves(a["decoder"]), jax.tree.leaves(b["decoder"])):
    np.testing.assert_allclose(u, v, rtol=2e-4, atol=1e-5)  # the same z, the same decoder gradient
  for u, v in zip(jax.tree.leaves(a["encoder"]), jax.tree.leaves(b["encoder"])):
    se = np.sqrt(u.var(0) / n + v.var(0) / n)
    assert np.all(np.abs(u.mean(0) - v.mean(0)) < 5 * se + 1e-6)  # unbiased for the same gradient
  exact_iwae, exact_dreg = grads(iwae(50), 0.0), grads(dreg(50), 0.0)  # q = p(z|x): every weight is p(x)
  assert max(np.abs(g).max() for g in jax.tree.leaves(exact_dreg["encoder"])) < 1e-4
  assert min(g.var(0).sum() for g in jax.tree.leaves(exact_iwae["encoder"])) > 0.01
  near_iwae, near_dreg = grads(iwae(50), 0.1), grads(dreg(50), 0.1)  # a good q, k = 50
  for u, v in zip(jax.tree.leaves(near_iwae["encoder"]), jax.tree.leaves(near_dreg["encoder"])):
    assert v.var(0).sum() < 0.01 * u.var(0).sum()


# ---------------------------------------------------------------------------
# Every config field reachable from the command line and from --grid; the site's CLI reference.
# ---------------------------------------------------------------------------


EXAMPLES = {"str": "x", "int": "3", "float": "0.5", "ints": "8,4"}
STRINGS = {
  "dataset": "tfds:celeb_a",
  "tfds_data_dir": "/data/tfds",
  "model": "my_models.py:make_vae",
  "objective": "iwae",
}


def _example(name):
  spec = Config.spec(name)
  return STRINGS.get(name) or (tuple(spec.choices)[-1] if spec.choices else EXAMPLES[spec.kind])


def test_every_config_field_is_a_flag_and_a_grid_axis():
  from jaxvae.runs.config import SPECS, overrides_from_args, parse_value
  from jaxvae.runs.grid import parse_grid
  from jaxvae.tools.cli import build_parser, config_from_args

  parser = build_parser()
  for command in ("train", "sweep"):
    args = [command, "--workdir", "w"]
    for name in SPECS:
      args += [f"--{name.replace('_', '-')}", _example(name)]
    given = overrides_from_args(parser.parse_args(args))
    assert set(given) == set(SPECS)
    for name, value in given.items():
      assert value == parse_value(name, _example(name)), name
  for name in SPECS:
    grid = parse_grid([f"{name}={_example(name).replace(',', '/')},{_example(name).replace(',', '/')}"])
    assert grid[name][0] == parse_value(name, _example(name)), name
  # Fields that default to None or a tuple parse as their kind, with none for unset.
  assert parse_grid(["clip_grad_norm=1,10,none"]) == {"clip_grad_norm": [1.0, 10.0, None]}
  assert parse_grid(["conv_channels=16/32,8"]) == {"conv_channels": [(16, 32), (8,)]}
  config = config_from_args(
    parser.parse_args(["train", "--dataset", "tfds:celeb_a", "--image-size", "32", "--net", "conv", "--workdir", "w"])
  )
  assert config.image_size == 32


def test_the_sites_cli_reference_has_every_subcommand_and_every_config_flag():
  import argparse
  import sys

  from jaxvae.runs.config import SPECS
  from jaxvae.tools.cli import build_parser

  sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))
  from cli_reference import cli_reference

  page = cli_reference()
  sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
  for command in sub.choices:
    assert f"## `jaxvae {command}`" in page, command
  for name, spec in SPECS.items():
    assert f"| `--{name.replace('_', '-')} {spec.kind.upper()}` |" in page, name
  assert "`--grid NAME=V1,V2`" in page and "`--k K`" in page  # a subcommand's own flags


@pytest.mark.slow
def test_a_grid_over_a_field_that_defaults_to_none_trains_two_models(tmp_path, capsys):
  workdir = str(tmp_path / "sweep")
  assert (
    main(
      [
        "sweep",
        "--grid",
        "clip_grad_norm=1,10",
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--batch-size",
        "32",
        "--n-train",
        "128",
        "--n-test",
        "32",
        "--workdir",
        workdir,
        "--no-progress",
      ]
    )
    == 0
  )
  with open(os.path.join(workdir, "sweep.json")) as f:
    assert sorted(r["clip_grad_norm"] for r in json.load(f)["rows"]) == [1.0, 10.0]


@pytest.mark.slow
def test_importing_jaxvae_loads_no_plotting_checkpointing_or_progress_library():
  heavy = "('matplotlib', 'orbax', 'tqdm', 'tensorflow_datasets')"
  code = f"import sys, jaxvae; print(sorted(m for m in {heavy} if m in sys.modules))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert out.stdout.strip() == "[]", out.stderr[-1000:]


def test_the_built_in_models_are_built_through_the_public_path():
  """mlp, conv, burda1 and burda2 are VAE.from_modules values: the same functions a user's model has."""
  from jaxvae.runs.build import make_vae

  for config in (Config(), Config(net="conv"), Config(model="burda1"), Config(model="burda2")):
    vae = make_vae(config, (28, 28, 1))
    user = jaxvae.VAE.from_modules(
      MLPEncoder((8,), 2), MLPDecoder((8,), (28, 28, 1)), data_shape=(28, 28, 1), latent_dim=2
    )
    assert type(vae) is type(user) and vae._fields == user._fields
    assert {f.__qualname__.split(".")[0] for f in vae[:5]} == {"VAE"}  # closures made by from_modules
