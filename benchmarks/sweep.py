"""A vmapped sweep against the same models trained one by one, as a user would run them.

  python benchmarks/sweep.py [--quick] [--rounds 2] [--device gpu]

The 16 configs: beta in {0.5, 1, 2, 4} x seed in {0, 1, 2, 3}, the default 784-400-20 MLP VAE,
batch 128, 3 epochs (1 with --quick) on MNIST. Each round runs, as separate processes:

  A. one `jaxvae sweep --grid beta=0.5,1,2,4 --grid seed=0,1,2,3`: the 16 models as stacked
     states, vmapped (4 models per program on a CPU);
  B. 16 `jaxvae train --beta B --seed S` runs, one after the other.

Both write their run folders as users get them (per-epoch test ELBO, checkpoints, figures).
Reported, for both: the steady-state aggregate images/s (training epochs only: compilation,
evaluation and start-up excluded; from sweep.json and summary.json) and the end-to-end wall
time of the processes (start-up, data loading and compilation included), and the ratios
A / B. The rounds alternate A B A B; figures are medians. The last line is one JSON object.

``--device gpu`` runs the sweep alone with 16, 64 and 256 models (all in one program) and
one `jaxvae train` as the baseline, reporting the aggregate images/s of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BETAS, SEEDS = (0.5, 1, 2, 4), (0, 1, 2, 3)


def jaxvae(*args: str) -> float:
  """Runs the jaxvae CLI in a fresh process; returns its wall time in seconds."""
  t0 = time.perf_counter()
  subprocess.run(
    [sys.executable, "-m", "jaxvae", *args, "--no-progress"],
    check=True,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
  )
  return time.perf_counter() - t0


def run_sweep(folder: str, epochs: int, seeds=SEEDS, extra=()) -> dict:
  wall = jaxvae(
    "sweep",
    "--grid",
    "beta=" + ",".join(map(str, BETAS)),
    "--grid",
    "seed=" + ",".join(map(str, seeds)),
    "--epochs",
    str(epochs),
    "--workdir",
    folder,
    *extra,
  )
  with open(os.path.join(folder, "sweep.json")) as f:
    groups = json.load(f)["groups"]
  images = sum(g["images_per_sec"] * g["train_seconds"] for g in groups)
  return {
    "wall": wall,
    "steady": images / sum(g["train_seconds"] for g in groups),
    "compile": sum(g["compile_seconds"] for g in groups),
  }


def run_sequential(folder: str, epochs: int) -> dict:
  wall, images, seconds = 0.0, 0, 0.0
  for beta in BETAS:
    for seed in SEEDS:
      run = os.path.join(folder, f"beta{beta}_seed{seed}")
      wall += jaxvae("train", "--beta", str(beta), "--seed", str(seed), "--epochs", str(epochs), "--workdir", run)
      with open(os.path.join(run, "summary.json")) as f:
        s = json.load(f)
      images += s["images_per_sec"] * s["seconds_per_epoch"] * s["epochs"]
      seconds += s["seconds_per_epoch"] * s["epochs"]
  return {"wall": wall, "steady": images / seconds}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="1 epoch, 1 round (a few minutes on 2 cores)")
  parser.add_argument("--rounds", type=int, help="alternating rounds (default 2; 1 with --quick)")
  parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
  args = parser.parse_args(argv)
  epochs = 1 if args.quick else 3
  rounds = args.rounds or (1 if args.quick else 2)
  tmp = tempfile.mkdtemp(prefix="jaxvae-sweep-bench-")

  if args.device == "gpu":
    base = os.path.join(tmp, "single")
    jaxvae("train", "--epochs", str(epochs), "--workdir", base)
    with open(os.path.join(base, "summary.json")) as f:
      single = json.load(f)["images_per_sec"]
    out = {"device": "gpu", "single_images_per_sec": round(single, 1)}
    for n in (16, 64, 256):
      seeds = tuple(range(n // len(BETAS)))
      r = run_sweep(os.path.join(tmp, f"sweep{n}"), epochs, seeds, ("--models-per-program", str(n)))
      print(
        f"{n:>4} models: {r['steady']:,.0f} images/s aggregate = {r['steady'] / single:.1f}x one model "
        f"({single:,.0f} images/s); wall {r['wall']:.1f} s, compile {r['compile']:.1f} s",
        flush=True,
      )
      out[f"sweep{n}_images_per_sec"] = round(r["steady"], 1)
      out[f"steady_ratio_{n}"] = round(r["steady"] / single, 3)
    out["steady_ratio"] = out["steady_ratio_16"]
    print(json.dumps(out))
    return

  print(
    f"16 models (beta {BETAS} x seed {SEEDS}), 784-400-20, batch 128, {epochs} epoch(s) each; "
    f"{rounds} round(s), A = one vmapped `jaxvae sweep`, B = 16 `jaxvae train` runs",
    flush=True,
  )
  a_runs, b_runs = [], []
  for r in range(rounds):
    a = run_sweep(os.path.join(tmp, f"A{r}"), epochs)
    print(
      f"round {r + 1} A sweep:      {a['steady']:>9,.0f} images/s steady, wall {a['wall']:6.1f} s "
      f"(compile {a['compile']:.1f} s)",
      flush=True,
    )
    b = run_sequential(os.path.join(tmp, f"B{r}"), epochs)
    print(f"round {r + 1} B sequential: {b['steady']:>9,.0f} images/s steady, wall {b['wall']:6.1f} s", flush=True)
    a_runs.append(a)
    b_runs.append(b)
  med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
  steady_ratio = statistics.median(a["steady"] / b["steady"] for a, b in zip(a_runs, b_runs))
  wall_ratio = statistics.median(b["wall"] / a["wall"] for a, b in zip(a_runs, b_runs))
  print(
    f"steady state: sweep {med(a_runs, 'steady'):,.0f} vs sequential {med(b_runs, 'steady'):,.0f} images/s "
    f"-> steady_ratio {steady_ratio:.3f}"
  )
  print(
    f"end to end: sweep {med(a_runs, 'wall'):.1f} s vs sequential {med(b_runs, 'wall'):.1f} s "
    f"-> wall_ratio (sequential / sweep) {wall_ratio:.2f}"
  )
  print(
    json.dumps(
      {
        "device": "cpu",
        "models": 16,
        "epochs": epochs,
        "rounds": rounds,
        "sweep_images_per_sec": round(med(a_runs, "steady"), 1),
        "sequential_images_per_sec": round(med(b_runs, "steady"), 1),
        "steady_ratio": round(steady_ratio, 3),
        "sweep_wall_seconds": round(med(a_runs, "wall"), 2),
        "sequential_wall_seconds": round(med(b_runs, "wall"), 2),
        "wall_ratio": round(wall_ratio, 3),
      }
    )
  )


if __name__ == "__main__":
  main()
