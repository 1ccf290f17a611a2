"""How close can an XLA training step of this model come to its matmul ceiling on this machine?

  python benchmarks/floor.py [--rounds 12] [--steps 78]

A profile of a step that runs kernels concurrently double-counts time, so this script asks
the question by construction instead: hand-written steps of the benchmark model (784-400-20
ReLU MLP VAE, Bernoulli likelihood, analytic KL, Adam 1e-3, batch 128, plain jnp on a dict of
arrays), from the barest one up to jaxvae's own, each a lax.scan over 78 batches in one jit,
timed in alternating rounds against the matmul ceiling of benchmarks/throughput.py:

  bare       batches binarized once beforehand (no draw per step), z = mu + sigma * 0.5
             (no draw), no metrics out of the step, optax.adam
  +gather    each batch gathered from the uint8 images and binarized afresh (jaxvae.core.rng)
  +eps       eps ~ N(0, I) drawn for z = mu + sigma * eps (jaxvae.core.rng)
  +metrics   the batch means of the ELBO terms out of every step
  +skip      the gradient norm, and the update inside a lax.cond that skips it when the loss
             or the norm is not finite (what jaxvae's step does)
  all        all four above: jaxvae's step written by hand
  bare SGD   the bare step with SGD instead of Adam (another optimizer: a reference only)
  jaxvae     jaxvae's own train epoch (``trainer_for``, as `jaxvae train` runs it)

Each line prints images/s (median over rounds), the fraction of the ceiling (paired, same
round) and the ratio to jaxvae. The bare step is the floor of what any XLA step of this
model costs here: its distance from 1.0 is the price of the step's non-matmul kernels and
of their scheduling, not of anything jaxvae adds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax

from jaxvae.core import rng
from jaxvae.runs.build import trainer_for
from jaxvae.runs.config import Config
from jaxvae.runs.sources import load_mnist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import MatmulCeiling

FEATURES = ("gather", "eps", "metrics", "skip")


def init_params(key: jax.Array, pixels: int = 784, hidden: int = 400, latent: int = 20) -> dict:
  ks = jax.random.split(key, 4)

  def dense(k, m, n):
    return jax.random.normal(k, (m, n)) / jnp.sqrt(m), jnp.zeros(n)

  names = ("enc_h", "enc_out", "dec_h", "dec_out")
  shapes = ((pixels, hidden), (hidden, 2 * latent), (latent, hidden), (hidden, pixels))
  return {n: dict(zip(("w", "b"), dense(k, *s))) for n, k, s in zip(names, ks, shapes)}


def negative_elbo(params: dict, x: jax.Array, key: jax.Array, features: frozenset):
  """-(1/B) sum_b [log p(x_b|z_b) - KL(q(z|x_b) || N(0, I))] for x [B, 784], and the batch means."""

  def dense(name, h):
    return h @ params[name]["w"] + params[name]["b"]

  mu, log_sigma = jnp.split(dense("enc_out", jax.nn.relu(dense("enc_h", x))), 2, axis=-1)
  eps = rng.normal(key, mu.shape) if "eps" in features else 0.5
  logits = dense("dec_out", jax.nn.relu(dense("dec_h", mu + jnp.exp(log_sigma) * eps)))
  softplus = jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  log_p_x_given_z = jnp.sum(x * logits - softplus, axis=-1)
  kl = 0.5 * jnp.sum(mu**2 + jnp.exp(2.0 * log_sigma) - 2.0 * log_sigma - 1.0, axis=-1)
  elbo = log_p_x_given_z - kl
  return -jnp.mean(elbo), {"elbo": jnp.mean(elbo), "log_p_x_given_z": jnp.mean(log_p_x_given_z), "kl": jnp.mean(kl)}


def make_epoch(features: frozenset, batch_size: int, steps: int, optimizer=None):
  """``epoch((params, opt_state), data, key) -> ((params, opt_state), metrics)``, to be jitted."""
  optimizer = optimizer or optax.adam(1e-3)

  def epoch(state, data, key):
    keys = jax.random.split(key, steps)
    if "gather" in features:  # data: uint8 images [N, 28, 28, 1]
      order = jax.random.permutation(key, data.shape[0])[: steps * batch_size]
      xs = (order.reshape(steps, batch_size), keys)
    else:  # data: float 0/1 batches [steps, B, 784]
      xs = (data, keys)

    def step(state, inputs):
      params, opt_state = state
      batch, k = inputs
      k_x, k_z = jax.random.split(k)
      if "gather" in features:
        pixels = jnp.take(data, batch, axis=0).reshape(batch_size, -1)
        x = rng.bernoulli_from_uint8(k_x, pixels).astype(jnp.float32)
      else:
        x = batch
      grads, metrics = jax.grad(negative_elbo, has_aux=True)(params, x, k_z, features)

      def update(_):
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_opt_state

      if "skip" in features:
        grad_norm = optax.tree.norm(grads)
        ok = jnp.isfinite(metrics["elbo"]) & jnp.isfinite(grad_norm)
        new_state = jax.lax.cond(ok, update, lambda _: (params, opt_state), None)
        metrics = {**metrics, "grad_norm": grad_norm}
      else:
        new_state = update(None)
      return new_state, (metrics if "metrics" in features else None)

    state, metrics = jax.lax.scan(step, state, xs)
    return state, (jax.tree.map(jnp.mean, metrics) if "metrics" in features else None)

  params = init_params(jax.random.key(0))
  return epoch, (params, optimizer.init(params))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rounds", type=int, default=12)
  parser.add_argument("--steps", type=int, default=78, help="steps of 128 images per timed call")
  args = parser.parse_args()
  config = Config()
  b, steps = config.batch_size, args.steps
  images = jax.device_put(load_mnist().train[: b * steps])
  prebinarized = rng.bernoulli_from_uint8(jax.random.key(7), images.reshape(steps, b, -1)).astype(jnp.float32)

  runs = {}  # name -> [call(state, round) -> (state, metrics), state]
  variants = {"bare": frozenset(), **{f"+{f}": frozenset({f}) for f in FEATURES}, "all": frozenset(FEATURES)}
  variants["bare SGD"] = frozenset()
  for name, features in variants.items():
    epoch, state = make_epoch(features, b, steps, optax.sgd(1e-3) if name == "bare SGD" else None)
    data = images if "gather" in features else prebinarized
    compiled = jax.jit(epoch, donate_argnums=0).lower(state, data, jax.random.key(0)).compile()
    runs[name] = [lambda s, r, c=compiled, d=data: c(s, d, jax.random.key(r)), state]
  trainer = trainer_for(config, data_shape=images.shape[1:], train_size=60_000)
  state = trainer.init(jax.random.key(0))
  compiled = trainer.train_epoch.compile(state, images, jax.random.key(0))
  runs["jaxvae"] = [lambda s, r: compiled(s, images, jax.random.key(r)), state]
  ceiling = MatmulCeiling(config, images[0].size, jax.devices()[0])

  speeds = {name: [] for name in [*runs, "ceiling"]}
  for r in range(args.rounds + 1):  # round 0 is the warm-up
    for name, run in runs.items():
      t0 = time.perf_counter()
      run[1], metrics = run[0](run[1], r)
      jax.block_until_ready(metrics if metrics is not None else run[1])
      if r:
        speeds[name].append(steps * b / (time.perf_counter() - t0))
    if r:
      speeds["ceiling"].append(b / ceiling.seconds_per_step())

  print(f"{jax.devices()[0].device_kind}, {os.cpu_count()} cores; {args.rounds} rounds of {steps} steps of {b} images")
  print(f"{'step':10s} {'images/s':>10s} {'of ceiling':>11s} {'x jaxvae':>9s}")
  for name, xs in speeds.items():
    of_ceiling = statistics.median(x / c for x, c in zip(xs, speeds["ceiling"]))
    of_jaxvae = statistics.median(x / j for x, j in zip(xs, speeds["jaxvae"]))
    print(f"{name:10s} {statistics.median(xs):>10,.0f} {of_ceiling:>11.3f} {of_jaxvae:>9.3f}")


if __name__ == "__main__":
  main()
