"""Priors p(z) at the same budget: N(0, I), a learned mixture of Gaussians, the VampPrior.

  python experiments/priors/run.py [--epochs 50] [--warmup-epochs 10] [--workdir runs/priors]

Burda et al.'s one-stochastic-layer model (784-200-200-50, tanh, Bernoulli, dynamically
binarized MNIST), Adam 1e-3, batch 100, the same number of epochs and the same linear KL
warm-up for every prior (Tomczak & Welling warm up for 100 epochs: without it the
VampPrior collapses q_phi within the first epoch), the KL estimated by Monte Carlo for all
three (the learned priors have no closed form; the same estimator keeps the comparison
fair). The VampPrior's pseudo-inputs start at 500 random training images. Evaluation: log p(x) by importance
sampling, k = 5000, on all 10,000 test images, with each prior's own log-density. Writes ``results.md`` here.

VampPrior: Tomczak & Welling, "VAE with a VampPrior", AISTATS 2018 (K = 500 pseudo-inputs).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/, for cells.py

from cells import train_then_evaluate

from jaxvae.runs.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
PRIORS = {"normal": "N(0, I)", "mog": "mixture of 10 Gaussians", "vamp": "VampPrior, 500 pseudo-inputs"}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--epochs", type=int, default=50)
  parser.add_argument("--warmup-epochs", type=float, default=10.0)
  parser.add_argument("--k", type=int, default=5000)
  parser.add_argument("--priors", default=",".join(PRIORS), help="which priors, in this order (default: all)")
  parser.add_argument("--workdir", default="runs/priors")
  parser.add_argument("--out", default=os.path.join(HERE, "results.md"))
  args = parser.parse_args(argv)
  rows = []
  chosen = args.priors.split(",")
  if not chosen or any(p not in PRIORS for p in chosen):
    parser.error(f"--priors takes a comma-separated list of {', '.join(PRIORS)}; got {args.priors!r}")
  for prior in chosen:
    name = PRIORS[prior]
    config = Config(
      model="burda1", prior=prior, kl="mc", batch_size=100, epochs=args.epochs, warmup_epochs=args.warmup_epochs
    )
    folder = os.path.join(args.workdir, f"{prior}-{args.epochs}-warmup{args.warmup_epochs:g}")
    summary, e = train_then_evaluate(config, folder, k=args.k)
    rows.append((prior, name, summary, e))
    write(rows, args)


def write(rows, args) -> None:
  base = next((e["test_log_px"] for p, _, _, e in rows if p == "normal"), None)
  lines = [
    f"# Priors at the same budget: Burda et al.'s 1-layer model, {args.epochs} epochs",
    "",
    f"Dynamically binarized MNIST; Adam 1e-3, batch 100, {args.epochs} epochs with a {args.warmup_epochs:g}-epoch "
    "linear KL warm-up, seed 0, Monte-Carlo KL for every prior; "
    f"log p(x) by importance sampling with k = {args.k} on all 10,000 test images (nats; ± is the standard error "
    "over test images).",
    "",
    "| prior p(z) | test log p(x) | vs N(0, I) | test ELBO | KL(q‖p(z)) | active units | train time | eval time |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for _, name, s, e in rows:
    delta = f"{e['test_log_px'] - base:+.2f}" if base is not None else ""
    lines.append(
      f"| {name} | {e['test_log_px']:.2f} ± {e['test_log_px_se']:.2f} | {delta} | {e['test_elbo']:.2f} | "
      f"{e['test_kl']:.2f} | {e['active_units']} | {s['seconds'] / 60:.1f} min | {e['seconds'] / 60:.1f} min |"
    )
  lines += [
    "",
    f"Rerun: `python experiments/priors/run.py --epochs {args.epochs} --warmup-epochs {args.warmup_epochs:g}`. "
    "References: Tomczak & Welling (2018) report "
    "-85.57 for the VampPrior on this data (an independent reproduction -85.79), after far longer training "
    "with warm-up. Why the warm-up and the training-image start of the pseudo-inputs: `README.md` here; "
    "longer runs on a GPU: `results_gpu.md`.",
    "",
  ]
  with open(args.out, "w") as f:
    f.write("\n".join(lines))


if __name__ == "__main__":
  main()
