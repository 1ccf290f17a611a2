"""Any JAX model goes in: Linen, NNX, Equinox, plain functions and Haiku, stateful layers, and the checks
that refuse a model's mistakes before anything is written."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import session_hparams
from user_models import five_ways, stateful

import jaxvae
from jaxvae.core import objectives
from jaxvae.core.networks import as_network
from jaxvae.errors import JaxvaeError, UserCodeError
from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import load_run
from jaxvae.runs.folder import read_metrics
from jaxvae.runs.records import TIMING_KEYS
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.setup import run_keys
from jaxvae.runs.sweep import run_sweep
from jaxvae.tools.cli import main
from jaxvae.training.train import make_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIVE_WAYS = os.path.join(ROOT, "tests", "user_models", "five_ways.py")
STATEFUL = os.path.join(ROOT, "tests", "user_models", "stateful.py")
SHAPE = (28, 28, 1)


def untimed(rows):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.fixture(scope="module")
def digits(mnist):
  """512 training and 128 test images of the embedded MNIST (uint8)."""
  return jaxvae.Dataset.from_arrays(mnist.train[:512], mnist.test[:128])


def _trained(vae, digits, epochs=2):
  trainer = make_trainer(vae, objectives.beta_elbo(), optax.adam(1e-3), batch_size=64)
  state = trainer.init(run_keys(0).init)
  data = jnp.asarray(digits.train)
  test = jnp.asarray(digits.test, jnp.float32) / 255.0
  rows = []
  for epoch in range(epochs):
    state, metrics = trainer.train_epoch(state, data, jax.random.fold_in(run_keys(0).train, epoch))
    rows.append(
      {
        **{k: float(v) for k, v in metrics.items()},
        **{f"test_{k}": float(v) for k, v in trainer.evaluate(state.params, test, run_keys(0).eval).items()},
      }
    )
  return rows


# ---------------------------------------------------------------------------
# One protocol: five ways of writing the same model train to the same numbers.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["nnx", "equinox", "functions", "haiku"])
def test_the_same_model_written_another_way_trains_to_linens_numbers(way, digits):
  """Started from the same parameters, every way gives Linen's metrics (float32: rtol 1e-5; here equal)."""
  pytest.importorskip({"equinox": "equinox", "haiku": "haiku"}.get(way, "flax"))
  config = Config(seed=0)
  linen = _trained(five_ways.linen(config, SHAPE), digits)
  other = _trained(getattr(five_ways, way)(config, SHAPE), digits)
  for a, b in zip(linen, other, strict=True):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=1e-5)


def test_as_network_names_what_it_accepts():
  with pytest.raises(JaxvaeError, match="the encoder is a int, which jaxvae cannot call: pass a Flax Linen or NNX"):
    as_network(3, "encoder")


def test_an_nnx_module_is_split_into_a_pure_pytree_and_left_as_it_was(digits):
  """NNX parameters become a flat dict of arrays keyed by path; the user's module object is untouched."""
  model = five_ways.nnx(Config(seed=0), SHAPE)
  params = model.init(jax.random.key(0))
  assert sorted(params["encoder"]) == [
    "hidden/bias",
    "hidden/kernel",
    "log_sigma/bias",
    "log_sigma/kernel",
    "mean/bias",
    "mean/kernel",
  ]
  assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(params))
  stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)  # a sweep's models axis
  q = jax.vmap(model.q_phi, in_axes=(0, None))(stacked, jnp.asarray(digits.test[:8], jnp.float32) / 255.0)
  assert q.mean.shape == (2, 8, five_ways.LATENT)


