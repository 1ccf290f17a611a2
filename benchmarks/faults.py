"""A fault soak: a run killed with SIGKILL at random moments, resumed after each kill.

  python benchmarks/faults.py [--kills 20] [--epochs 40] [--window-epochs 4] [--seed 0] [--out FOLDER]

A straight run of the same config gives the reference. The soaked run is started, killed
with SIGKILL at a random moment (every fourth kill uniform over the straight run's start-up, the
others uniform over a few epochs after the start's compile line: in an epoch, writing a
checkpoint, in the final evaluation), and restarted each time, with
`jaxvae train --resume W` once the folder has a config.json and with the first command
before. After the last kill it runs to the end. The script prints each kill (when, and what
the folder showed at that moment), and whether the final `metrics.jsonl` (timing fields
aside) and parameters equal the straight run's; the exit status is 0 only if they do.
Results go to FOLDER/faults.json; the figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import jax
import numpy as np

from jaxvae.runs.folder import read_metrics
from jaxvae.runs.records import TIMING_KEYS


def command(args: list[str]) -> list[str]:
  return [sys.executable, "-m", "jaxvae", "train", *args, "--no-progress"]


def rows(workdir: str) -> list[dict]:
  """The folder's rows, timing fields aside (a line cut off by a kill is dropped, as a resume drops it)."""
  return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in read_metrics(workdir)]


def phase(workdir: str, epochs: int, started: bool, since: float) -> str:
  """Where a start was when it was killed: its output (``started``: it printed its compile line) and its folder."""
  if not os.path.exists(os.path.join(workdir, "config.json")):
    return "starting up (no config.json yet)"
  if not started:
    return "starting up (loading, restoring, compiling)"
  ckpts = os.path.join(workdir, "checkpoints")
  names = os.listdir(ckpts) if os.path.isdir(ckpts) else []
  if any("tmp" in n and os.path.getmtime(os.path.join(ckpts, n)) >= since for n in names):
    return "writing a checkpoint"  # a temporary checkpoint folder made by this start (older ones are left by kills)
  done = len(rows(workdir))
  if done == epochs:
    return (
      "final evaluation (all epochs done, no summary yet)"
      if not os.path.exists(os.path.join(workdir, "summary.json"))
      else "finished"
    )
  return f"epoch {done + 1}"


