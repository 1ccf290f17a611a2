"""The VDVAE's training step: jaxvae against the same architecture in eager PyTorch, its cost, and its memory.

  python benchmarks/vdvae_step.py [--preset vdvae-mnist-tiny] [--rounds 5] [--steps 20] [--batch-size 32]

  A. jaxvae's jitted training step of the preset (``Trainer.train_step``: the ELBO with per-layer
     KLs, KL balancing and warm-up, Adamax with the cosine schedule, the skip test and the EMA),
     on one batch of binarized MNIST held on the device;
  B. the same architecture in eager PyTorch (benchmarks/torch_vdvae.py: the same blocks and
     parameter count), its negative ELBO and Adamax, on the same batch.

After a warm-up, rounds alternate A, B; each times ``--steps`` steps and reports images/s of each
and their ratio; the figures are medians over rounds. Then XLA's cost analysis of A's step (FLOPs,
bytes accessed) and XLA's memory plan of the step's gradient with and without ``jax.checkpoint``
per top-down block (``--vdvae-checkpoint blocks``): the temporary buffers of the compiled program,
which is the peak memory beyond parameters and inputs. The last line is one JSON object.

``--device gpu`` times A alone on the first GPU for each preset and projects the papers' schedules.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core import vdvae
from jaxvae.runs.build import trainer_for
from jaxvae.runs.config import Config
from jaxvae.runs.presets import preset_fields
from jaxvae.runs.sources import load_mnist

sys.path.insert(0, os.path.dirname(__file__))


def batch_of(config: Config, n: int) -> np.ndarray:
  """The first ``n`` MNIST training images (uint8 [n, 28, 28, 1])."""
  del config
  return load_mnist().train[:n]


class JaxStep:
  def __init__(self, config: Config, batch: np.ndarray, device):
    self.trainer = trainer_for(config, data_shape=batch.shape[1:], train_size=60_000)
    self.state = jax.device_put(self.trainer.init(jax.random.key(0)), device)
    self.batch = jax.device_put(batch, device)
    self.key = jax.random.key(1)
    self.step = self.trainer.train_step
    t0 = time.perf_counter()
    self.compiled = self.step.lower(self.state, self.batch, self.key).compile()
    self.compile_seconds = time.perf_counter() - t0
    self.state, metrics = self.compiled(self.state, self.batch, self.key)
    jax.block_until_ready(metrics)

  def run(self, steps: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    for i in range(steps):
      self.state, metrics = self.compiled(self.state, self.batch, jax.random.fold_in(self.key, i))
    loss = float(metrics["loss"])
    return steps * self.batch.shape[0] / (time.perf_counter() - t0), loss

  def cost(self) -> dict:
    analysis = self.compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return {
      "gflop_per_step": analysis.get("flops", float("nan")) / 1e9,
      "gb_accessed": analysis.get("bytes accessed", 0) / 1e9,
    }


class TorchStep:
  def __init__(self, arch: vdvae.Architecture, batch: np.ndarray, lr: float, threads: int):
    import torch
    from torch_vdvae import TorchVDVAE

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    self.torch = torch
    self.model = TorchVDVAE(arch, batch.shape[-1])
    self.optimizer = torch.optim.Adamax(self.model.parameters(), lr)
    self.x = torch.bernoulli(torch.from_numpy(batch.transpose(0, 3, 1, 2).astype(np.float32) / 255.0))
    self.parameters = sum(p.numel() for p in self.model.parameters())
    self.run(2)

  def run(self, steps: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    for _ in range(steps):
      self.optimizer.zero_grad(set_to_none=True)
      loss = self.model.loss(self.x)
      loss.backward()
      self.optimizer.step()
    value = float(loss.detach())
    return steps * self.x.shape[0] / (time.perf_counter() - t0), value


def temp_bytes(config: Config, batch: np.ndarray) -> int:
  """XLA's temporary buffers of the compiled gradient of the loss (the activations kept for the backward pass)."""
  trainer = trainer_for(config, data_shape=batch.shape[1:], train_size=60_000)
  state = trainer.init(jax.random.key(0))
  x = jnp.asarray(batch, jnp.float32) / 255.0
  objective = trainer.objective

  def loss(params):
    return objective.loss(trainer.vae, params, x, jax.random.key(0), objective.hparams, jnp.int32(0))[0]

  compiled = jax.jit(jax.grad(loss)).lower(state.params).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def run_cpu(args) -> dict:
  config = Config(**{**preset_fields(args.preset), "batch_size": args.batch_size}).validate()
  arch = vdvae.architecture_of(config)
  batch = batch_of(config, args.batch_size)
  cores = os.cpu_count() or 1
  print(
    f"preset {args.preset}: batch {args.batch_size}, {args.steps} steps per round, {cores} cores, jax {jax.__version__}"
  )
  a = JaxStep(config, batch, jax.devices("cpu")[0])
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(a.state.params))
  cost = a.cost()
  print(
    f"jaxvae: {n_params:,} parameters, step compiled in {a.compile_seconds:.1f} s; XLA cost analysis: "
    f"{cost['gflop_per_step']:.2f} GFLOP and {cost['gb_accessed']:.2f} GB accessed per step"
  )
  try:
    b = TorchStep(arch, batch, config.lr, cores)
    print(f"torch {b.torch.__version__}: {b.parameters:,} parameters")
  except ImportError:
    b = None
    print("torch is not installed: the PyTorch comparison is skipped (pip install -e '.[bench]')")
  rows = []
  print(f"{'round':>5} {'jaxvae img/s':>13} {'torch img/s':>12} {'ratio':>6} {'jaxvae loss':>12} {'torch loss':>11}")
  for r in range(1, args.rounds + 1):
    ja, la = a.run(args.steps)
    tb, lb = b.run(args.steps) if b is not None else (float("nan"), float("nan"))
    rows.append((ja, tb, ja / tb))
    print(f"{r:>5} {ja:>13.1f} {tb:>12.1f} {ja / tb:>6.2f} {la:>12.2f} {lb:>11.2f}")
  med = [statistics.median(col) for col in zip(*rows)]
  plain = temp_bytes(config, batch)
  remat = temp_bytes(config.replace(vdvae_checkpoint="blocks"), batch)
  print(
    f"median: jaxvae {med[0]:.1f} img/s, torch {med[1]:.1f} img/s, ratio {med[2]:.2f}; step memory (XLA temporaries "
    f"of the gradient): {plain / 2**20:.1f} MiB, {remat / 2**20:.1f} MiB with jax.checkpoint per block"
  )
  return {
    "preset": args.preset,
    "batch_size": args.batch_size,
    "parameters": n_params,
    "jaxvae_images_per_sec": med[0],
    "torch_images_per_sec": med[1],
    "ratio_median": med[2],
    **cost,
    "temp_mib": plain / 2**20,
    "temp_mib_checkpointed": remat / 2**20,
  }


def run_gpu(args) -> dict:
  """Each preset's step on the first GPU, and the papers' schedules projected from it."""
  device = jax.devices("gpu")[0]
  out = {}
  for name, steps_total in (("vdvae-mnist", 200_000), ("vdvae-cifar10", 1_000_000)):
    config = Config(**preset_fields(name)).validate()
    shape = (28, 28, 1) if "mnist" in name else (32, 32, 3)
    batch = np.zeros((config.batch_size, *shape), np.uint8)
    a = JaxStep(config, batch, device)
    a.run(3)
    rate, _ = a.run(args.steps)
    seconds = config.batch_size / rate
    out[name] = {"images_per_sec": rate, "seconds_per_step": seconds, "projected_hours": steps_total * seconds / 3600}
    print(
      f"{name}: {rate:.0f} img/s, {seconds * 1e3:.1f} ms/step; "
      f"{steps_total:,} steps: {out[name]['projected_hours']:.1f} h"
    )
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", default="vdvae-mnist-tiny")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  args = p.parse_args(argv)
  result = run_gpu(args) if args.device == "gpu" else run_cpu(args)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