# ---------------------------------------------------------------------------
# Stateful layers: batch normalization and dropout.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_batch_statistics_train_and_evaluation_reads_them_with_dropout_off(kind, digits):
  vae = getattr(stateful, kind)(Config(seed=0), SHAPE)
  assert vae.training is not None
  trainer = make_trainer(vae, objectives.beta_elbo(), optax.adam(1e-3), batch_size=64)
  state = trainer.init(jax.random.key(0))
  before = jax.tree.map(np.asarray, state.params["state"])
  state, _ = trainer.train_epoch(state, jnp.asarray(digits.train), jax.random.key(1))
  after = jax.tree.map(np.asarray, state.params["state"])
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
  # The optimizer trains only the parameters: the statistics are not in its state.
  assert len(jax.tree.leaves(state.opt_state)) == len(
    jax.tree.leaves(optax.adam(1e-3).init(jaxvae.core.model.trainable(state.params)))
  )

  x = jnp.asarray(digits.test[:32], jnp.float32) / 255.0
  q1, q2 = vae.q_phi(state.params, x), vae.q_phi(state.params, x)
  np.testing.assert_array_equal(q1.mean, q2.mean)  # evaluation: dropout off, deterministic
  metrics = trainer.evaluate(state.params, x, jax.random.key(2))
  assert np.isfinite(float(metrics["elbo"]))
  np.testing.assert_array_equal(jax.tree.leaves(state.params["state"])[0], jax.tree.leaves(after)[0])

  # Evaluation reads the running statistics: the same numbers as the module applied by hand in eval mode.
  if kind == "linen":
    variables = {"params": state.params["encoder"], **state.params["state"]["encoder"]}
    by_hand = stateful.LinenEncoder().apply(variables, x, train=False)
    np.testing.assert_allclose(q1.mean, by_hand.mean, rtol=1e-6)
  # Training mode: dropout on (two keys, two answers), batch statistics of the batch.
  model_a, new_state = vae.training(jax.random.key(3))
  model_b, _ = vae.training(jax.random.key(4))
  qa, qb = model_a.q_phi(state.params, x), model_b.q_phi(state.params, x)
  assert not np.allclose(qa.mean, qb.mean)
  assert set(new_state()) == {"encoder"}


def test_a_donating_trainer_consumes_its_state_and_the_default_one_does_not(digits):
  vae = five_ways.linen(Config(seed=0), SHAPE)
  kept = make_trainer(vae, objectives.beta_elbo(), optax.adam(1e-3), batch_size=64)
  state = kept.init(jax.random.key(0))
  data = jnp.asarray(digits.train)
  a, _ = kept.train_epoch(state, data, jax.random.key(1))
  b, _ = kept.train_epoch(state, data, jax.random.key(1))  # the functional habit: the same state twice
  np.testing.assert_array_equal(jax.tree.leaves(a.params)[0], jax.tree.leaves(b.params)[0])
  donating = make_trainer(vae, objectives.beta_elbo(), optax.adam(1e-3), batch_size=64, donate=True)
  state = donating.init(jax.random.key(0))
  donating.train_epoch(state, data, jax.random.key(1))
  assert jax.tree.leaves(state.params)[0].is_deleted()


# ---------------------------------------------------------------------------
# Checks before the first write: each mistake one line, exit status 2, no folder.
# ---------------------------------------------------------------------------

MISTAKES_PY = """
import flax.linen as nn
import jaxvae


class Encoder(nn.Module):
  d: int = 2
  pair: bool = False

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
    mean, log_var = nn.Dense(self.d)(h), nn.Dense(self.d)(h)
    return (mean, log_var) if self.pair else jaxvae.Gaussian(mean, log_var / 2)


class Decoder(nn.Module):
  flat: bool = False

  @nn.compact
  def __call__(self, z):
    out = nn.Dense(784)(nn.relu(nn.Dense(32)(z)))
    return out if self.flat else out.reshape(z.shape[0], 28, 28, 1)


class Broken(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(32)(x.reshape(x.shape[0], -1))
    return jaxvae.Gaussian(h[:, :2] @ h[:3, :], h[:, :2])


class AlwaysDropout(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dropout(0.1, deterministic=False)(nn.Dense(32)(x.reshape(x.shape[0], -1)))
    return jaxvae.Gaussian(nn.Dense(2)(h), nn.Dense(2)(h))


def vae(encoder, decoder, data_shape, latent_dim=2):
  return jaxvae.VAE.from_modules(encoder, decoder, data_shape=data_shape, latent_dim=latent_dim)


def pair(data_shape):
  return vae(Encoder(pair=True), Decoder(), data_shape)


def latent_mismatch(data_shape):
  return vae(Encoder(d=3), Decoder(), data_shape)


def flat_decoder(data_shape):
  return vae(Encoder(), Decoder(flat=True), data_shape)


def broken(data_shape):
  return vae(Broken(), Decoder(), data_shape)


def always_dropout(data_shape):
  return vae(AlwaysDropout(), Decoder(), data_shape)


def not_a_network(data_shape):
  return vae(object(), Decoder(), data_shape)
"""

