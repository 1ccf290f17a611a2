"""End to end: `jaxvae train` writes a complete run folder and refuses to overwrite one."""

import json
import os
import subprocess
import sys

import jax
import matplotlib.image
import numpy as np
import pytest
from helpers import mnist_trainer as make_trainer

from jaxvae.runs.config import Config
from jaxvae.tools.cli import main
from jaxvae.training.checkpoint import restore_checkpoint

SMOKE = [
  "--n-train",
  "512",
  "--n-test",
  "200",
  "--epochs",
  "2",
  "--hidden",
  "64",
  "--latent-dim",
  "8",
  "--batch-size",
  "32",
  "--no-progress",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("runs") / "smoke")
  assert main(["train", *SMOKE, "--workdir", workdir]) == 0
  return workdir


@pytest.mark.slow
def test_run_folder_holds_every_file(run_dir):
  assert sorted(os.listdir(run_dir)) == [
    ".claimed",
    "checkpoints",
    "config.json",
    "metrics.jsonl",
    "reconstructions.png",
    "samples.png",
    "summary.json",
    "tensorboard",
  ]
  with open(os.path.join(run_dir, "config.json")) as f:
    config = Config.from_dict(json.load(f))
  assert config == Config(n_train=512, n_test=200, epochs=2, hidden=(64,), latent_dim=8, batch_size=32)

  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["epoch"] for r in rows] == [1, 2]
  for row in rows:
    for key in ("train_elbo", "test_elbo", "kl", "images_per_sec", "train_kl", "test_log_p_x_given_z"):
      assert np.isfinite(row[key]), key
    assert row["test_elbo"] < 0 and row["kl"] > 0
    np.testing.assert_allclose(row["test_elbo"], row["test_log_p_x_given_z"] - row["test_kl"], rtol=1e-5)

  with open(os.path.join(run_dir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["epochs"] == 2 and summary["n_test"] == 200
  assert summary["test_elbo"] == rows[-1]["test_elbo"]
  for key in ("images_per_sec", "seconds", "seconds_per_epoch", "compile_seconds"):
    assert summary[key] > 0

  trainer = make_trainer(config)
  state, epoch, _ = restore_checkpoint(run_dir, trainer.init(jax.random.key(0)))
  assert epoch == 2 and int(state.step) == 2 * (512 // 32)
  assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(state.params))

  for name in ("samples.png", "reconstructions.png"):
    image = matplotlib.image.imread(os.path.join(run_dir, name))
    assert image.ndim == 3 and min(image.shape[:2]) >= 300 and image.std() > 0.05


def test_existing_run_folder_is_refused_and_left_untouched(run_dir, capsys, snapshot):
  before = snapshot(run_dir)
  assert main(["train", *SMOKE, "--workdir", run_dir]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "exists" in err and "--overwrite" in err
  assert snapshot(run_dir) == before


@pytest.mark.slow
def test_overwrite_replaces_the_folder(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "old.txt").write_text("old")
  args = ["train", *SMOKE, "--epochs", "1", "--n-train", "64", "--n-test", "32", "--workdir", str(workdir)]
  assert main(args) == 2 and (workdir / "old.txt").exists()
  assert main([*args, "--overwrite"]) == 0
  assert not (workdir / "old.txt").exists() and (workdir / "summary.json").exists()


@pytest.mark.parametrize(
  "flags, named",
  [
    (["--beta", "-1"], "beta"),
    (["--lr", "0"], "lr"),
    (["--latent-dim", "0"], "latent_dim"),
    (["--epochs", "0"], "epochs"),
    (["--dataset", "cifar"], "dataset"),
    (["--hidden", "4x"], "hidden"),
    (["--batch-size", "100000"], "batch_size"),
    (["--no-such-flag"], "no-such-flag"),
  ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, flags, named):
  workdir = tmp_path / "never"
  assert main(["train", "--workdir", str(workdir), *flags]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and named in err, err
  assert not workdir.exists()


@pytest.mark.slow
def test_console_script_reports_bad_input_without_a_traceback(tmp_path):
  workdir = tmp_path / "C"
  proc = subprocess.run(
    [sys.executable, "-m", "jaxvae", "train", "--beta", "-1", "--workdir", str(workdir)],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "beta" in proc.stderr
  assert "Traceback" not in proc.stderr and not workdir.exists()


def test_eval_writes_eval_json_and_repeats_itself(run_dir, capsys):
  args = ["eval", "--workdir", run_dir, "--k", "50", "--n-test", "60", "--batch-size", "25", "--no-progress"]
  assert main(args) == 0
  out = capsys.readouterr().out
  assert "log p(x)" in out and "active units" in out
  with open(os.path.join(run_dir, "eval.json")) as f:
    first = json.load(f)
  for key in (
    "test_log_px",
    "test_log_px_se",
    "test_log_px_mc_se",
    "test_elbo",
    "test_kl",
    "test_log_p_x_given_z",
    "active_units",
    "bits_per_dim",
    "samples_per_sec",
  ):
    assert key in first, key
  assert first["k"] == 50 and first["n_test"] == 60 and first["checkpoint_epoch"] == 2
  # IS with k = 50 bounds log p(x) tighter than the ELBO, and the estimate is a log-likelihood in nats.
  assert first["test_log_px"] > first["test_elbo"] and first["test_log_px"] < 0
  np.testing.assert_allclose(first["bits_per_dim"], -first["test_log_px"] / (784 * np.log(2)))
  assert 0 <= first["active_units"] <= 8
  assert main(args) == 0
  with open(os.path.join(run_dir, "eval.json")) as f:
    again = json.load(f)
  for key in ("test_log_px", "test_elbo", "test_kl", "active_units"):
    assert again[key] == first[key]
  assert main([*args[:-1], "--seed", "1", "--no-progress"]) == 0
  with open(os.path.join(run_dir, "eval.json")) as f:
    assert json.load(f)["test_log_px"] != first["test_log_px"]


def test_eval_of_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
  assert main(["eval", "--workdir", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "config.json" in err
