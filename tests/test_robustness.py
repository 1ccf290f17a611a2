"""Runs that survive: exact resume, preemption, skipped non-finite updates, bad input."""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import mnist_trainer as make_trainer
from hypothesis import HealthCheck, given, settings, strategies as st

from jaxvae.core.data import Dataset
from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import Config
from jaxvae.runs.folder import read_metrics
from jaxvae.runs.records import TIMING_KEYS
from jaxvae.runs.run import train_and_evaluate
from jaxvae.tools.cli import main
from jaxvae.training.checkpoint import restore_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
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


def _jaxvae(*args, **kwargs):
  return subprocess.Popen(
    [sys.executable, "-m", "jaxvae", *args],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    **kwargs,
  )


def _without_timing(rows):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _params(workdir):
  with open(os.path.join(workdir, "config.json")) as f:
    config = Config.from_dict(json.load(f))
  like = make_trainer(config, train_size=config.n_train).init(jax.random.key(0))
  return restore_checkpoint(workdir, like)


# ---------------------------------------------------------------------------
# Resume and preemption.
# ---------------------------------------------------------------------------

# Epochs of ~0.5 s on 2 cores, so that a signal lands inside one.
RUN = ["--epochs", "6", "--n-train", "25600", "--n-test", "500", "--no-progress"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("resume") / "A")
  proc = _jaxvae("train", *RUN, "--workdir", workdir)
  assert proc.wait(timeout=600) == 0, proc.stderr.read()
  return workdir


@pytest.mark.slow
def test_sigterm_mid_run_then_resume_is_bit_identical_to_a_straight_run(straight, tmp_path):
  workdir = str(tmp_path / "B")
  proc = _jaxvae("train", *RUN, "--workdir", workdir)
  deadline = time.time() + 300
  while len(read_metrics(workdir)) < 2 and time.time() < deadline:  # epoch 3 is under way
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=300) == 143
  err = proc.stderr.read().strip().splitlines()
  assert len(err) == 1 and "SIGTERM" in err[0] and f"jaxvae train --resume {workdir}" in err[0]
  stopped = len(read_metrics(workdir))
  assert 2 <= stopped < 6
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["completed"] is False and summary["epochs"] == stopped

  resumed = _jaxvae("train", "--resume", workdir, "--no-progress")
  assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
  rows_a, rows_b = read_metrics(straight), read_metrics(workdir)
  assert [r["epoch"] for r in rows_b] == [1, 2, 3, 4, 5, 6]
  assert _without_timing(rows_b) == _without_timing(rows_a)
  a, b = _params(straight), _params(workdir)
  assert a.epoch == b.epoch == 6
  for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  with open(os.path.join(straight, "summary.json")) as f, open(os.path.join(workdir, "summary.json")) as g:
    sa, sb = json.load(f), json.load(g)
  assert (sa["test_elbo"], sa["train_elbo"], sa["test_kl"]) == (sb["test_elbo"], sb["train_elbo"], sb["test_kl"])
  assert sb["completed"] is True and sb["resumed_after_epoch"] == stopped


