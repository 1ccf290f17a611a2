"""Callbacks: a run and a sweep call them on the host with each epoch's row and the summary."""

import json
import os

import pytest
from helpers import session_hparams

import jaxvae
from jaxvae.runs.config import Config
from jaxvae.runs.folder import read_metrics
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.sweep import run_sweep

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


def summary_of(workdir, name="summary.json"):
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


@pytest.mark.slow
def test_a_run_calls_back_with_every_row_once_across_a_resume_and_with_its_summary(tmp_path):
  workdir = str(tmp_path / "run")
  callback, seen = recorder()
  train_and_evaluate(Config(**SMALL, epochs=2), workdir, progress=False, verbose=False, callbacks=[callback])
  train_and_evaluate(
    Config(**SMALL, epochs=4), workdir, resume=True, progress=False, verbose=False, callbacks=[callback]
  )
  assert [(r.workdir, r.name, r.resumed_after) for r in seen["start"]] == [(workdir, None, 0), (workdir, None, 2)]
  assert [row for _, row in seen["epoch"]] == read_metrics(workdir)  # epochs 1-4, each once
  assert [run.resumed_after for run, _ in seen["epoch"]] == [0, 0, 2, 2]
  assert [s["epochs"] for _, s in seen["end"]] == [2, 4] and seen["end"][-1][1] == summary_of(workdir)


@pytest.mark.slow
def test_a_sweep_calls_back_for_each_model_with_its_folder_and_name(tmp_path):
  callback, seen = recorder()
  run_sweep(
    [Config(**SMALL, epochs=2, seed=s) for s in (0, 1)],
    str(tmp_path / "sweep"),
    progress=False,
    verbose=False,
    callbacks=[callback],
  )
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
    train_and_evaluate(
      Config(**SMALL, epochs=3), workdir, progress=False, verbose=False, callbacks=[jaxvae.Callback(epoch=fail_at_2)]
    )
  assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2]


# ---------------------------------------------------------------------------
# TensorBoard, read back with TensorBoard's own reader.
# ---------------------------------------------------------------------------


def events(workdir):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  accumulator = EventAccumulator(os.path.join(workdir, "tensorboard"), size_guidance={"scalars": 0, "images": 0})
  accumulator.Reload()
  return accumulator


@pytest.mark.slow
def test_tensorboard_has_every_epoch_once_across_a_resume_with_the_values_of_metrics_jsonl(tmp_path, capsys):
  import shutil

  from jaxvae.tools.cli import main
  from jaxvae.watch.writers import tag

  workdir = str(tmp_path / "run")
  tiny = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "32", "--n-train", "256", "--n-test", "64"]
  assert main(["train", *tiny, "--epochs", "3", "--no-progress", "--workdir", workdir]) == 0
  # Killed after epoch 3's row and scalars, before its checkpoint: resumed from checkpoint 2.
  shutil.rmtree(os.path.join(workdir, "checkpoints", "3"))
  assert main(["train", "--resume", workdir, "--no-progress"]) == 0
  rows, accumulator = read_metrics(workdir), events(workdir)
  assert [r["epoch"] for r in rows] == [1, 2, 3]
  for key in ("train_elbo", "test_elbo", "train_kl", "test_log_p_x_given_z", "train_grad_norm", "images_per_sec"):
    scalars = accumulator.Scalars(tag(key))
    assert [s.step for s in scalars] == [1, 2, 3], key
    assert [s.value for s in scalars] == pytest.approx([r[key] for r in rows], rel=1e-6), key
  assert session_hparams(accumulator)["latent_dim"] == 4
  # Images at the last epoch (the default: every 5 epochs and at the last), decoded as PNGs.
  import io

  from PIL import Image

  for name in ("samples", "test_images", "reconstructions"):
    shown = accumulator.Images(f"images/{name}")
    assert [i.step for i in shown] == [3], name
    picture = Image.open(io.BytesIO(shown[0].encoded_image_string))
    assert picture.size[0] >= 8 * 28 and picture.size[1] >= 8 * 28, (name, picture.size)
  capsys.readouterr()
  assert (
    main(["train", *tiny, "--epochs", "1", "--no-progress", "--no-tensorboard", "--workdir", str(tmp_path / "off")])
    == 0
  )
  assert not os.path.exists(tmp_path / "off" / "tensorboard")