def params(workdir: str):
  import orbax.checkpoint as ocp

  with ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints")) as m:
    return m.restore(m.latest_step(), args=ocp.args.StandardRestore())["state"]["params"]


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--kills", type=int, default=20)
  ap.add_argument("--epochs", type=int, default=40)
  ap.add_argument(
    "--window-epochs", type=float, default=4, help="kills after the compile line land in this many epochs (default 4)"
  )
  ap.add_argument("--n-train", type=int, default=6000)
  ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
  ap.add_argument("--out", help="folder for the two runs and faults.json (default: a temporary folder)")
  args = ap.parse_args()
  out = args.out or tempfile.mkdtemp(prefix="jaxvae-faults-")
  os.makedirs(out, exist_ok=True)
  straight, soaked = os.path.join(out, "straight"), os.path.join(out, "soaked")
  for w in (straight, soaked):
    shutil.rmtree(w, ignore_errors=True)
  flags = ["--epochs", str(args.epochs), "--n-train", str(args.n_train), "--n-test", "1000", "--checkpoint-every", "1"]

  # The straight run, timed: its start-up (to the first row) and its epochs set the kill window.
  t0 = time.perf_counter()
  proc = subprocess.Popen(command([*flags, "--workdir", straight]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  seen = {}
  while proc.poll() is None:
    seen.setdefault(len(rows(straight)), time.perf_counter() - t0)
    time.sleep(0.005)
  assert proc.returncode == 0, proc.stderr.read()
  first, last = seen[1], seen.get(args.epochs, time.perf_counter() - t0)
  per_epoch = (last - first) / max(args.epochs - 1, 1)
  window = args.window_epochs * per_epoch
  print(
    f"straight run: {time.perf_counter() - t0:.1f} s, first row after {first:.1f} s, {per_epoch:.2f} s per epoch; "
    f"kills uniform in [0, {first:.1f}] s after a start (every 4th) or in [0, {window:.1f}] s after its compile line",
    flush=True,
  )

  rng = random.Random(args.seed)
  kills, starts = [], 0
  for i in range(args.kills):
    resume = os.path.exists(os.path.join(soaked, "config.json"))
    proc = subprocess.Popen(
      command(["--resume", soaked] if resume else [*flags, "--workdir", soaked]),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    compiled = threading.Event()

    def watch(p=proc, compiled=compiled):
      for line in p.stdout:
        if "compiled in" in line:
          compiled.set()

    threading.Thread(target=watch, daemon=True).start()
    starts += 1
    since = time.time()
    # Every fourth kill (the first among them) lands in the start-up; the others in the epochs after the compile line.
    in_startup = i % 4 == 0  # the first: before config.json, or a claim without one
    at = rng.uniform(0, first) if in_startup else rng.uniform(0, window)
    try:
      if not in_startup:
        while not compiled.wait(0.01):
          if proc.poll() is not None:
            break
      proc.wait(timeout=at)
    except subprocess.TimeoutExpired:
      where = phase(soaked, args.epochs, started=compiled.is_set(), since=since)
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      kills.append(
        {
          "kill": len(kills) + 1,
          "after_seconds": round(at, 2),
          "clock": "start" if in_startup else "compile line",
          "phase": where,
          "rows": len(rows(soaked)),
        }
      )
      print(
        f"kill {len(kills):2d} {at:5.2f} s after its {'start' if in_startup else 'compile line'}: {where}; "
        f"{len(rows(soaked))} rows on disk",
        flush=True,
      )
      continue
    err = proc.stderr.read()
    if proc.returncode != 0:
      print(f"start {starts} exited {proc.returncode} before its kill: {err.strip()[-400:]}", flush=True)
      return 1
    print(
      f"start {starts} finished the run before its kill moment ({at:.2f} s): raise --epochs for more kills", flush=True
    )
    break

  while True:  # run to the end
    resume = os.path.exists(os.path.join(soaked, "config.json"))
    proc = subprocess.run(
      command(["--resume", soaked] if resume else [*flags, "--workdir", soaked]), capture_output=True, text=True
    )
    starts += 1
    if proc.returncode == 0 or "is complete" in proc.stderr:
      break
    print(f"final start exited {proc.returncode}: {proc.stderr.strip()[-400:]}", flush=True)
    return 1

  same_rows = rows(soaked) == rows(straight)
  diff = max(
    float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    for a, b in zip(jax.tree.leaves(params(soaked)), jax.tree.leaves(params(straight)))
  )
  with open(os.path.join(soaked, "summary.json")) as f:
    completed = json.load(f)["completed"]
  phases = dict(collections.Counter("in an epoch" if k["phase"].startswith("epoch") else k["phase"] for k in kills))
  result = {
    "kills": len(kills),
    "starts": starts,
    "phases": phases,
    "metrics_equal": same_rows,
    "max_param_difference": diff,
    "completed": completed,
    "startup_seconds": first,
    "seconds_per_epoch": per_epoch,
    "kill_log": kills,
  }
  with open(os.path.join(out, "faults.json"), "w") as f:
    json.dump(result, f, indent=2)
  print(f"survived {len(kills)} SIGKILLs in {starts} starts; kills by phase: {phases}")
  print(
    f"final metrics.jsonl equal to the straight run's (timing aside): {same_rows}; "
    f"max |parameter difference| {diff:.3g}; summary completed: {completed}; written to {out}/faults.json"
  )
  return 0 if same_rows and diff == 0 and completed else 1


if __name__ == "__main__":
  sys.exit(main())
