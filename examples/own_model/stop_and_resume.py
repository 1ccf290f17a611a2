"""my_models.py through the whole machinery: train, stop with SIGTERM, resume, evaluate, sweep.

  python examples/own_model/stop_and_resume.py [--epochs 6] [--n-train N] [--model F.py:FN] [--workdir W]

Runs ``jaxvae`` as a user would, in separate processes: a straight run ``A``; a run ``B``
stopped by SIGTERM during its third epoch and continued with ``jaxvae train --resume B``;
``jaxvae eval`` of the resumed run; and a two-model ``jaxvae sweep`` over seeds. Prints whether B's
metrics.jsonl equals A's (the timing fields aside) and exits with status 1 if not.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "my_models.py") + ":make_vae"
TIMING = ("images_per_sec", "seconds")


def jaxvae(*args):
  return subprocess.Popen(
    [sys.executable, "-m", "jaxvae", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )


def rows(folder):
  path = os.path.join(folder, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f if line.strip()]


def finish(proc, what, expected=0):
  out, err = proc.communicate(timeout=3600)
  if proc.returncode != expected:
    sys.exit(f"{what} exited with {proc.returncode}:\n{err[-2000:]}")
  return out, err


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--epochs", type=int, default=6)
  parser.add_argument("--model", default=MODEL, help="the model factory, FILE.py:FUNCTION (default: my_models.py's)")
  parser.add_argument("--n-train", type=int, default=60000)
  parser.add_argument("--n-test", type=int, default=10000)
  parser.add_argument("--k", type=int, default=1000, help="importance samples per test image in jaxvae eval")
  parser.add_argument("--workdir", default="runs/own_model")
  args = parser.parse_args(argv)
  run = [
    "--model",
    args.model,
    "--epochs",
    str(args.epochs),
    "--n-train",
    str(args.n_train),
    "--n-test",
    str(args.n_test),
    "--no-progress",
  ]
  a, b = os.path.join(args.workdir, "A"), os.path.join(args.workdir, "B")

  t0 = time.perf_counter()
  finish(jaxvae("train", *run, "--workdir", a), "jaxvae train (A)")
  print(f"A: {args.epochs} epochs straight, {time.perf_counter() - t0:.1f} s")

  proc = jaxvae("train", *run, "--workdir", b)
  while len(rows(b)) < 2 and proc.poll() is None:  # the third epoch is under way
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  _, err = finish(proc, "jaxvae train (B)", expected=128 + signal.SIGTERM)
  print(f"B: {err.strip()}")
  finish(jaxvae("train", "--resume", b, "--no-progress"), "jaxvae train --resume (B)")
  same = rows(a) == rows(b)
  print(
    f"B resumed to epoch {rows(b)[-1]['epoch']}: metrics.jsonl {'equals' if same else 'DIFFERS FROM'} A's "
    f"({len(rows(a))} rows, timing fields aside)"
  )

  out, _ = finish(jaxvae("eval", "--workdir", b, "--k", str(args.k), "--no-progress"), "jaxvae eval (B)")
  print(out.strip())
  out, _ = finish(
    jaxvae("sweep", *run, "--epochs", "1", "--grid", "seed=0,1", "--workdir", os.path.join(args.workdir, "sweep")),
    "jaxvae sweep",
  )
  print(out.strip().splitlines()[-1])
  if not same:
    sys.exit(1)


if __name__ == "__main__":
  main()