MISTAKES = {
  "pair": "the encoder (Flax Linen module Encoder) returns tuple (f32[64,2], f32[64,2]); the gaussian posterior "
  "reads jaxvae.Gaussian(mean, log_sigma)",
  "latent_mismatch": "the encoder (Flax Linen module Encoder) returns a Gaussian of 3 dimensions but latent_dim=2",
  "flat_decoder": "the decoder (Flax Linen module Decoder) returns f32[64,784] for z f32[64,2]; the bernoulli "
  "likelihood of data shaped (28, 28, 1) reads f32[64,28,28,1]: reshape its output, e.g. out.reshape(-1, 28, 28, 1)",
  "not_a_network": "the encoder is a object, which jaxvae cannot call",
  "always_dropout": "the encoder (Flax Linen module AlwaysDropout) raised InvalidRngError in apply on f32[64,28,28,1]",
  "broken": "the encoder (Flax Linen module Broken) raised TypeError in init(key, f32[1,28,28,1])",
}


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory):
  folder = tmp_path_factory.mktemp("mistakes")
  path = folder / "mistakes.py"
  path.write_text(MISTAKES_PY)
  np.savez(folder / "chw.npz", train=np.zeros((64, 3, 32, 32), np.uint8), test=np.zeros((8, 3, 32, 32), np.uint8))
  vectors = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
  np.savez(folder / "vectors.npz", train=vectors, test=vectors[:8])
  return folder


TINY = ["--n-train", "256", "--n-test", "64", "--batch-size", "64", "--epochs", "1", "--no-progress"]


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_a_models_mistake_is_one_line_and_exit_status_2_and_no_folder(name, mistakes, tmp_path, capsys):
  workdir = tmp_path / "run"
  status = main(["train", "--model", f"{mistakes / 'mistakes.py'}:{name}", "--workdir", str(workdir), *TINY])
  err = capsys.readouterr().err
  assert status == 2 and not workdir.exists()
  assert MISTAKES[name] in err.strip().splitlines()[-1]
  if name in ("broken", "always_dropout"):  # the user's own bug: its traceback stays, under one line
    assert "Traceback" in err and "mistakes.py" in err
  else:
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
  "dataset, expected",
  [
    (
      "chw.npz",
      "training data have shape (64, 3, 32, 32), channel-first [N, C, H, W] (PyTorch's layout): jaxvae "
      "reads images as [N, H, W, C]: pass x.transpose(0, 2, 3, 1)",
    ),
    (
      "vectors.npz",
      "the bernoulli likelihood models intensities in [0, 1] (or uint8 0..255): for real-valued data use "
      "--likelihood gaussian (in Python: likelihoods.gaussian(data_shape, eight_bit=False))",
    ),
  ],
)
def test_data_a_model_cannot_read_is_one_line_and_no_folder(dataset, expected, mistakes, tmp_path, capsys):
  workdir = tmp_path / "run"
  status = main(["train", "--dataset", f"npz:{mistakes / dataset}", "--workdir", str(workdir), *TINY])
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and not workdir.exists() and len(err) == 1 and expected in err[0]


