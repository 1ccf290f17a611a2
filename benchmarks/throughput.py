"""Training throughput of jaxvae against eager PyTorch and against the step's own matmul ceiling.

  python benchmarks/throughput.py [--quick] [--rounds N] [--device cpu|gpu] [--images N]

The model is jaxvae's default (784-400-20 ReLU MLP VAE, Bernoulli likelihood, analytic KL,
Adam 1e-3, batch 128, dynamically binarized MNIST), trained for full epochs by

  A. jaxvae's training path, the one `jaxvae train` runs: ``jaxvae.runs.setup.prepare(config)`` and its
     trainer's ``train_epoch`` compiled ahead of time (one lax.scan over the device-resident data);
  B. the pytorch/examples VAE in eager PyTorch (benchmarks/torch_vae.py), if torch is
     installed (``pip install -e '.[bench]'``);
  C. the ceiling: the step's matrix multiplications alone (the same shapes: forward,
     backward-data and backward-weight products of every Dense layer), in one jitted loop.

After a warm-up epoch of each, the rounds alternate A B C, A B C, ...; each round reports
images/s of A and B, their ratio, and the ceiling. The figures are medians over rounds.
``ceiling_fraction`` is the time the step's matmuls alone take divided by the time the whole
step takes (A's images/s over C's). The last line of output is one JSON object.

``--device gpu`` measures jaxvae alone on the first GPU, at batch 128 and 1024.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.runs.config import Config
from jaxvae.runs.setup import prepare, run_keys
from jaxvae.runs.sources import load_mnist


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def dense_layers(config: Config, pixels: int) -> list[tuple[int, int]]:
  """(fan_in, fan_out) of every Dense layer of the MLP VAE, encoder then decoder."""
  enc = [pixels, *config.hidden, 2 * config.latent_dim]
  dec = [config.latent_dim, *config.hidden[::-1], pixels]
  return list(zip(enc[:-1], enc[1:])) + list(zip(dec[:-1], dec[1:]))


class MatmulCeiling:
  """The step's matmuls alone: seconds per training step and FLOPs per step.

  Per Dense layer (m = fan_in, n = fan_out, B = batch): the forward product [B, m] @ [m, n],
  the weight gradient [m, B] @ [B, n], and the input gradient [B, n] @ [n, m] for every layer
  but the encoder's first (whose input x needs no gradient).
  """

  def __init__(self, config: Config, pixels: int, device, steps: int = 200):
    b = config.batch_size
    layers = dense_layers(config, pixels)
    rng = np.random.default_rng(0)
    self.arrays = jax.device_put(
      [tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((b, m), (m, n), (b, n))) for m, n in layers],
      device,
    )
    self.flops = float(sum(2 * b * m * n * (3 if i else 2) for i, (m, n) in enumerate(layers)))
    self.steps = steps

    def loop(arrays):
      def body(c, _):
        total = c
        for i, (x, w, g) in enumerate(arrays):
          x = x + c  # a fresh operand each iteration, so nothing is hoisted out of the loop
          total = total + 1e-9 * (jnp.sum(x @ w) + jnp.sum(x.T @ g))
          if i:
            total = total + 1e-9 * jnp.sum(g @ w.T)
        return total, None

      return jax.lax.scan(body, jnp.zeros((), jnp.float32), None, length=steps)[0]

    self.compiled = jax.jit(loop).lower(self.arrays).compile()
    jax.block_until_ready(self.compiled(self.arrays))

  def seconds_per_step(self) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(self.compiled(self.arrays))
    return (time.perf_counter() - t0) / self.steps


class JaxvaeRun:
  """jaxvae trained one epoch at a time exactly as `jaxvae train` does."""

  def __init__(self, config: Config, dataset, device):
    self.config = config
    # The same setup and trainer as the CLI's, progress callback included (it does nothing here).
    setup = prepare(config, data=dataset, on_progress=lambda steps_done: None)
    self.trainer = setup.trainer
    keys = run_keys(config.seed)
    self.k_train = keys.train
    self.train_x = jax.device_put(setup.train_data, device)
    self.state = jax.device_put(self.trainer.init(keys.init, setup.train_data), device)
    self.steps = self.trainer.steps_per_epoch(self.train_x.shape[0])
    t0 = time.perf_counter()
    self.epoch_fn = self.trainer.train_epoch.compile(self.state, self.train_x, self.k_train)
    self.compile_seconds = time.perf_counter() - t0
    step = self.trainer.train_step.lower(self.state, self.train_x[: config.batch_size], self.k_train).compile()
    cost = step.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.flops_per_image = float(cost["flops"]) / config.batch_size
    self.epoch = 0

  def run_epoch(self) -> tuple[float, float]:
    """Trains one epoch; returns (images/s, mean train ELBO)."""
    self.epoch += 1
    t0 = time.perf_counter()
    self.state, metrics = self.epoch_fn(self.state, self.train_x, jax.random.fold_in(self.k_train, self.epoch))
    metrics = jax.device_get(metrics)  # the one host sync of the epoch
    seconds = time.perf_counter() - t0
    return self.steps * self.config.batch_size / seconds, float(metrics["elbo"])


class TorchRun:
  """The eager PyTorch baseline, one epoch at a time."""

  def __init__(self, dataset, config: Config, threads: int):
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_vae import TorchVAE, make_loader

    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    self.torch = torch
    self.model = TorchVAE(config.hidden[0], config.latent_dim, int(np.prod(dataset.event_shape)))
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
    self.loader = make_loader(dataset.train, config.batch_size, config.seed)

  def run_epoch(self) -> tuple[float, float]:
    from torch_vae import train_epoch

    loss, seconds, images = train_epoch(self.model, self.optimizer, self.loader)
    return images / seconds, -loss


def fmt(values: list[float]) -> str:
  return f"{statistics.median(values):>9,.0f}  ({min(values):,.0f} - {max(values):,.0f})"


def run_cpu(args) -> dict:
  cores = os.cpu_count() or 1
  config = Config(batch_size=args.batch_size)
  dataset = load_mnist()
  if args.images:
    dataset = dataset._replace(train=dataset.train[: args.images], train_labels=dataset.train_labels[: args.images])
  device = jax.devices("cpu")[0]
  try:
    import torch

    torch_version = torch.__version__
  except ImportError:
    torch_version = None
  print(f"machine: {cpu_model()}, {cores} cores; jax {jax.__version__}, torch {torch_version or 'not installed'}")
  print(
    f"model: 784-{'-'.join(map(str, config.hidden))}-{config.latent_dim} MLP VAE, batch {config.batch_size}, "
    f"Adam {config.lr:g}, dynamic binarization, full epochs of {len(dataset.train):,} images"
  )

  a = JaxvaeRun(config, dataset, device)
  ceiling_run = MatmulCeiling(config, int(np.prod(dataset.event_shape)), device)
  print(
    f"jaxvae: compiled the epoch in {a.compile_seconds:.2f} s; XLA cost analysis: "
    f"{a.flops_per_image / 1e6:.3f} MFLOP per image (forward + backward + Adam)"
  )
  b = TorchRun(dataset, config, cores) if torch_version else None
  if b is None:
    print("torch is not installed: the PyTorch comparison is skipped (pip install -e '.[bench]')")

  # Warm-up: one epoch each (first-touch, allocator and thread-pool start-up).
  a.run_epoch()
  if b is not None:
    b.run_epoch()

  rows = []
  print(
    f"{'round':>5} {'jaxvae img/s':>13} {'torch img/s':>12} {'ratio':>6} {'ceiling img/s':>14} "
    f"{'fraction':>9} {'jaxvae ELBO':>12} {'torch ELBO':>11}"
  )
  for r in range(1, args.rounds + 1):
    ja, elbo_a = a.run_epoch()
    tb, elbo_b = b.run_epoch() if b is not None else (float("nan"), float("nan"))
    step_seconds = ceiling_run.seconds_per_step()
    ceiling = config.batch_size / step_seconds
    rows.append(
      dict(
        jaxvae=ja,
        torch=tb,
        ratio=ja / tb,
        ceiling=ceiling,
        fraction=ja / ceiling,
        matmul_gflops=ceiling_run.flops / step_seconds / 1e9,
      )
    )
    print(
      f"{r:>5} {ja:>13,.0f} {tb:>12,.0f} {ja / tb:>6.2f} {ceiling:>14,.0f} {ja / ceiling:>9.2f} "
      f"{elbo_a:>12.2f} {elbo_b:>11.2f}",
      flush=True,
    )

  med = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
  jaxvae_ips = med("jaxvae")
  achieved = a.flops_per_image * jaxvae_ips / 1e9
  print()
  print(f"jaxvae  images/s: {fmt([r['jaxvae'] for r in rows])}")
  if b is not None:
    print(f"torch   images/s: {fmt([r['torch'] for r in rows])}")
    ratios = ", ".join(f"{r['ratio']:.2f}" for r in rows)
    print(f"ratio jaxvae / torch per round: {ratios}; median {med('ratio'):.2f}")
  print(
    f"matmul ceiling: {med('matmul_gflops'):.1f} GFLOP/s on the step's own matmul shapes = "
    f"{med('ceiling'):,.0f} images/s; jaxvae reaches {med('fraction'):.2f} of it"
  )
  print(
    f"achieved: {achieved:.1f} GFLOP/s ({a.flops_per_image / 1e6:.3f} MFLOP/image x {jaxvae_ips:,.0f} images/s); "
    f"compile {a.compile_seconds:.2f} s"
  )
  return {
    "device": f"cpu: {cpu_model()}, {cores} cores",
    "jax_version": jax.__version__,
    "torch_version": torch_version,
    "batch_size": config.batch_size,
    "rounds": args.rounds,
    "jaxvae_images_per_sec": round(jaxvae_ips, 1),
    "torch_images_per_sec": round(med("torch"), 1) if b is not None else None,
    "ratio_median": round(med("ratio"), 3) if b is not None else None,
    "ratios": [round(r["ratio"], 3) for r in rows] if b is not None else None,
    "flops_per_image": a.flops_per_image,
    "achieved_gflops": round(achieved, 2),
    "matmul_ceiling_gflops": round(med("matmul_gflops"), 2),
    "ceiling_images_per_sec": round(med("ceiling"), 1),
    "ceiling_fraction": round(med("fraction"), 3),
    "compile_seconds": round(a.compile_seconds, 3),
  }


def run_gpu(args) -> dict:
  try:
    device = jax.devices("gpu")[0]
  except RuntimeError:
    raise SystemExit(
      "throughput.py: no GPU visible to JAX: install jax[cuda12] on a GPU machine, or use --device cpu"
    ) from None
  dataset = load_mnist()
  print(f"device: {device.device_kind}; jax {jax.__version__}")
  out = {"device": f"gpu: {device.device_kind}", "jax_version": jax.__version__}
  for batch in (128, 1024):
    run = JaxvaeRun(Config(batch_size=batch), dataset, device)
    run.run_epoch()
    ips = [run.run_epoch()[0] for _ in range(args.rounds)]
    step_ms = 1e3 * batch / statistics.median(ips)
    print(f"batch {batch:>5}: {fmt(ips)} images/s, {step_ms:.3f} ms per step, compile {run.compile_seconds:.2f} s")
    out[f"jaxvae_images_per_sec_batch{batch}"] = round(statistics.median(ips), 1)
    out[f"step_ms_batch{batch}"] = round(step_ms, 4)
  out["jaxvae_images_per_sec"] = out["jaxvae_images_per_sec_batch128"]
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="3 rounds (under two minutes on a 2-core CPU)")
  parser.add_argument("--rounds", type=int, help="alternating rounds after warm-up (default 5; 3 with --quick)")
  parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
  parser.add_argument("--batch-size", type=int, default=128, help="CPU mode batch size (default 128)")
  parser.add_argument(
    "--images", type=int, help="CPU mode: epochs of the first N training images (a smoke run; default all 60,000)"
  )
  args = parser.parse_args(argv)
  args.rounds = args.rounds or (3 if args.quick else 5)
  if args.rounds < 1:
    parser.error("--rounds must be >= 1")
  result = run_gpu(args) if args.device == "gpu" else run_cpu(args)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