@pytest.mark.slow
def test_sigkill_in_an_epoch_a_checkpoint_write_or_the_final_evaluation_loses_nothing(straight, tmp_path):
  """SIGKILL cannot be caught: each resume goes on from the newest intact checkpoint; the run ends as a straight one."""
  workdir = str(tmp_path / "K")
  checkpoints = os.path.join(workdir, "checkpoints")

  def killed_when(args, moment):
    proc = _jaxvae("train", *args)
    deadline = time.time() + 300
    while not moment() and proc.poll() is None and time.time() < deadline:
      time.sleep(0.001)
    assert proc.poll() is None, f"the run ended before the moment: {proc.stderr.read()[-2000:]}"
    proc.kill()
    proc.wait()

  def in_a_checkpoint_write():
    return os.path.isdir(checkpoints) and any("tmp" in name for name in os.listdir(checkpoints))

  killed_when([*RUN, "--workdir", workdir], lambda: len(read_metrics(workdir)) >= 2)  # in epoch 3
  killed_when(["--resume", workdir, "--no-progress"], in_a_checkpoint_write)
  assert in_a_checkpoint_write()  # a half-written checkpoint is left behind
  killed_when(
    ["--resume", workdir, "--no-progress"],  # all epochs recorded, the summary not yet written
    lambda: len(read_metrics(workdir)) == 6 and not os.path.exists(os.path.join(workdir, "summary.json")),
  )
  resumed = _jaxvae("train", "--resume", workdir, "--no-progress")
  assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
  assert _without_timing(read_metrics(workdir)) == _without_timing(read_metrics(straight))
  for x, y in zip(jax.tree.leaves(_params(straight).state), jax.tree.leaves(_params(workdir).state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["completed"] is True
  assert os.path.exists(os.path.join(workdir, "samples.png"))


@contextlib.contextmanager
def _small_disk(folder, megabytes):
  """A tmpfs of ``megabytes`` mounted at ``folder`` (root only), unmounted after."""
  if not hasattr(os, "geteuid") or os.geteuid() != 0:
    pytest.skip("a size-limited filesystem needs `mount -t tmpfs`, which needs root")
  os.makedirs(folder)
  mounted = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True, text=True
  )
  if mounted.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
  try:
    yield
  finally:
    subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder, leave):
  """A file taking all but ``leave`` bytes of the filesystem of ``folder``."""
  path = os.path.join(folder, "filler")
  size = shutil.disk_usage(folder).free - leave
  with open(path, "wb") as f:
    os.posix_fallocate(f.fileno(), 0, max(size, 4096))
  return path


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_keeps_its_files_and_a_resume_finishes_it(tmp_path, capsys, snapshot):
  disk = tmp_path / "disk"
  with _small_disk(disk, 16):
    workdir = str(disk / "W")
    assert main(["train", *TINY, "--epochs", "2", "--workdir", workdir]) == 0
    capsys.readouterr()

    def stops(args, at_epoch):
      assert main(args) == 5
      err = capsys.readouterr().err.strip()
      assert len(err.splitlines()) == 1 and "No space left on device" in err and f"checkpoint {at_epoch}" in err, err

    # 64 KB free: epoch 3 trains and its row is written; its checkpoint does not fit.
    filler = _fill(disk, 64 << 10)
    stops(["train", "--resume", workdir, "--epochs", "4"], 2)
    assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2, 3] and _params(workdir).epoch == 2
    # Nothing free: the resume's first write fails, and leaves every file as it was.
    os.remove(filler)
    filler = _fill(disk, 0)
    before = snapshot(workdir)
    stops(["train", "--resume", workdir, "--epochs", "4"], 2)
    assert snapshot(workdir) == before
    os.remove(filler)
    assert main(["train", "--resume", workdir, "--epochs", "4"]) == 0
    rows = _without_timing(read_metrics(workdir))
  straight = str(tmp_path / "straight")
  assert main(["train", *TINY, "--epochs", "4", "--workdir", straight]) == 0
  assert rows == _without_timing(read_metrics(straight))


@pytest.mark.slow
def test_sigint_stops_with_status_130_and_a_checkpoint(tmp_path):
  workdir = str(tmp_path / "C")
  proc = _jaxvae("train", *RUN, "--workdir", workdir)
  deadline = time.time() + 300
  while len(read_metrics(workdir)) < 1 and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  assert proc.wait(timeout=300) == 130
  assert "SIGINT" in proc.stderr.read()
  assert _params(workdir).epoch == len(read_metrics(workdir))


