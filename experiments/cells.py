"""One experiment cell: train a config into a folder, then evaluate it, each step at most once.

The experiments of this folder call :func:`train_then_evaluate` for every cell of their
table, so that an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import evaluate_run
from jaxvae.runs.run import train_and_evaluate


def train_then_evaluate(
  config: Config, folder: str, *, k: int = 5000, n_test: int | None = None, log=print
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Trains ``config`` into ``folder`` and evaluates it; returns ``(summary, evaluation)``.

  A folder with ``summary.json`` of a completed run is not trained again, one with
  ``eval.json`` not evaluated again; a folder without a completed ``summary.json`` is an
  interrupted training and starts again.
  """
  summary_path, eval_path = os.path.join(folder, "summary.json"), os.path.join(folder, "eval.json")
  done = False
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      done = json.load(f).get("completed", True)
  if not done:
    log(f"== {folder}: training {config.epochs} epochs")
    train_and_evaluate(config, folder, overwrite=True, progress=False)
  if not os.path.exists(eval_path):
    log(f"== {folder}: evaluating, k = {k}")
    evaluate_run(folder, k=k, n_test=n_test, progress=False)
  with open(summary_path) as f, open(eval_path) as g:
    return json.load(f), json.load(g)
