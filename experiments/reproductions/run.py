"""The CPU-budget rows of the reproduction table: Gaussian q against IAF q, burda2 against the ladder.

  python experiments/reproductions/run.py --workdir runs/reproductions            # all rows
  python experiments/reproductions/run.py --workdir runs/reproductions --rows iaf  # some rows

Every row trains for the same number of epochs (``--epochs``, 30) at batch 100 with Adam (lr 1e-3),
on dynamically binarized MNIST, seed 0, then is evaluated with ``jaxvae eval --k 5000`` on all 10,000
test images (log p(x) with its standard errors), and the two one-layer rows with ``jaxvae gaps`` on
the first 1,000 test images. The pairs differ in one thing each:

* ``gaussian`` / ``iaf``: burda1's networks (784-200-200-50, tanh), q_phi(z|x) a diagonal Gaussian or
  that Gaussian followed by 2 IAF steps (MADE 320-320, context from the encoder);
* ``burda2`` / ``ladder``: Burda et al.'s two-layer model against the 5-layer Ladder VAE of Sønderby
  et al. (64-32-16-8-4), both with the KL weight warmed up over the first 10 epochs. The ladder
  skips updates whose gradient norm exceeds 500 (its median is about 50): without it, one update in
  epoch 12 (gradient norm 1.7 million) sent the fourth layer's KL to 1436 nats and the parameters
  to NaN.

Each row is ``experiments/cells.py``'s train-then-evaluate into ``--workdir/<row>``: an interrupted
table continues where it stopped. The table goes to ``--workdir/results.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cells import train_then_evaluate

from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import inference_gaps

COMMON = dict(batch_size=100, lr=1e-3, adam_eps=1e-4, seed=0)
ROWS = {
  "gaussian": dict(model="burda1"),
  "iaf": dict(model="burda1", posterior="iaf", flow_steps=2, flow_hidden=(320, 320)),
  "burda2": dict(model="burda2", warmup_epochs=10.0),
  "ladder": dict(model="ladder", warmup_epochs=10.0, skip_grad_norm=500.0),
}
GAPS = ("gaussian", "iaf")


def command(row: str, epochs: int, folder: str) -> str:
  flags = {**COMMON, **ROWS[row], "epochs": epochs}
  text = " ".join(
    f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in flags.items()
  )
  return f"jaxvae train {text} --workdir {folder} && jaxvae eval --workdir {folder} --k 5000"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/reproductions")
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--rows", default=",".join(ROWS))
  args = parser.parse_args(argv)
  results = {}
  path = os.path.join(args.workdir, "results.json")
  if os.path.exists(path):
    with open(path) as f:
      results = json.load(f)
  for row in args.rows.split(","):
    folder = os.path.join(args.workdir, row)
    config = Config(**COMMON, **ROWS[row], epochs=args.epochs)
    t0 = time.perf_counter()
    summary, evaluation = train_then_evaluate(config, folder, k=5000)
    out = {
      "command": command(row, args.epochs, folder),
      "summary": summary,
      "eval": evaluation,
      "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
    }
    if row in GAPS:
      gaps_path = os.path.join(folder, "gaps.json")
      if not os.path.exists(gaps_path):
        print(f"== {folder}: inference gaps", flush=True)
        inference_gaps(folder, n_test=1000, k=5000, progress=False)
      with open(gaps_path) as f:
        out["gaps"] = json.load(f)
      out["command"] += f" && jaxvae gaps --workdir {folder}"
    out["wall_seconds_this_call"] = time.perf_counter() - t0
    results[row] = out
    os.makedirs(args.workdir, exist_ok=True)
    with open(path, "w") as f:
      json.dump(results, f, indent=2)
    e = evaluation
    print(
      f"{row}: log p(x) {e['test_log_px']:.2f} +- {e['test_log_px_se']:.2f}, ELBO {e['test_elbo']:.2f}, "
      f"active {e['active_units_per_layer']}",
      flush=True,
    )


if __name__ == "__main__":
  main()
