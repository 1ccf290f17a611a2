"""Burda et al.'s Table 1 on the paper's schedule: how many programs, how fast a step, how many hours.

  python benchmarks/table1_steps.py            # every program, unroll 1 and 8 (CPU: a few minutes)
  python benchmarks/table1_steps.py --quick    # one program (1 layer, k = 5)

The 12 cells are 6 programs of 10 models: VAE and IWAE of one k have the same shapes and train as one vmapped
program (the objective is the traced switch of ``jaxvae.core.objectives.vae_or_iwae``), and at k = 1
the two objectives are the same (one model). So per number of layers: k = 1 (one model), k = 5
(two), k = 50 (two). k changes the shapes: padding k = 1 and 5 to 50 with masked samples would put
them in the k = 50 program at 50 / k times their work.

For each program this prints the time of one optimizer step of the whole stack (batch 20, the
paper's) in a scanned epoch, with the scan unrolled 1 and 8 times, and projects the paper's
schedule: 3280 epochs x 3000 steps = 9.84 million steps per program, the programs one after
another. The figures are for the machine it runs on; on a GPU, run ``benchmarks/gpu_checks.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core import objectives
from jaxvae.runs import build
from jaxvae.runs.config import Config
from jaxvae.training.train import Epoch

PAPER_STEPS = 3280 * (60_000 // 20)
PROGRAMS = [(layers, k) for layers in (1, 2) for k in (1, 5, 50)]


def program_seconds_per_step(layers: int, k: int, unroll: int, steps: int, repeats: int) -> float:
  """Median seconds per step of the stacked VAE(+IWAE) program of ``layers`` and ``k`` (compile excluded)."""
  models = 1 if k == 1 else 2  # k = 1: VAE and IWAE are one model
  config = Config(
    model=f"burda{layers}", objective="vae", kl="mc", k=k, batch_size=20, adam_eps=1e-4, lr_schedule="burda"
  )
  vae = build.make_vae(config, (28, 28, 1))
  trainer = build.trainer_for(
    config, data_shape=(28, 28, 1), train_size=60_000, vae=vae, objective=objectives.vae_or_iwae(k, iwae=False)
  )
  states = [trainer.init(jax.random.key(m)) for m in range(models)]
  states = [s._replace(hparams=objectives.SwitchHParams(jnp.float32(m))) for m, s in enumerate(states)]
  state = jax.tree.map(lambda *a: jnp.stack(a), *states)
  data = jnp.asarray(np.random.default_rng(0).integers(0, 256, (steps * 20, 28, 28, 1), dtype=np.uint8))
  keys = jax.random.split(jax.random.key(1), models)
  epoch = Epoch(trainer.step, 20, stacked=True, loop=False, unroll=unroll).compile(state, data, keys)
  times = []
  for r in range(repeats + 1):
    t0 = time.perf_counter()
    state, metrics = epoch(state, data, jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, r))
    jax.block_until_ready(metrics)
    if r:  # the first call warms up
      times.append((time.perf_counter() - t0) / steps)
  return float(np.median(times))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="one program (1 layer, k = 5)")
  parser.add_argument("--steps", type=int, default=200, help="steps per timed epoch")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--unroll", default="1,8")
  parser.add_argument("--json", help="write the figures to this file")
  args = parser.parse_args(argv)
  device = jax.devices()[0]
  print(
    f"device: {device.platform} ({device.device_kind}); {platform.machine()}, {os.cpu_count()} CPU cores; "
    f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
    flush=True,
  )
  programs = [(1, 5)] if args.quick else PROGRAMS
  unrolls = [int(u) for u in args.unroll.split(",")]
  results = []
  for layers, k in programs:
    for unroll in unrolls:
      s = program_seconds_per_step(layers, k, unroll, args.steps, args.repeats)
      results.append(
        dict(
          layers=layers, k=k, unroll=unroll, ms_per_step=1e3 * s, steps_per_s=1 / s, paper_hours=PAPER_STEPS * s / 3600
        )
      )
      print(
        f"burda{layers} k={k:<3d} unroll={unroll:<2d}: {1e3 * s:8.3f} ms/step  {1 / s:9.1f} steps/s  "
        f"paper schedule {PAPER_STEPS * s / 3600:8.1f} h",
        flush=True,
      )
  if not args.quick:
    best = {}
    for r in results:
      key = (r["layers"], r["k"])
      best[key] = min(best.get(key, float("inf")), r["paper_hours"])
    print(f"all 12 cells (6 programs of 1-2 models, one after another, best unroll): {sum(best.values()):.1f} h")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": str(device), "results": results}, f, indent=2)


if __name__ == "__main__":
  sys.exit(main())