@pytest.mark.slow
def test_tensorboard_and_wandb_have_one_run_per_swept_model_with_its_hyperparameters(tmp_path, monkeypatch):
  import glob

  pytest.importorskip("wandb")
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  run_sweep(
    [Config(**SMALL, epochs=2, beta=b) for b in (0.5, 2.0)],
    str(tmp_path / "sweep"),
    progress=False,
    verbose=False,
    callbacks=[jaxvae.tensorboard(), jaxvae.wandb(project="tests")],
  )
  samples = {}
  for name, beta in (("beta=0.5", 0.5), ("beta=2", 2.0)):
    folder = str(tmp_path / "sweep" / "models" / name)
    accumulator = events(folder)
    assert session_hparams(accumulator)["beta"] == beta
    assert [s.value for s in accumulator.Scalars("test/elbo")] == pytest.approx(
      [r["test_elbo"] for r in read_metrics(folder)], rel=1e-6
    )
    assert [i.step for i in accumulator.Images("images/samples")] == [2]  # at the last epoch
    samples[name] = accumulator.Images("images/samples")[0].encoded_image_string
    [run_dir] = glob.glob(os.path.join(folder, "wandb", "offline-run-*"))
    logged = wandb_run(run_dir)
    assert (logged["group"], logged["config"]["beta"], sorted(logged["history"])) == ("sweep", beta, [1, 2])
  assert samples["beta=0.5"] != samples["beta=2"]  # each model's own pictures


@pytest.mark.slow
def test_tensorboard_serves_the_run_on_127_0_0_1_with_a_test_elbo_curve_of_3_points(tmp_path):
  """`jaxvae train --epochs 3 --workdir W`, then `tensorboard --logdir W`: asked over HTTP, as a browser would."""
  import subprocess
  import sys
  import time
  import urllib.request

  from jaxvae.tools.cli import main
  from jaxvae.tools.launch import free_port

  pytest.importorskip("tensorboard")
  workdir = str(tmp_path / "W")
  tiny = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "32", "--n-train", "256", "--n-test", "64"]
  assert main(["train", *tiny, "--epochs", "3", "--no-progress", "--workdir", workdir]) == 0
  # `jaxvae eval` and `jaxvae gaps` add their results to the same run, at the checkpoint's epoch.
  assert main(["eval", "--workdir", workdir, "--k", "10", "--no-progress"]) == 0
  assert main(["gaps", "--workdir", workdir, "--k", "10", "--n-test", "16", "--steps", "5", "--no-progress"]) == 0
  port = free_port()
  server = subprocess.Popen(
    [sys.executable, "-m", "tensorboard.main", "--logdir", workdir, "--host", "127.0.0.1", "--port", str(port)],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )

  def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
      return json.loads(response.read())

  try:
    deadline = time.time() + 60
    while True:
      try:
        runs = get("/data/runs")
        if runs:
          break
      except OSError:
        pass
      assert time.time() < deadline and server.poll() is None, server.stderr.read() if server.poll() is not None else ""
      time.sleep(0.2)
    assert runs == ["tensorboard"]
    curve = get("/data/plugin/scalars/scalars?run=tensorboard&tag=test/elbo")
    assert [step for _, step, _ in curve] == [1, 2, 3]
    assert [value for _, _, value in curve] == pytest.approx([r["test_elbo"] for r in read_metrics(workdir)], rel=1e-6)
    for name, key in (("eval", "test_log_px"), ("eval", "active_units"), ("gaps", "amortization_gap")):
      [(_, step, value)] = get(f"/data/plugin/scalars/scalars?run=tensorboard&tag={name}/{key}")
      assert (step, value) == (3, pytest.approx(summary_of(workdir, f"{name}.json")[key], rel=1e-6)), (name, key)
  finally:
    server.terminate()
    server.wait(timeout=30)


# ---------------------------------------------------------------------------
# Weights & Biases, offline: its run files read back record by record.
# ---------------------------------------------------------------------------


