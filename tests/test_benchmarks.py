"""The benchmark runs and ends with its JSON line (figures are printed, never asserted)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the slow tier: the benchmark scripts, each a process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_throughput_runs_a_round_and_ends_with_the_json_line():
  proc = subprocess.run(
    [sys.executable, os.path.join(ROOT, "benchmarks", "throughput.py"), "--quick", "--rounds", "1", "--images", "6400"],
    capture_output=True,
    text=True,
    timeout=600,
    cwd=ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  for key in ("jaxvae_images_per_sec", "torch_images_per_sec", "ratio_median", "flops_per_image", "ceiling_fraction"):
    assert key in result
  assert result["jaxvae_images_per_sec"] > 0 and 3e6 < result["flops_per_image"] < 4e6
  assert result["ceiling_fraction"] > 0


def test_floor_runs_every_step_variant():
  proc = subprocess.run(
    [sys.executable, os.path.join(ROOT, "benchmarks", "floor.py"), "--rounds", "1", "--steps", "2"],
    capture_output=True,
    text=True,
    timeout=600,
    cwd=ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [line[:10].strip() for line in proc.stdout.splitlines()[2:]]
  assert rows == ["bare", "+gather", "+eps", "+metrics", "+skip", "all", "bare SGD", "jaxvae", "ceiling"]
