"""What TensorBoard logging costs a run: paired runs with and without the writer.

  python benchmarks/logging_cost.py [--rounds 3] [--epochs 10] [--n-train 30000]

Each round trains the same config twice in this process, once with `jaxvae.tensorboard()`
(scalars every epoch, images every 5 epochs and at the last) and once without, in alternating
order, and times everything after the compile: the epochs, the evaluations, the rows and the
writer. The wall-time ratio of a pair carries the host's drift (several percent here), so the
script also clocks the time spent inside the writer's calls, which is the cost itself. Prints
each round and the medians, and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time

import jaxvae
from jaxvae.config import Config
from jaxvae.data import load_mnist
from jaxvae.run import train_and_evaluate


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


def timed(config, data, workdir, callbacks) -> float:
  """Seconds from the first epoch's start to the end of the run (compile and set-up excluded)."""
  marks = {}
  first = jaxvae.Callback(start=lambda run: marks.setdefault("start", time.perf_counter()))
  summary = train_and_evaluate(config, workdir, data=data, progress=False, verbose=False, callbacks=[first, *callbacks])
  return time.perf_counter() - marks["start"] - summary["compile_seconds"]


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--epochs", type=int, default=10)
  ap.add_argument("--n-train", type=int, default=30000)
  args = ap.parse_args()
  config = Config(epochs=args.epochs, n_train=args.n_train, n_test=2000)
  data = load_mnist()
  folder = tempfile.mkdtemp(prefix="jaxvae-logging-cost-")
  timed(config.replace(epochs=1), data, f"{folder}/warm", [jaxvae.tensorboard()])  # imports, caches
  ratios, shares = [], []
  for r in range(args.rounds):
    seconds, spent = {}, []
    for with_tb in ((True, False) if r % 2 == 0 else (False, True)):
      callbacks = [clocked(jaxvae.tensorboard(), spent)] if with_tb else []
      seconds[with_tb] = timed(config, data, f"{folder}/{r}-{with_tb}", callbacks)
    ratios.append(seconds[True] / seconds[False])
    shares.append(sum(spent) / seconds[True])
    print(f"round {r + 1}: {seconds[True]:.2f} s with TensorBoard ({sum(spent):.3f} s inside the writer: "
          f"{shares[-1] * 100:.2f}%), {seconds[False]:.2f} s without: ratio {ratios[-1]:.4f}", flush=True)  # fmt: skip
  cost = (statistics.median(ratios) - 1) * 100
  inside = statistics.median(shares) * 100
  print(f"TensorBoard: {inside:.2f}% of the run time is spent inside the writer (median of {args.rounds} runs); "
        f"the paired wall-time ratio says {cost:+.2f}% (host noise included)")  # fmt: skip
  print(json.dumps({"writer_percent": round(inside, 3), "ratios": [round(x, 4) for x in ratios],
                    "paired_cost_percent": round(cost, 2), "epochs": args.epochs, "n_train": args.n_train}))  # fmt: skip
  shutil.rmtree(folder, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
