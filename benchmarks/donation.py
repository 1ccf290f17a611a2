"""What donating the state costs or saves: the default model's epoch, with and without ``donate``.

``jaxvae.make_trainer`` leaves its ``train_epoch``'s input state usable (``donate=False``, the
functional habit); runs and sweeps donate it (``trainer_for``). This times one epoch of the
default model (MLP 784-400-20, batch 128, 60,000 MNIST images) both ways, in alternating rounds
of the same process, and prints the medians and their ratio.

  python benchmarks/donation.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import jaxvae
from jaxvae.runs.build import make_objective, make_optimizer, make_vae
from jaxvae.runs.sources import load_mnist
from jaxvae.training.train import make_trainer


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()
  config = jaxvae.Config()
  images = jnp.asarray(load_mnist().train)
  vae = make_vae(config, images.shape[1:])
  steps = images.shape[0] // config.batch_size
  epochs, seconds = {}, {True: [], False: []}
  for donate in (True, False):
    trainer = make_trainer(
      vae, make_objective(config, steps), make_optimizer(config, steps), batch_size=config.batch_size, donate=donate
    )
    state = trainer.init(jax.random.key(0))
    epochs[donate] = (trainer.train_epoch.compile(state, images, jax.random.key(1)), state)
  for r in range(args.rounds):
    for donate in (True, False):
      epoch, state = epochs[donate]
      t0 = time.perf_counter()
      state, metrics = epoch(state, images, jax.random.key(r))
      jax.block_until_ready(metrics)
      seconds[donate].append(time.perf_counter() - t0)
      epochs[donate] = (epoch, state)
  donated, kept = statistics.median(seconds[True]), statistics.median(seconds[False])
  print(f"epoch seconds, median of {args.rounds}: donated {donated:.3f}, not donated {kept:.3f}")
  print(f"ratio_not_donated_over_donated {kept / donated:.3f}")


if __name__ == "__main__":
  main()
