"""Sweeps: grids and groups, a swept model equals the same config trained alone, sharding."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from helpers import mnist_trainer as make_trainer

from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import Config
from jaxvae.runs.grid import expand_grid, group_configs, parse_grid
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.sweep import train_group
from jaxvae.tools.cli import main
from jaxvae.training.checkpoint import restore_checkpoint

SMALL = dict(hidden=(32,), latent_dim=4, batch_size=32, n_train=256, n_test=100, epochs=3)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parse_and_expand_grid_and_group_by_shapes():
  grid = parse_grid(["beta=0.5,2", "seed=0,1", "hidden=400,200/200", "model=mlp,burda1"])
  assert grid == {"beta": [0.5, 2.0], "seed": [0, 1], "hidden": [(400,), (200, 200)], "model": ["mlp", "burda1"]}
  configs = expand_grid({"epochs": 2}, grid)
  assert len(configs) == 16 and configs[0] == Config(beta=0.5, seed=0, hidden=(400,), model="mlp", epochs=2)
  # A model axis gives each model its own defaults for the fields left unset.
  assert Config(model="burda1", hidden=(400,)).latent_dim == 50
  groups = group_configs(configs)
  assert len(groups) == 4 and all(len(g) == 4 for g in groups)  # hidden x model; beta x seed vmapped
  for bad, named in (["nope=1"], "nope"), (["beta"], "NAME=V1"), (["seed=a"], "seed"), (["beta=1", "beta=2"], "twice"):
    with pytest.raises(JaxvaeError, match=named):
      parse_grid(bad)


@pytest.mark.slow
def test_a_model_trained_in_a_sweep_equals_the_same_config_trained_alone(tmp_path, mnist):
  configs = [
    Config(**SMALL, beta=0.5, seed=0),
    Config(**SMALL, beta=2.0, seed=1, lr=3e-4),
    Config(**SMALL, beta=1.0, seed=2, warmup_epochs=1.5, free_bits=0.2, binarization_seed=3),
  ]
  result = train_group(configs, mnist, models_per_program=4)
  for i, config in enumerate(configs):
    workdir = str(tmp_path / f"solo{i}")
    train_and_evaluate(config, workdir, data=mnist, progress=False, verbose=False)
    solo = restore_checkpoint(workdir, make_trainer(config, train_size=256).init(jax.random.key(0))).state
    swept = result.states[i]
    for a, b in zip(jax.tree.leaves(solo.params), jax.tree.leaves(swept.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
    assert int(swept.step) == int(solo.step) == 3 * 8
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      solo_rows = [json.loads(line) for line in f]
    for r_solo, r_swept in zip(solo_rows, result.rows[i]):
      np.testing.assert_allclose(r_swept["test_elbo"], r_solo["test_elbo"], rtol=1e-4)
      np.testing.assert_allclose(r_swept["train_kl"], r_solo["train_kl"], rtol=1e-3)


@pytest.mark.slow
def test_chunks_of_the_models_axis_give_the_same_models(mnist):
  configs = [Config(**{**SMALL, "epochs": 1}, seed=s) for s in range(3)]
  one = train_group(configs, mnist, models_per_program=4)
  two = train_group(configs, mnist, models_per_program=2)  # chunks of 2: [0, 1], [2 + a padding copy]
  for a, b in zip(one.states, two.states):
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4, atol=2e-5)


@pytest.mark.slow
def test_sweep_cli_writes_the_table_the_figure_and_a_best_run_that_eval_reads(tmp_path, capsys):
  workdir = str(tmp_path / "sweep")
  flags = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "32", "--n-train", "512", "--n-test", "100"]
  assert (
    main(
      [
        "sweep",
        "--grid",
        "beta=0.5,4",
        "--grid",
        "seed=0,1",
        "--epochs",
        "2",
        *flags,
        "--workdir",
        workdir,
        "--no-progress",
      ]
    )
    == 0
  )
  out = capsys.readouterr().out
  assert "test_elbo" in out and "best:" in out
  with open(os.path.join(workdir, "sweep.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and {"beta", "seed", "test_elbo", "train_elbo", "kl", "active_units"} <= set(rows[0])
  elbos = [float(r["test_elbo"]) for r in rows]
  assert elbos == sorted(elbos, reverse=True)
  mean_kl = lambda beta: np.mean([float(r["kl"]) for r in rows if float(r["beta"]) == beta])  # noqa: E731
  assert mean_kl(4.0) < mean_kl(0.5)
  assert os.path.getsize(os.path.join(workdir, "sweep.png")) > 10_000
  assert len(os.listdir(os.path.join(workdir, "models"))) == 4
  assert main(["eval", "--workdir", os.path.join(workdir, "best"), "--k", "20", "--n-test", "20", "--no-progress"]) == 0
  model = os.path.join(workdir, "models", sorted(os.listdir(os.path.join(workdir, "models")))[0])
  assert main(["eval", "--workdir", model, "--k", "20", "--n-test", "20", "--no-progress"]) == 0  # every model is a run
  # The run-folder rules hold: the same command again changes nothing.
  assert main(["sweep", "--grid", "beta=0.5,4", "--workdir", workdir, *flags]) == 2
  assert "exists" in capsys.readouterr().err


FAKE_DEVICES = textwrap.dedent(
  """
    import os, sys
    import jax, numpy as np
    assert jax.device_count() == 4, jax.devices()
    from jaxvae.runs.config import Config
    from jaxvae.runs.sources import load_mnist
    from jaxvae.runs.sweep import train_group
    from jaxvae.runs.run import train_and_evaluate
    from jaxvae.runs.build import trainer_for
    from jaxvae.training.checkpoint import restore_checkpoint

    mnist = load_mnist()
    small = dict(hidden=(32,), latent_dim=4, batch_size=32, n_train=256, n_test=100, epochs=2)
    configs = [Config(**small, beta=b, seed=s) for b in (0.5, 2.0) for s in (0, 1)] + [Config(**small, seed=7)]
    sharded = train_group(configs, mnist, models_per_program=1)                  # 5 models over 4 devices
    single = train_group(configs, mnist, models_per_program=8, devices=jax.devices()[:1])
    for a, b in zip(sharded.states, single.states):
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4, atol=2e-5)

    config = Config(**small)
    w = sys.argv[1]
    train_and_evaluate(config, w + "/dp", data=mnist, progress=False, verbose=False, data_parallel=True)
    train_and_evaluate(config, w + "/one", data=mnist, progress=False, verbose=False)
    like = trainer_for(config, data_shape=(28, 28, 1), train_size=256).init(jax.random.key(0))
    dp = restore_checkpoint(w + "/dp", like).state
    one = restore_checkpoint(w + "/one", like).state
    for x, y in zip(jax.tree.leaves(dp.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4, atol=2e-5)
    print("ok")
    """
)


@pytest.mark.slow
def test_sharded_sweep_and_data_parallel_training_on_4_fake_devices(tmp_path):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
    [sys.executable, "-c", FAKE_DEVICES, str(tmp_path)], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT
  )
  assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


@pytest.mark.slow
def test_a_diverged_model_stops_alone_and_a_sweeps_files_are_a_runs_files(tmp_path, mnist):
  """One driver: a swept model's metrics rows and summary have a run's fields and types, and stop as a run stops."""
  from jaxvae.runs.sweep import run_sweep

  healthy, diverging = Config(**SMALL, max_consecutive_skips=5), Config(**SMALL, max_consecutive_skips=5, lr=1e6)
  table = run_sweep([healthy, diverging], str(tmp_path / "sweep"), data=mnist, progress=False, verbose=False)
  by_lr = {r["lr"]: r for r in table}
  assert by_lr[1e-3]["completed"] and by_lr[1e-3]["epochs"] == 3
  assert not by_lr[1e6]["completed"] and by_lr[1e6]["epochs"] == 1  # its updates went non-finite in epoch 1
  train_and_evaluate(healthy, str(tmp_path / "solo"), data=mnist, progress=False, verbose=False)
  folder = {r["lr"]: tmp_path / "sweep" / "models" / r["name"] for r in table}

  def read(path, name):
    with open(path / name) as f:
      return [json.loads(line) for line in f] if name.endswith("jsonl") else json.load(f)

  swept, solo = read(folder[1e-3], "metrics.jsonl"), read(tmp_path / "solo", "metrics.jsonl")
  assert [sorted(r) for r in swept] == [sorted(r) for r in solo]
  assert all(isinstance(r["skipped_steps"], int) for r in swept + solo)
  assert read(folder[1e6], "metrics.jsonl")[0]["skipped_steps"] >= 5
  summary, solo_summary = read(folder[1e6], "summary.json"), read(tmp_path / "solo", "summary.json")
  assert set(solo_summary) - {"resumed_after_epoch"} <= set(summary)
  assert summary["completed"] is False and "non-finite" in summary["stopped"]


@pytest.mark.slow
def test_sigterm_stops_a_sweep_after_the_epoch_in_flight_and_keeps_what_it_trained(tmp_path):
  import signal
  import time

  workdir = tmp_path / "sweep"
  proc = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "jaxvae.tools.cli",
      "sweep",
      "--grid",
      "seed=0,1",
      "--epochs",
      "6",
      "--n-train",
      "25600",
      "--n-test",
      "500",
      "--workdir",
      str(workdir),
      "--no-progress",
    ],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 300
  while (
    time.time() < deadline and sum(len(p.read_text().splitlines()) for p in workdir.glob("models/*/metrics.jsonl")) < 2
  ):
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 143 and len(err.strip().splitlines()) == 1 and "stopped early" in err, err[-2000:]
  rows = [len(p.read_text().splitlines()) for p in sorted(workdir.glob("models/*/metrics.jsonl"))]
  assert len(rows) == 2 and rows[0] == rows[1] and 1 <= rows[0] < 6
  with open(workdir / "sweep.json") as f:
    assert [r["completed"] for r in json.load(f)["rows"]] == [False, False]
