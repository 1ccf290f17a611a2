"""A fault soak: a run killed with SIGKILL at random moments, resumed after each kill.

  python benchmarks/faults.py [--kills 20] [--epochs 8] [--seed 0] [--out FOLDER]

A straight run of the same config gives the reference. The soaked run is started, killed
with SIGKILL at a moment drawn uniformly over the straight run's wall time (starting up,
in an epoch, writing a checkpoint, in the final evaluation), and restarted each time, with
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
import time

import jax
import numpy as np

TIMING = ("images_per_sec", "seconds")


def command(args: list[str]) -> list[str]:
  return [sys.executable, "-m", "jaxvae.cli", "train", *args, "--no-progress"]


def rows(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f if line.endswith("\n")]


def phase(workdir: str, epochs: int) -> str:
  """What the folder shows at the moment of a kill."""
  if not os.path.exists(os.path.join(workdir, "config.json")):
    return "starting (no config.json yet)"
  ckpts = os.path.join(workdir, "checkpoints")
  names = os.listdir(ckpts) if os.path.isdir(ckpts) else []
  if any("tmp" in n for n in names):
    return "writing a checkpoint"
  done = len(rows(workdir))
  if done == epochs:
    return "final evaluation (all epochs done, no summary yet)" if not os.path.exists(os.path.join(workdir, "summary.json")) else "finished"
  return f"epoch {done + 1} (or starting up)"


def params(workdir: str):
  import orbax.checkpoint as ocp

  with ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints")) as m:
    return m.restore(m.latest_step(), args=ocp.args.StandardRestore())["state"]["params"]


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--kills", type=int, default=20)
  ap.add_argument("--epochs", type=int, default=8)
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

  t0 = time.perf_counter()
  subprocess.run(command([*flags, "--workdir", straight]), check=True, capture_output=True)
  wall = time.perf_counter() - t0
  print(f"straight run: {wall:.1f} s; kills at moments uniform in [0, {wall:.1f}] s of each start", flush=True)

  rng = random.Random(args.seed)
  kills, starts = [], 0
  for i in range(args.kills):
    resume = os.path.exists(os.path.join(soaked, "config.json"))
    proc = subprocess.Popen(command(["--resume", soaked] if resume else [*flags, "--workdir", soaked]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    starts += 1
    at = rng.uniform(0, wall)
    try:
      proc.wait(timeout=at)
    except subprocess.TimeoutExpired:
      where = phase(soaked, args.epochs)
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      kills.append({"kill": len(kills) + 1, "after_seconds": round(at, 2), "phase": where, "rows": len(rows(soaked))})
      print(f"kill {len(kills):2d} after {at:5.2f} s: {where}; {len(rows(soaked))} rows on disk", flush=True)
      continue
    err = proc.stderr.read()
    if proc.returncode != 0:
      print(f"start {starts} exited {proc.returncode} before its kill: {err.strip()[-400:]}", flush=True)
      return 1
    print(f"start {starts} finished the run before its kill moment ({at:.2f} s)", flush=True)
    break

  while True:  # run to the end
    resume = os.path.exists(os.path.join(soaked, "config.json"))
    proc = subprocess.run(command(["--resume", soaked] if resume else [*flags, "--workdir", soaked]),
                          capture_output=True, text=True)  # fmt: skip
    starts += 1
    if proc.returncode == 0 or "is complete" in proc.stderr:
      break
    print(f"final start exited {proc.returncode}: {proc.stderr.strip()[-400:]}", flush=True)
    return 1

  same_rows = rows(soaked) == rows(straight)
  diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
             zip(jax.tree.leaves(params(soaked)), jax.tree.leaves(params(straight))))  # fmt: skip
  with open(os.path.join(soaked, "summary.json")) as f:
    completed = json.load(f)["completed"]
  phases = dict(collections.Counter("in an epoch" if k["phase"].startswith("epoch") else k["phase"].split(" (")[0]
                                    for k in kills))  # fmt: skip
  result = {"kills": len(kills), "starts": starts, "phases": phases, "metrics_equal": same_rows,
            "max_param_difference": diff, "completed": completed, "straight_seconds": wall, "kill_log": kills}  # fmt: skip
  with open(os.path.join(out, "faults.json"), "w") as f:
    json.dump(result, f, indent=2)
  print(f"survived {len(kills)} SIGKILLs in {starts} starts; kills by phase: {phases}")
  print(f"final metrics.jsonl equal to the straight run's (timing aside): {same_rows}; "
        f"max |parameter difference| {diff:.3g}; summary completed: {completed}; written to {out}/faults.json")
  return 0 if same_rows and diff == 0 and completed else 1


if __name__ == "__main__":
  sys.exit(main())