def test_from_python_a_mistake_raises_before_the_folder_and_names_python_arguments(digits, tmp_path):
  import flax.linen as nn
  from user_models.five_ways import LinenEncoder

  class Flat(nn.Module):
    @nn.compact
    def __call__(self, z):
      return nn.Dense(784)(z)

  model = jaxvae.VAE.from_modules(LinenEncoder(), Flat(), data_shape=SHAPE, latent_dim=2)
  config = Config(epochs=1, batch_size=64)
  with pytest.raises(JaxvaeError, match=r"the decoder \(Flax Linen module Flat\) returns f32\[64,784\]"):
    train_and_evaluate(config, str(tmp_path / "run"), model=model, data=digits, progress=False, verbose=False)
  assert not (tmp_path / "run").exists()
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "x").write_text("")
  good = five_ways.linen(config, SHAPE)
  with pytest.raises(JaxvaeError, match="choose a new workdir, pass resume=True to continue it, or overwrite=True"):
    train_and_evaluate(config, str(tmp_path / "full"), model=good, data=digits, progress=False, verbose=False)


def test_a_user_code_error_keeps_its_cause():
  import flax.linen as nn

  class Boom(nn.Module):
    @nn.compact
    def __call__(self, x):
      raise ValueError("my bug")

  vae = jaxvae.VAE.from_modules(Boom(), five_ways.LinenDecoder(SHAPE), data_shape=SHAPE, latent_dim=2)
  with pytest.raises(UserCodeError, match=r"the encoder \(Flax Linen module Boom\) raised ValueError in init") as e:
    jaxvae.core.checks.check_model(vae, jax.ShapeDtypeStruct((8,) + SHAPE, jnp.float32))
  assert isinstance(e.value.__cause__, ValueError)


# ---------------------------------------------------------------------------
# What Python hands over is what is recorded.
# ---------------------------------------------------------------------------


def test_a_model_and_objective_handed_over_are_recorded_as_used(digits, tmp_path, capsys):
  model = five_ways.linen(Config(), SHAPE)
  workdir = tmp_path / "run"
  train_and_evaluate(
    Config(epochs=1, batch_size=64),
    str(workdir),
    model=model,
    objective=objectives.iwae_dreg(5),
    data=digits,
    progress=False,
    callbacks=[jaxvae.tensorboard(images_every=0)],
  )
  with open(workdir / "config.json") as f:
    recorded = json.load(f)
  assert recorded["latent_dim"] == five_ways.LATENT and recorded["data_shape"] == list(SHAPE)
  assert recorded["k"] == 5 and recorded["model"] == "custom" and recorded["objective"] == "custom"
  assert not {"hidden", "activation", "prior", "beta", "free_bits"} & set(recorded)
  assert "train IWAE_5" in capsys.readouterr().out
  from tensorboard.backend.event_processing import event_accumulator

  events = event_accumulator.EventAccumulator(str(workdir / "tensorboard"), size_guidance={"tensors": 0})
  events.Reload()
  hparams = session_hparams(events)
  assert hparams["latent_dim"] == five_ways.LATENT and hparams["k"] == 5 and "hidden" not in hparams
  assert jaxvae.Config.from_dict(recorded).latent_dim == five_ways.LATENT  # config.json reads back