def wandb_records(run_dir):
  """The records of an offline W&B run: ``run-<id>.wandb`` is a ``:W&B`` header (7 bytes), then
  LevelDB-log blocks of 32 KiB holding ``wandb_internal_pb2.Record`` protobufs in chunks (7-byte chunk
  headers: checksum, length, type; type 1 = whole, 2/3/4 = first/middle/last)."""
  import glob
  import struct

  from wandb.proto import wandb_internal_pb2

  [path] = glob.glob(os.path.join(run_dir, "run-*.wandb"))
  with open(path, "rb") as f:
    data = f.read()
  assert data[:4] == b":W&B"
  pos, chunks, block = 7, [], 32768
  while pos + 7 <= len(data):
    if block - pos % block < 7:  # a block's tail too short for a header is padding
      pos += block - pos % block
      continue
    _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
    if kind == 0:
      pos += block - pos % block
      continue
    chunks.append(data[pos + 7 : pos + 7 + length])
    pos += 7 + length
    if kind in (1, 4):
      yield wandb_internal_pb2.Record.FromString(b"".join(chunks))
      chunks = []


def wandb_run(run_dir):
  """An offline run's id, config, history rows by step and summary, from its records."""
  out = {"dir": run_dir, "config": {}, "history": {}, "summary": {}}
  for record in wandb_records(run_dir):
    kind = record.WhichOneof("record_type")
    if kind == "run":
      out["id"] = record.run.run_id
      out["group"] = record.run.run_group
      out["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
    elif kind == "history":
      row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
      out["history"][row["_step"]] = row
    elif kind == "summary":
      out["summary"].update(
        {(u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in record.summary.update}
      )
  return out


@pytest.mark.slow
def test_wandb_offline_logs_every_epoch_once_across_a_resume_then_the_eval_results(tmp_path, monkeypatch, capsys):
  import glob

  pytest.importorskip("wandb")
  from jaxvae.tools.cli import main
  from jaxvae.watch.writers import tag

  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  workdir = str(tmp_path / "W")
  tiny = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "32", "--n-train", "256", "--n-test", "64"]
  flags = ["--no-progress", "--no-tensorboard", "--wandb", "--wandb-project", "tests", "--log-images-every", "2"]
  assert main(["train", *tiny, "--epochs", "2", *flags, "--workdir", workdir]) == 0
  assert main(["train", "--resume", workdir, "--epochs", "3", *flags]) == 0
  assert main(["eval", "--workdir", workdir, "--k", "10", "--no-progress"]) == 0
  capsys.readouterr()
  runs = [wandb_run(d) for d in glob.glob(os.path.join(workdir, "wandb", "offline-run-*"))]
  [first] = [r for r in runs if 1 in r["history"]]
  [resumed] = [r for r in runs if 3 in r["history"]]
  [evaluated] = [r for r in runs if "eval/test_log_px" in r["summary"]]
  assert first["id"] == resumed["id"] == evaluated["id"]  # one W&B run, continued
  assert first["config"]["latent_dim"] == 4 and first["config"]["hidden"] == "32"
  assert sorted(first["history"]) == [1, 2] and sorted(resumed["history"]) == [3]
  history = {**first["history"], **resumed["history"]}
  for row in read_metrics(workdir):
    logged = history[row["epoch"]]
    for key in ("train_elbo", "test_elbo", "train_kl", "train_grad_norm", "images_per_sec"):
      assert logged[tag(key)] == pytest.approx(row[key], rel=1e-6), (row["epoch"], key)
  # Pictures every 2 epochs and at the last, as PNG files of the run.
  for run, step in ((first, 2), (resumed, 3)):
    with open(os.path.join(run["dir"], "files", history[step]["images/samples/path"]), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "images/samples/path" not in history[1]
  assert resumed["summary"]["test_elbo"] == pytest.approx(summary_of(workdir)["test_elbo"], rel=1e-6)
  assert evaluated["summary"]["eval/test_log_px"] == pytest.approx(summary_of(workdir, "eval.json")["test_log_px"])


def test_wandb_without_a_key_online_is_refused_before_the_run_starts(tmp_path, monkeypatch, capsys):
  pytest.importorskip("wandb")
  from jaxvae.tools.cli import main

  for name in ("WANDB_MODE", "WANDB_API_KEY"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
  assert main(["train", "--epochs", "1", "--wandb", "--workdir", str(tmp_path / "W")]) == 2
  assert "WANDB_MODE=offline" in capsys.readouterr().err and not os.path.exists(tmp_path / "W")