@pytest.mark.slow
def test_resume_refuses_a_changed_config_or_a_damaged_checkpoint_and_continues_a_run_without_one(
  tmp_path, capsys, snapshot
):
  workdir = str(tmp_path / "D")
  assert main(["train", *TINY, "--epochs", "2", "--workdir", workdir]) == 0
  before = snapshot(workdir)

  def refused(args, words):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert snapshot(workdir) == before

  refused(["train", "--resume", workdir, "--beta", "2"], ["does not match", "beta"])
  refused(["train", "--resume", workdir], ["complete", "--epochs"])
  refused(["train", "--resume", str(tmp_path / "nothing")], ["nothing to resume"])
  refused(["train", "--resume", workdir, "--workdir", str(tmp_path / "other")], ["--resume", "--workdir"])

  # Damaged checkpoints: every data file overwritten with garbage. All of them: refused.
  def damage(epoch, folder=workdir):
    for root, _, files in os.walk(os.path.join(folder, "checkpoints", str(epoch))):
      for name in files:
        if name not in ("_CHECKPOINT_METADATA", "commit_success.txt"):
          with open(os.path.join(root, name), "wb") as f:
            f.write(b"\x00garbage" * 7)

  shutil.copytree(workdir, tmp_path / "D2")
  damage(1)
  damage(2)
  before = snapshot(workdir)
  refused(["train", "--resume", workdir, "--epochs", "4"], ["checkpoint 2", "cannot be restored"])
  # Only the newest: one line names it, the run resumes from checkpoint 1 and recomputes epoch 2 as it was.
  damage(2, str(tmp_path / "D2"))
  straight = _without_timing(read_metrics(workdir))
  assert main(["train", "--resume", str(tmp_path / "D2"), "--epochs", "3"]) == 0
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "checkpoint 2" in err and "resuming from checkpoint 1" in err, err
  resumed = _without_timing(read_metrics(tmp_path / "D2"))
  assert resumed[:2] == straight and [r["epoch"] for r in resumed] == [1, 2, 3]
  # Stopped before its first checkpoint: a config.json and a row of an epoch in flight, no
  # checkpoint. --resume trains it from epoch 1, and it ends as the straight run ended.
  os.makedirs(tmp_path / "E")
  with open(os.path.join(workdir, "config.json")) as f, open(tmp_path / "E" / "config.json", "w") as g:
    g.write(f.read())
  with open(tmp_path / "E" / "metrics.jsonl", "w") as f:
    f.write(json.dumps({"epoch": 1, "test_elbo": -1.0}) + "\n")
  assert main(["train", "--resume", str(tmp_path / "E"), "--no-progress"]) == 0
  assert "training from epoch 1" in capsys.readouterr().out
  assert _without_timing(read_metrics(tmp_path / "E")) == _without_timing(read_metrics(tmp_path / "D"))


@pytest.mark.slow
def test_two_processes_started_into_one_new_folder_one_runs_the_other_exits_2(tmp_path):
  workdir = str(tmp_path / "same")
  procs = [_jaxvae("train", *TINY, "--epochs", "1", "--workdir", workdir) for _ in range(2)]
  results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
  assert [rc for rc, _ in results] == [0, 2], results
  err = results[1][1].strip()
  assert len(err.splitlines()) == 1 and workdir in err and ("claimed" in err or "not empty" in err), err
  assert len(read_metrics(workdir)) == 1


