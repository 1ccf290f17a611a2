"""Burda et al. (2016), Table 1: VAE and IWAE, one and two stochastic layers, k = 1, 5, 50.

  python experiments/iwae_table1/run.py --schedule paper   # the paper's protocol (3280 epochs per cell)
  python experiments/iwae_table1/run.py --schedule short   # a CPU-sized version (13 epochs per cell)
  python experiments/iwae_table1/run.py --schedule paper --together   # 6 vmapped programs, not 10 runs

Each cell of the table is a config in ``configs/`` (the model, the objective, k and the
paper's optimizer: Adam with eps 1e-4, lr 1e-3 * 10^(-i/7) for 3^i epochs). The schedule
adds the training length, the batch size and the evaluation:

  paper: batch 20, 3280 epochs (stages i = 0..7), log p(x) with k = 5000 on all 10,000 test images.
  short: batch 100, 13 epochs (stages i = 0..2 of the same learning-rate schedule),
         log p(x) with k = 5000 on the first 2,000 test images.

Every cell trains into ``--workdir/<cell>`` and is evaluated there by
``experiments/cells.py``'s ``train_then_evaluate`` (what `jaxvae train` and `jaxvae eval` run); a
cell already trained or evaluated is not run again, so an interrupted table continues where
it stopped. The k = 1 cells of VAE and IWAE are the same objective (the
single-sample ELBO), trained once. The table goes to ``results.md`` beside this file.

With ``--together``, the VAE and IWAE cells of one (layers, k) train as one vmapped program
(``jaxvae.run_sweep`` over the objective: the traced switch ``objectives.vae_or_iwae``) into
``--workdir/<schedule>/programs/burda<L>_k<k>``, and each model folder of the sweep is evaluated:
6 programs for the 12 cells, each model equal to its cell trained alone.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/, for cells.py

from cells import train_then_evaluate

from jaxvae.runs.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEDULES = {
  "paper": dict(epochs=3280, batch_size=20, eval_k=5000, eval_n_test=None),
  "short": dict(epochs=13, batch_size=100, eval_k=5000, eval_n_test=2000),
}


def load_cells() -> list[dict]:
  cells = []
  for path in sorted(glob.glob(os.path.join(HERE, "configs", "*.json"))):
    with open(path) as f:
      cell = json.load(f)
    cell["name"] = os.path.splitext(os.path.basename(path))[0]
    # The k = 1 IWAE bound is the single-sample ELBO: both cells share one run.
    cell["run"] = cell["name"].replace("_iwae_k1", "_vae_k1")
    cells.append(cell)
  return cells


def run_cell(cell: dict, schedule: dict, workdir: str, seed: int) -> dict:
  config = Config(**cell["config"], epochs=schedule["epochs"], batch_size=schedule["batch_size"], seed=seed)
  if cell["run"] != cell["name"]:
    config = config.replace(objective="vae")
  summary, evaluation = train_then_evaluate(
    config, os.path.join(workdir, cell["run"]), k=schedule["eval_k"], n_test=schedule["eval_n_test"]
  )
  return {"summary": summary, "eval": evaluation}


def run_program(cells: list[dict], schedule: dict, workdir: str, seed: int) -> dict[str, dict]:
  """The cells of one (layers, k) as one sweep over the objective, then each model evaluated."""
  from jaxvae.runs.evaluate import evaluate_run
  from jaxvae.runs.grid import model_name
  from jaxvae.runs.sweep import run_sweep

  trained = [c for c in cells if c["run"] == c["name"]]
  configs = [
    Config(**c["config"], epochs=schedule["epochs"], batch_size=schedule["batch_size"], seed=seed) for c in trained
  ]
  folder = os.path.join(workdir, "programs", f"burda{cells[0]['layers']}_k{cells[0]['k']}")
  if not os.path.exists(os.path.join(folder, "sweep.json")):
    print(f"== {folder}: {len(configs)} models in one program", flush=True)
    run_sweep(configs, folder, overwrite=True, progress=False)
  axes = ["objective"] if len(configs) > 1 else []
  out = {}
  for cell, config in zip(trained, configs):
    model = os.path.join(folder, "models", model_name(config, axes))
    eval_path = os.path.join(model, "eval.json")
    if not os.path.exists(eval_path):
      evaluate_run(model, k=schedule["eval_k"], n_test=schedule["eval_n_test"], progress=False)
    with open(os.path.join(model, "summary.json")) as f, open(eval_path) as g:
      out[cell["name"]] = {"summary": json.load(f), "eval": json.load(g)}
  for cell in cells:  # the k = 1 IWAE cell is the VAE's model
    out.setdefault(cell["name"], out.get(cell["run"]))
  return out


def write_results(cells: list[dict], results: dict, schedule_name: str, schedule: dict, path: str) -> None:
  rows = []
  for layers in (1, 2):
    for objective in ("vae", "iwae"):
      row = [c for c in cells if c["layers"] == layers and c["objective"] == objective]
      rows.append((layers, objective, sorted(row, key=lambda c: c["k"])))
  n_test = schedule["eval_n_test"]
  images = "all 10,000" if n_test is None else f"the first {n_test:,}"
  lines = [
    f"# Burda et al. (2016) Table 1, reproduced: `{schedule_name}` schedule",
    "",
    f"Test log-likelihood log p(x) in nats, dynamically binarized MNIST. Ours: importance sampling with "
    f"k = {schedule['eval_k']} on {images} test images (binarized once, seed 0); training: batch "
    f"{schedule['batch_size']}, {schedule['epochs']} epochs, Adam (0.9, 0.999, eps 1e-4), "
    "lr 1e-3 * 10^(-i/7) for 3^i epochs; seed 0.",
    "",
    "| layers | objective | k | paper | ours | ours - paper | ± (s.e. over images) | test ELBO | active units | epochs "
    "| train time | eval time |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for layers, objective, row in rows:
    for cell in row:
      r = results.get(cell["name"])
      if r is None:
        lines.append(
          f"| {layers} | {objective.upper()} | {cell['k']} | {cell['paper_test_log_px']:.2f} | not run | | | | | | | |"
        )
        continue
      s, e = r["summary"], r["eval"]
      same = " (same run as VAE)" if cell["run"] != cell["name"] else ""
      lines.append(
        f"| {layers} | {objective.upper()} | {cell['k']} | {cell['paper_test_log_px']:.2f} | "
        f"{e['test_log_px']:.2f}{same} | {e['test_log_px'] - cell['paper_test_log_px']:+.2f} | "
        f"{e['test_log_px_se']:.2f} | {e['test_elbo']:.2f} | {'+'.join(map(str, e['active_units_per_layer']))} | "
        f"{s['epochs']} | {s['seconds'] / 60:.1f} min | {e['seconds'] / 60:.1f} min |"
      )
  lines += [
    "",
    'Paper: Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016, Table 1',
    "(batch 20, 3280 epochs, k = 5000 on the full test set). Rerun: "
    f"`python experiments/iwae_table1/run.py --schedule {schedule_name}`.",
    "",
  ]
  with open(path, "w") as f:
    f.write("\n".join(lines))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="short")
  parser.add_argument("--workdir", default="runs/iwae_table1", help="one run folder per cell is made under it")
  parser.add_argument("--cells", nargs="*", help="cell names to run (default: all), e.g. burda1_vae_k1")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=os.path.join(HERE, "results.md"))
  parser.add_argument(
    "--together", action="store_true", help="train VAE and IWAE of each (layers, k) as one vmapped program (6 programs)"
  )
  args = parser.parse_args(argv)
  schedule = SCHEDULES[args.schedule]
  cells = load_cells()
  chosen = [c for c in cells if not args.cells or c["name"] in args.cells]
  if args.cells and len(chosen) != len(args.cells):
    known = ", ".join(c["name"] for c in cells)
    sys.exit(f"run.py: unknown cell in {args.cells}: known cells are {known}")
  workdir = os.path.join(args.workdir, args.schedule)
  results = {}
  t0 = time.perf_counter()
  if args.together:
    for key in sorted({(c["layers"], c["k"]) for c in chosen}):
      results.update(run_program([c for c in cells if (c["layers"], c["k"]) == key], schedule, workdir, args.seed))
      write_results(cells, results, args.schedule, schedule, args.out)
  for cell in chosen if not args.together else []:
    results[cell["name"]] = run_cell(cell, schedule, workdir, args.seed)
    write_results(cells, results, args.schedule, schedule, args.out)
  print(f"{len(chosen)} cells in {(time.perf_counter() - t0) / 60:.1f} min; table in {args.out}")


if __name__ == "__main__":
  main()
