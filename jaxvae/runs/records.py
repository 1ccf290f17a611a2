"""What a run records: a row of ``metrics.jsonl`` per epoch, the ``summary.json`` at the end, and the lines it prints.

A row holds the epoch's training metrics (``train_*``, the means over its steps that were not
skipped), the test evaluation (``test_*``), ``kl`` (= ``test_kl``), the skipped updates and the
timing (:data:`TIMING_KEYS`, which measure the machine and differ between identical runs). A
summary is the last row's values, the active units, the timing and the machine.
"""

from __future__ import annotations

import time
from typing import Any

import jax

from jaxvae.core.likelihoods import bits_per_dim
from jaxvae.runs.config import Config

#: Per-epoch values that measure the machine, not the model (they differ between identical runs).
TIMING_KEYS = ("images_per_sec", "seconds")


def metrics_row(epoch: int, train_m: dict, test_m: dict, images_per_sec: float, seconds: float) -> dict[str, Any]:
  """One epoch of one model as ``metrics.jsonl`` records it: ``train_*``, ``test_*``, ``kl``, skips, timing."""
  row: dict[str, Any] = {"epoch": epoch}
  row.update({f"train_{k}": float(v) for k, v in train_m.items() if k != "skipped_steps"})
  row.update({f"test_{k}": float(v) for k, v in test_m.items()})
  row.update(
    kl=row["test_kl"], skipped_steps=int(train_m["skipped_steps"]), images_per_sec=images_per_sec, seconds=seconds
  )
  return row


def summarize(
  config: Config,
  rows: list[dict],
  *,
  completed: bool,
  data_shape: tuple[int, ...],
  active: list[int],
  train_seconds: float,
  compile_seconds: float,
  t_start: float,
  n_train: int,
  n_test: int,
  devices: int = 1,
  start_epoch: int = 0,
) -> dict[str, Any]:
  """``summary.json`` of a run or of one model of a sweep: the last epoch's values, timing and the machine."""
  last = rows[-1]
  run_epochs_done = last["epoch"] - start_epoch
  examples = (n_train // config.batch_size) * config.batch_size
  summary = {
    "epochs": last["epoch"],
    "completed": completed,
    "test_elbo": last["test_elbo"],
    "test_kl": last["test_kl"],
    "test_log_p_x_given_z": last["test_log_p_x_given_z"],
    "train_elbo": last.get("train_elbo"),
    "bits_per_dim": bits_per_dim(last["test_elbo"], data_shape),
    "active_units": int(sum(active)),
    "active_units_per_layer": active,
    "skipped_steps": int(sum(r.get("skipped_steps", 0) for r in rows)),
    "images_per_sec": examples * run_epochs_done / train_seconds if train_seconds else None,
    "seconds_per_epoch": train_seconds / run_epochs_done if train_seconds and run_epochs_done else None,
    "compile_seconds": compile_seconds,
    "seconds": time.perf_counter() - t_start,
    "n_train": int(n_train),
    "n_test": int(n_test),
    "device": str(jax.devices()[0].device_kind),
    "devices": devices,
    "jax_version": jax.__version__,
  }
  if start_epoch:
    summary["resumed_after_epoch"] = start_epoch
  return summary


def epoch_line(config: Config, row: dict[str, Any], eight_bit_shape: tuple[int, ...] | None = None) -> str:
  """The line printed after each epoch of a run: nats per example, and for 8-bit data (``eight_bit_shape``,
  the shape of one example) the test ELBO in bits per dimension beside them."""
  bound = f"train IWAE_{config.k} {row['train_iwae']:9.3f}  " if "train_iwae" in row else ""
  train = f"train ELBO {row['train_elbo']:9.3f}  " if "train_elbo" in row else f"train loss {row['train_loss']:9.3f}  "
  skipped = f"  {row['skipped_steps']} updates skipped" if row["skipped_steps"] else ""
  bits = f" ({bits_per_dim(row['test_elbo'], eight_bit_shape):.3f} bits/dim)" if eight_bit_shape else ""
  return (
    f"epoch {row['epoch']:>{len(str(config.epochs))}}/{config.epochs}  {bound}{train}"
    f"test ELBO {row['test_elbo']:9.3f}{bits}  KL {row['kl']:7.3f}  {row['images_per_sec']:,.0f} images/s  "
    f"{row['seconds']:.2f} s{skipped}"
  )


def diverged_message(epoch: int, skips: int, whole_epoch: int, kept: str) -> str:
  """The line of a divergence stop at ``epoch`` after ``skips`` skipped updates in a row (``whole_epoch``:
  the epoch's number of updates if every one of them was skipped, else 0); ``kept`` says what stays."""
  if whole_epoch:
    return (
      f"jaxvae: stopped at epoch {epoch}: all {whole_epoch} updates of epoch {epoch} were skipped (a non-finite loss "
      f"or gradient, or a gradient norm above --skip-grad-norm), so training did not move; {kept}; raise "
      "--skip-grad-norm above the gradient norms (its loss is nats per example), or lower --lr, and start a new "
      "--workdir"
    )
  return (
    f"jaxvae: stopped at epoch {epoch}: the last {skips} updates had a non-finite loss or gradient "
    f"(or one above --skip-grad-norm) and were skipped; {kept}; lower --lr or set --clip-grad-norm "
    "and start a new --workdir"
  )