def test_the_folder_claim_is_atomic_between_threads(tmp_path):
  from jaxvae.runs.folder import prepare_workdir

  barrier, outcomes = threading.Barrier(8), []

  def claim():
    barrier.wait()
    try:
      prepare_workdir(str(tmp_path / "raced"))
      outcomes.append("claimed")
    except JaxvaeError as e:
      outcomes.append(str(e))

  threads = [threading.Thread(target=claim) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert outcomes.count("claimed") == 1, outcomes


@pytest.mark.slow
def test_a_claim_whose_process_died_before_its_config_is_taken_over_and_a_live_one_is_not(tmp_path):
  import socket

  from jaxvae.runs.folder import CLAIM, prepare_workdir

  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  for pid, taken in ((dead.pid, True), (os.getpid(), False)):
    workdir = tmp_path / str(pid)
    workdir.mkdir()
    (workdir / CLAIM).write_text(f"{socket.gethostname()} pid {pid} 2026-11-30T00:00:00\n")
    (workdir / "config.json.tmp").write_text("{")  # killed in the middle of writing its config
    if taken:
      prepare_workdir(str(workdir))
      assert os.listdir(workdir) == [CLAIM] and f"pid {os.getpid()}" in (workdir / CLAIM).read_text()
    else:
      with pytest.raises(JaxvaeError, match="not empty"):
        prepare_workdir(str(workdir))


@pytest.mark.slow
def test_resume_can_extend_a_finished_run(tmp_path):
  config = Config(hidden=(32,), latent_dim=4, batch_size=32, n_train=256, n_test=64, epochs=2)
  train_and_evaluate(config, str(tmp_path / "F"), progress=False, verbose=False)
  train_and_evaluate(config.replace(epochs=4), str(tmp_path / "F"), resume=True, progress=False, verbose=False)
  train_and_evaluate(config.replace(epochs=4), str(tmp_path / "G"), progress=False, verbose=False)
  assert _without_timing(read_metrics(tmp_path / "F")) == _without_timing(read_metrics(tmp_path / "G"))


# ---------------------------------------------------------------------------
# Non-finite updates.
# ---------------------------------------------------------------------------


def test_a_nan_batch_is_skipped_and_leaves_the_state_unchanged(mnist):
  config = Config(hidden=(32,), latent_dim=4, batch_size=16, binarization="static")
  trainer = make_trainer(config, train_size=256)
  state = trainer.init(jax.random.key(0))
  good = jnp.asarray(mnist.train[:16] > 127)  # binary data (bool), as static binarization stores them
  state, _ = trainer.train_step(state, good, jax.random.key(1))
  bad = jnp.asarray(good, jnp.float32).at[3, 10, 10, 0].set(jnp.nan)
  after, metrics = trainer.train_step(state, bad, jax.random.key(2))
  assert int(metrics["skipped_steps"]) == 1 and not np.isfinite(float(metrics["loss"]))
  for x, y in zip(jax.tree.leaves((state.params, state.opt_state)), jax.tree.leaves((after.params, after.opt_state))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert int(after.consecutive_skips) == 1 and int(after.step) == int(state.step) + 1
  again, metrics = trainer.train_step(after, good, jax.random.key(3))
  assert int(metrics["skipped_steps"]) == 0 and int(again.consecutive_skips) == 0
  assert not np.array_equal(
    np.asarray(again.params["decoder"]["Dense_1"]["kernel"]), np.asarray(after.params["decoder"]["Dense_1"]["kernel"])
  )


def test_a_gradient_norm_threshold_skips_large_updates(mnist):
  config = Config(hidden=(32,), latent_dim=4, batch_size=32, n_train=256, skip_grad_norm=1e-6)
  trainer = make_trainer(config, train_size=256)
  state = trainer.init(jax.random.key(0))
  before = jax.device_get(state.params)
  state, metrics = trainer.train_epoch(state, jnp.asarray(mnist.train[:256]), jax.random.key(1))
  assert int(metrics["skipped_steps"]) == 8 and int(state.consecutive_skips) == 8
  for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_diverging_learning_rate_stops_the_run_with_status_3(tmp_path, capsys):
  workdir = str(tmp_path / "H")
  assert (
    main(["train", *TINY, "--epochs", "4", "--lr", "1e6", "--max-consecutive-skips", "5", "--workdir", workdir]) == 3
  )
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "non-finite" in err and "--lr" in err
  rows = read_metrics(workdir)
  assert rows and rows[-1]["skipped_steps"] >= 5
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["completed"] is False


@pytest.mark.slow
def test_clipping_keeps_a_large_learning_rate_finite(tmp_path):
  config = Config(
    hidden=(32,), latent_dim=4, batch_size=32, n_train=256, n_test=64, epochs=2, lr=0.05, clip_grad_norm=1.0
  )
  summary = train_and_evaluate(config, str(tmp_path / "I"), progress=False, verbose=False)
  assert np.isfinite(summary["test_elbo"])


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "images, words",
  [
    (np.linspace(0.0, 2.0, 128, dtype=np.float32).reshape(8, 4, 4, 1), ["[0, 2]", "[0, 1]"]),
    (np.full((8, 4, 4, 1), np.nan, np.float32), ["NaN"]),
    (np.zeros((8, 4, 4, 1), np.int16), ["int16", "uint8"]),
    (np.zeros((8,), np.uint8), ["shape", "[N, ...]"]),
  ],
)
def test_bad_data_is_named_and_nothing_is_written(tmp_path, images, words):
  dataset = Dataset.from_arrays(images, images, name="mine")
  config = Config(hidden=(8,), latent_dim=2, batch_size=4, epochs=1)
  with pytest.raises(JaxvaeError) as e:
    train_and_evaluate(config, str(tmp_path / "J"), data=dataset, progress=False, verbose=False)
  assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)
  assert not (tmp_path / "J").exists()


