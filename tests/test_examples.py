"""The examples run as documented (on shrunken settings); examples/own_model runs in test_extending.py."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the slow tier: the examples as scripts, each a process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
  proc = subprocess.run(
    [sys.executable, os.path.join(ROOT, "examples", *script), *args],
    capture_output=True,
    text=True,
    timeout=600,
    cwd=ROOT,
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  return proc.stdout


def test_pinwheel_trains_a_vector_vae_with_its_own_likelihood_and_draws_it(tmp_path):
  out = _run(
    ("pinwheel", "pinwheel.py"),
    "--epochs",
    "3",
    "--n-train",
    "500",
    "--n-test",
    "100",
    "--k",
    "20",
    "--workdir",
    str(tmp_path),
  )
  assert "log p(x)" in out
  assert os.path.getsize(tmp_path / "pinwheel.png") > 20_000 and os.path.exists(tmp_path / "run" / "samples.png")
  with open(tmp_path / "run" / "config.json") as f:
    config = json.load(f)
  assert config["model"].endswith("pinwheel.py:make_vae") and config["dataset"].startswith("npz:")
  # The run folder rebuilds the model and the data from config.json: the CLI evaluates it.
  proc = subprocess.run(
    [sys.executable, "-m", "jaxvae", "eval", "--workdir", str(tmp_path / "run"), "--k", "5", "--no-progress"],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  assert proc.returncode == 0 and "100 test examples" in proc.stdout, proc.stderr[-2000:]


def test_dreg_gradient_variance_measures_both_estimators(tmp_path):
  out = _run(
    ("dreg", "gradient_variance.py"),
    "--epochs",
    "1",
    "--n-train",
    "1024",
    "--ks",
    "1,5",
    "--draws",
    "16",
    "--batch",
    "4",
    "--workdir",
    str(tmp_path),
  )
  assert "encoder gradient noise DReG / IWAE" in out
  with open(tmp_path / "dreg.json") as f:
    rows = json.load(f)["rows"]
  assert [(r["k"], r["estimator"]) for r in rows] == [(1, "IWAE"), (1, "DReG"), (5, "IWAE"), (5, "DReG")]
  assert os.path.getsize(tmp_path / "dreg.png") > 20_000
