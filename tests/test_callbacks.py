"""Callbacks: a run and a sweep call them on the host with each epoch's row and the summary."""

import json
import os

import pytest

import jaxvae
from jaxvae.config import Config
from jaxvae.run import read_metrics, train_and_evaluate
from jaxvae.sweep import run_sweep

SMALL = dict(hidden=(32,), latent_dim=4, batch_size=32, n_train=256, n_test=64)


def recorder():
  """A callback that keeps what it is called with, and the calls themselves."""
  seen = {"start": [], "epoch": [], "end": []}
  callback = jaxvae.Callback(
      start=lambda run: seen["start"].append(run),
      epoch=lambda run, row: seen["epoch"].append((run, row)),
      end=lambda run, summary: seen["end"].append((run, summary)),
  )
  return callback, seen


def summary_of(workdir):
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def test_a_run_calls_back_with_every_row_once_across_a_resume_and_with_its_summary(tmp_path):
  workdir = str(tmp_path / "run")
  callback, seen = recorder()
  train_and_evaluate(Config(**SMALL, epochs=2), workdir, progress=False, verbose=False, callbacks=[callback])
  train_and_evaluate(Config(**SMALL, epochs=4), workdir, resume=True, progress=False, verbose=False,
                     callbacks=[callback])  # fmt: skip
  assert [(r.workdir, r.name, r.resumed_after) for r in seen["start"]] == [(workdir, None, 0), (workdir, None, 2)]
  assert [row for _, row in seen["epoch"]] == read_metrics(workdir)  # epochs 1-4, each once
  assert [run.resumed_after for run, _ in seen["epoch"]] == [0, 0, 2, 2]
  assert [s["epochs"] for _, s in seen["end"]] == [2, 4] and seen["end"][-1][1] == summary_of(workdir)


def test_a_sweep_calls_back_for_each_model_with_its_folder_and_name(tmp_path):
  callback, seen = recorder()
  run_sweep([Config(**SMALL, epochs=2, seed=s) for s in (0, 1)], str(tmp_path / "sweep"), progress=False,
            verbose=False, callbacks=[callback])  # fmt: skip
  assert sorted(r.name for r in seen["start"]) == ["seed=0", "seed=1"]
  for run in seen["start"]:
    assert run.workdir == str(tmp_path / "sweep" / "models" / run.name) and run.config.seed == int(run.name[-1])
    assert [row for r, row in seen["epoch"] if r.name == run.name] == read_metrics(run.workdir)
    assert [s for r, s in seen["end"] if r.name == run.name] == [summary_of(run.workdir)]


def test_a_callback_that_raises_stops_the_run_after_writing_the_epoch(tmp_path):
  def fail_at_2(run, row):
    if row["epoch"] == 2:
      raise RuntimeError("my logger is down")

  workdir = str(tmp_path / "run")
  with pytest.raises(RuntimeError, match="my logger is down"):
    train_and_evaluate(Config(**SMALL, epochs=3), workdir, progress=False, verbose=False,
                       callbacks=[jaxvae.Callback(epoch=fail_at_2)])  # fmt: skip
  assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2]
