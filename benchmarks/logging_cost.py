"""What logging costs a run: the same run with no writer, with TensorBoard, and with TensorBoard and W&B.

  python benchmarks/logging_cost.py [--rounds 12] [--epochs 10] [--n-train 30000] [--no-wandb]

Each round trains the same config once per arm in this process, the arms' order rotated from
round to round (so a drift of the host's speed falls on every arm alike), and times everything
after the compile: the epochs, the evaluations, the rows and the writers. The arms:

* ``none``: no callback;
* ``tensorboard``: ``jaxvae.tensorboard()`` (the CLI's default: every ``metrics.jsonl`` value
  per epoch, images every 5 epochs and at the last);
* ``tensorboard+wandb``: and ``jaxvae.wandb()`` in W&B's offline mode (its files in the run
  folder; W&B's ``wandb-core`` process works beside the run on the same cores).

Prints each round, then per arm the median over rounds of its time over the same round's
``none`` time with a bootstrap 95% interval of that median, for the wall time and for the CPU
time of this process and its children (W&B's service) from the first epoch's row to the end
(less blurred by other tenants of a shared host), and the share of the run spent inside the
writers' own calls; then a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

import jaxvae
from jaxvae.runs.config import Config
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.sources import load_mnist


def clocked(callback: jaxvae.Callback, spent: list[float]) -> jaxvae.Callback:
  """The callback, adding the seconds spent in each of its calls to ``spent``."""

  def wrap(fn):
    if fn is None:
      return None

    def call(*args):
      t0 = time.perf_counter()
      fn(*args)
      spent.append(time.perf_counter() - t0)

    return call

  return jaxvae.Callback(*(wrap(fn) for fn in callback))


def cpu_seconds() -> float:
  """CPU seconds (user + system) used so far by this process and the processes it started (W&B's)."""
  import psutil

  total = 0.0
  me = psutil.Process()
  for process in [me, *me.children(recursive=True)]:
    try:
      times = process.cpu_times()
      total += times.user + times.system
    except psutil.Error:
      pass
  return total


def timed(config, data, workdir, callbacks) -> tuple[float, float]:
  """Wall seconds from the first epoch's start to the end of the run (compile and set-up excluded),
  and the CPU seconds from the first epoch's row to the end (all processes: see :func:`cpu_seconds`)."""
  marks = {}
  first = jaxvae.Callback(
    start=lambda run: marks.setdefault("start", time.perf_counter()),
    epoch=lambda run, row: marks.setdefault("cpu", cpu_seconds()),
  )
  summary = train_and_evaluate(config, workdir, data=data, progress=False, verbose=False, callbacks=[first, *callbacks])
  return time.perf_counter() - marks["start"] - summary["compile_seconds"], cpu_seconds() - marks["cpu"]


def writers(arm: str) -> list[jaxvae.Callback]:
  return {
    "none": [],
    "tensorboard": [jaxvae.tensorboard()],
    "tensorboard+wandb": [jaxvae.tensorboard(), jaxvae.wandb(project="logging-cost")],
  }[arm]


def median_interval(values: list[float], seed: int = 0, draws: int = 10000) -> tuple[float, float]:
  """A bootstrap 95% interval of the median of ``values``."""
  rng = np.random.default_rng(seed)
  medians = np.median(rng.choice(values, size=(draws, len(values))), axis=1)
  return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--rounds", type=int, default=12)
  ap.add_argument("--epochs", type=int, default=10)
  ap.add_argument("--n-train", type=int, default=30000)
  ap.add_argument("--no-wandb", action="store_true", help="leave out the tensorboard+wandb arm")
  args = ap.parse_args()
  os.environ.setdefault("WANDB_MODE", "offline")
  os.environ.setdefault("WANDB_SILENT", "true")
  arms = ["none", "tensorboard"] + ([] if args.no_wandb else ["tensorboard+wandb"])
  config = Config(epochs=args.epochs, n_train=args.n_train, n_test=2000)
  data = load_mnist()
  folder = tempfile.mkdtemp(prefix="jaxvae-logging-cost-")
  for arm in arms:  # imports, caches, W&B's service
    timed(config.replace(epochs=1), data, f"{folder}/warm-{arm}", writers(arm))
  seconds = {arm: [] for arm in arms}
  cpu = {arm: [] for arm in arms}
  shares = {arm: [] for arm in arms[1:]}
  for r in range(args.rounds):
    for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:
      spent: list[float] = []
      wall, used = timed(config, data, f"{folder}/{r}-{arm}", [clocked(w, spent) for w in writers(arm)])
      seconds[arm].append(wall)
      cpu[arm].append(used)
      if arm != "none":
        shares[arm].append(sum(spent) / wall)
    print(
      f"round {r + 1}: " + ", ".join(f"{arm} {seconds[arm][-1]:.2f} s ({cpu[arm][-1]:.2f} CPU s)" for arm in arms),
      flush=True,
    )
  result = {"rounds": args.rounds, "epochs": args.epochs, "n_train": args.n_train}

  def percent(x):
    return (x - 1) * 100

  for arm in arms[1:]:
    result[arm] = {"inside_percent": round(statistics.median(shares[arm]) * 100, 3)}
    for what, values in (("wall", seconds), ("cpu", cpu)):
      ratios = [w / n for w, n in zip(values[arm], values["none"])]
      low, high = median_interval(ratios)
      result[arm][what] = {
        "cost_percent": round(percent(statistics.median(ratios)), 2),
        "interval_percent": [round(percent(low), 2), round(percent(high), 2)],
        "ratios": [round(x, 4) for x in ratios],
      }
    w, c = result[arm]["wall"], result[arm]["cpu"]
    print(
      f"{arm}: wall time {w['cost_percent']:+.2f}% against none (median of {args.rounds} paired ratios, 95% "
      f"interval {w['interval_percent'][0]:+.2f}% .. {w['interval_percent'][1]:+.2f}%); CPU time "
      f"{c['cost_percent']:+.2f}% ({c['interval_percent'][0]:+.2f}% .. {c['interval_percent'][1]:+.2f}%); "
      f"{result[arm]['inside_percent']:.2f}% of the run inside the writers' calls"
    )
  print(json.dumps(result))
  shutil.rmtree(folder, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
