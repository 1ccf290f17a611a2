"""Two jaxvae processes as one JAX job on this machine: 127.0.0.1, gloo collectives between CPU devices.

The code a multi-host job runs (global arrays from process-local data, writes by process 0,
collective checkpoints, a stop agreed by all processes) runs here as it would on a cluster.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxvae.runs.config import Config
from jaxvae.runs.records import TIMING_KEYS
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.sweep import run_sweep
from jaxvae.tools.launch import free_port, job_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL = ["--hidden", "64", "--latent-dim", "8", "--n-test", "200", "--no-progress"]
pytestmark = [
  pytest.mark.slow,  # the slow tier: jobs of two processes
  pytest.mark.skipif(sys.platform != "linux", reason="gloo collectives between local processes: Linux"),
]


def start(args, cwds=(ROOT, ROOT)):
  """Processes 0 and 1 of a job running ``jaxvae *args``."""
  port = free_port()
  return [
    subprocess.Popen(
      [sys.executable, "-m", "jaxvae", *args],
      cwd=cwd,
      env=job_env(2, i, port),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i, cwd in enumerate(cwds)
  ]


def finish(procs, timeout=300):
  """Each process's ``(returncode, stderr lines)``, JAX's own log lines aside."""
  out = []
  for p in procs:
    _, err = p.communicate(timeout=timeout)
    out.append((p.returncode, [line for line in err.splitlines() if line.startswith("jaxvae")]))
  return out


def rows_of(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in f]


def wait_for_rows(workdir, n, procs, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline and all(p.poll() is None for p in procs):
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")) and len(rows_of(workdir)) >= n:
      return
    time.sleep(0.02)
  raise AssertionError(f"no {n} rows in {workdir}: {finish(procs)}")


def params_of(workdir, epoch=None):
  import orbax.checkpoint as ocp

  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints")) as m:
    return m.restore(epoch or m.latest_step(), args=ocp.args.StandardRestore())["state"]["params"]


def max_difference(a, b):
  return max(
    float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def test_data_parallel_over_two_processes_trains_as_one_process_stops_together_and_resumes_bit_identically(tmp_path):
  """Straight 2-process run = one process (float32 rounding), written by process 0 only; SIGTERM + resume = straight."""
  args = ["train", "--data-parallel", "--epochs", "3", "--n-train", "2560", *SMALL]
  (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
  # Process 1 runs in another folder: the relative --workdir shows whatever it writes.
  assert finish(start([*args, "--workdir", "W"], cwds=(tmp_path / "a", tmp_path / "b")))[0][0] == 0
  assert list((tmp_path / "b").iterdir()) == []
  straight = str(tmp_path / "a" / "W")

  # One process with one device: the same parameters up to the order of the gradient sums.
  with open(os.path.join(straight, "config.json")) as f:
    config = Config.from_dict(json.load(f))
  train_and_evaluate(config, str(tmp_path / "one"), progress=False, verbose=False)
  assert max_difference(params_of(straight), params_of(tmp_path / "one")) < 2e-5
  for r2, r1 in zip(rows_of(straight), rows_of(tmp_path / "one")):
    assert r2["test_elbo"] == pytest.approx(r1["test_elbo"], abs=1e-3)
  # One process with two devices sums in the same order: bit for bit.
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  two_devices = str(tmp_path / "two-devices")
  subprocess.run(
    [sys.executable, "-m", "jaxvae", *args, "--workdir", two_devices],
    env=env,
    cwd=ROOT,
    check=True,
    capture_output=True,
  )
  assert max_difference(params_of(straight), params_of(two_devices)) == 0.0
  assert rows_of(straight) == rows_of(two_devices)

  stopped = str(tmp_path / "stopped")
  procs = start([*args, "--workdir", stopped])
  wait_for_rows(stopped, 1, procs)
  procs[1].send_signal(signal.SIGTERM)  # one process: both stop after the epoch in flight
  (rc0, err0), (rc1, err1) = finish(procs)
  assert rc0 == rc1 == 143 and len(err0) == 1 and "resume with" in err0[0] and err1 == [], (err0, err1)
  done = len(rows_of(stopped))
  assert done < 3 and sorted(os.listdir(os.path.join(stopped, "checkpoints"))) == [str(e) for e in range(1, done + 1)]

  from jaxvae.tools.cli import main

  assert main(["launch", "-n", "2", "train", "--resume", stopped, "--data-parallel", "--no-progress"]) == 0
  assert rows_of(stopped) == rows_of(straight)
  assert max_difference(params_of(stopped), params_of(straight)) == 0.0


def test_a_sweep_over_two_processes_equals_the_one_process_sweep(tmp_path):
  from jaxvae.tools.cli import main

  common = ["--epochs", "2", "--n-train", "1000", *SMALL]
  assert main(["launch", "-n", "2", "sweep", "--grid", "seed=0,1,2", *common, "--workdir", str(tmp_path / "two")]) == 0
  configs = [Config(hidden=(64,), latent_dim=8, n_test=200, epochs=2, n_train=1000, seed=s) for s in (0, 1, 2)]
  run_sweep(configs, str(tmp_path / "one"), progress=False, verbose=False)
  for s in (0, 1, 2):
    two, one = tmp_path / "two" / "models" / f"seed={s}", tmp_path / "one" / "models" / f"seed={s}"
    assert max_difference(params_of(two), params_of(one)) < 2e-5
    assert [r["test_elbo"] for r in rows_of(two)] == pytest.approx([r["test_elbo"] for r in rows_of(one)], abs=1e-3)


@pytest.mark.parametrize("killed", [1, 0])
def test_sigkill_to_one_process_ends_the_other_at_once_with_one_line(tmp_path, killed):
  """The survivor's collective fails when its peer's sockets close: exit 4 within seconds, not a hang."""
  workdir = str(tmp_path / "W")
  procs = start(["train", "--data-parallel", "--epochs", "20", "--n-train", "4000", *SMALL, "--workdir", workdir])
  wait_for_rows(workdir, 1, procs)
  procs[killed].kill()
  t0 = time.time()
  survivor = procs[1 - killed]
  _, err = survivor.communicate(timeout=120)
  seconds = time.time() - t0
  ours = [line for line in err.splitlines() if line.startswith("jaxvae")]
  assert seconds < 10, seconds
  if killed == 1:
    assert survivor.returncode == 4 and len(ours) == 1 and "process 0 of 2 lost the job" in ours[0], err[-2000:]
  else:  # the coordinator died: JAX's runtime may log (and abort: 134) before jaxvae's line
    assert survivor.returncode in (4, 134), err[-2000:]