# ---------------------------------------------------------------------------
# Through the machinery: the command line, resume, sweeps, eval and gaps (slow tier).
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_five_ways_through_train_resume_sweep_eval_and_gaps(tmp_path, capsys):
  """Each way: train 2 epochs; train 1 and resume to 2 (bit for bit); a beta sweep; eval; gaps. Same numbers."""
  common = ["--n-train", "128", "--n-test", "32", "--batch-size", "64", "--no-progress", "--no-tensorboard"]
  results = {}
  for way in five_ways.WAYS:
    if way in ("equinox", "haiku") and not _installed(way):
      continue
    model = ["--model", f"{FIVE_WAYS}:{way}"]
    a, b, s = (str(tmp_path / f"{way}-{n}") for n in ("a", "b", "sweep"))
    assert main(["train", *model, *common, "--epochs", "2", "--workdir", a]) == 0
    assert main(["train", *model, *common, "--epochs", "1", "--workdir", b]) == 0
    assert main(["train", "--resume", b, "--epochs", "2", "--no-progress", "--no-tensorboard"]) == 0
    assert untimed(read_metrics(b)) == untimed(read_metrics(a)), way
    assert main(["sweep", *model, *common, "--epochs", "1", "--grid", "beta=0.5,1", "--workdir", s]) == 0
    assert main(["eval", "--workdir", a, "--k", "5", "--n-test", "32", "--no-progress"]) == 0
    assert (
      main(["gaps", "--workdir", a, "--n-test", "4", "--k", "5", "--steps", "3", "--batch-size", "4", "--no-progress"])
      == 0
    )
    with open(os.path.join(s, "sweep.json")) as f:
      sweep = [row["test_elbo"] for row in json.load(f)["rows"]]
    with open(os.path.join(a, "eval.json")) as f:
      evaluation = json.load(f)
    with open(os.path.join(a, "gaps.json")) as f:
      gaps = json.load(f)
    results[way] = [read_metrics(a)[-1]["test_elbo"], *sweep, evaluation["test_log_px"], gaps["log_px"]]
  capsys.readouterr()
  for way, values in results.items():
    np.testing.assert_allclose(values, results["linen"], rtol=1e-5, err_msg=way)


def _installed(name):
  try:
    __import__(name)
  except ImportError:
    return False
  return True


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_batch_norm_and_dropout_resume_bit_for_bit_and_sweep_with_own_statistics(kind, digits, tmp_path):
  factory = getattr(stateful, kind)
  quiet = dict(data=digits, progress=False, verbose=False)
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  train_and_evaluate(Config(epochs=2, batch_size=64), a, model=factory, **quiet)
  train_and_evaluate(Config(epochs=1, batch_size=64), b, model=factory, **quiet)
  train_and_evaluate(Config(epochs=2, batch_size=64), b, model=factory, resume=True, **quiet)
  assert untimed(read_metrics(b)) == untimed(read_metrics(a))

  params_a, params_b = load_run(a, model=factory, data=digits)[1], load_run(b, model=factory, data=digits)[1]
  for x, y in zip(jax.tree.leaves(params_a["state"]), jax.tree.leaves(params_b["state"]), strict=True):
    np.testing.assert_array_equal(x, y)  # the running statistics, checkpointed and resumed bit for bit

  rows = run_sweep(
    [Config(epochs=1, batch_size=64, lr=lr) for lr in (1e-3, 3e-3)], str(tmp_path / "sweep"), model=factory, **quiet
  )
  stats = [
    load_run(os.path.join(str(tmp_path / "sweep"), "models", name), model=factory, data=digits)[1]["state"]
    for name in sorted(os.listdir(tmp_path / "sweep" / "models"))
  ]
  assert len(rows) == 2 and not np.allclose(jax.tree.leaves(stats[0])[0], jax.tree.leaves(stats[1])[0])


@pytest.mark.slow
def test_an_nnx_model_with_batch_norm_survives_sigterm_and_resumes_bit_for_bit(tmp_path):
  """examples/own_model/stop_and_resume.py with an NNX model: train, SIGTERM, resume (bit for bit), eval, sweep."""
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "examples", "own_model", "stop_and_resume.py"),
      "--model",
      f"{STATEFUL}:nnx",
      "--epochs",
      "4",
      "--n-train",
      "3200",
      "--n-test",
      "200",
      "--k",
      "5",
      "--workdir",
      str(tmp_path),
    ],
    capture_output=True,
    text=True,
    timeout=900,
    cwd=ROOT,
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "metrics.jsonl equals A's (4 rows" in proc.stdout and "SIGTERM" in proc.stdout
  with open(tmp_path / "A" / "config.json") as f:
    assert json.load(f)["model"] == f"{STATEFUL}:nnx"
  with open(tmp_path / "B" / "eval.json") as f:
    evaluation = json.load(f)
  assert evaluation["test_log_px"] > evaluation["test_elbo"] and evaluation["active_units"] > 0
  with open(tmp_path / "sweep" / "sweep.json") as f:
    assert len(json.load(f)["rows"]) == 2