@pytest.mark.slow
def test_float_images_in_unit_range_are_accepted(tmp_path):
  images = np.random.default_rng(0).uniform(size=(64, 4, 4, 1)).astype(np.float32)
  dataset = Dataset.from_arrays(images, images[:16], name="mine")
  config = Config(hidden=(8,), latent_dim=2, batch_size=16, epochs=1)
  summary = train_and_evaluate(config, str(tmp_path / "K"), data=dataset, progress=False, verbose=False)
  assert np.isfinite(summary["test_elbo"])


def test_an_unwritable_run_folder_is_one_line(tmp_path, capsys):
  blocker = tmp_path / "a-file"
  blocker.write_text("x")
  assert main(["train", *TINY, "--workdir", str(blocker / "run")]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "cannot write run folder" in err


# A property over the CLI: invalid values get the one-line refusal, valid ones train.
FIELDS = {
  "--beta": st.one_of(st.floats(-2, -0.01), st.floats(0, 3)),
  "--lr": st.one_of(st.floats(-1, 0), st.floats(1e-4, 1e-2)),
  "--latent-dim": st.integers(-1, 6),
  "--batch-size": st.integers(-1, 80),
  "--epochs": st.integers(-1, 1),
  "--k": st.integers(0, 3),
  "--model": st.sampled_from(["mlp", "burda1", "burda2", "resnet"]),
  "--objective": st.sampled_from(["vae", "iwae", "elbo"]),
  "--free-bits": st.floats(-1, 1),
  "--warmup-epochs": st.floats(-1, 2),
}


def _valid(v):
  ok = v["--beta"] >= 0 and v["--lr"] > 0 and v["--latent-dim"] >= 1 and 1 <= v["--batch-size"] <= 64
  ok = ok and v["--epochs"] >= 1 and v["--k"] >= 1 and v["--model"] != "resnet" and v["--objective"] != "elbo"
  ok = ok and v["--free-bits"] >= 0 and v["--warmup-epochs"] >= 0
  if v["--objective"] == "iwae":
    ok = ok and v["--beta"] == 1 and v["--free-bits"] == 0 and v["--warmup-epochs"] == 0
  if v["--model"] == "burda2":
    ok = ok and v["--free-bits"] == 0
  return ok


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries(FIELDS), iwae_defaults=st.booleans())
def test_every_cli_combination_trains_or_is_refused_in_one_line(tmp_path_factory, values, iwae_defaults):
  if iwae_defaults and values["--objective"] == "iwae":
    values = {**values, "--beta": 1.0, "--free-bits": 0.0, "--warmup-epochs": 0.0}
  workdir = tmp_path_factory.mktemp("prop") / "run"
  args = ["train", "--workdir", str(workdir), "--n-train", "64", "--n-test", "16", "--hidden", "16", "--no-progress"]
  for flag, value in values.items():
    args += [flag, str(value)]
  if values["--model"] == "burda2":
    args += ["--hidden2", "8", "--latent-dim2", "2"]
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    status = main(args)
  if _valid(values):
    assert status == 0 and (workdir / "summary.json").exists()
  else:
    assert status == 2 and not workdir.exists()
    assert len(err.getvalue().strip().splitlines()) == 1 and "Traceback" not in err.getvalue()
