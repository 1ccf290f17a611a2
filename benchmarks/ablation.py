"""What each optimisation of the training step gives: paired rounds of step variants.

  python benchmarks/ablation.py [--rounds 30] [--steps 78]

Each variant is jaxvae's scanned epoch with one piece swapped back to its straightforward
form (or, for reference, a piece removed). The rounds alternate the variants, so that each
round's ratio to the current step compares runs seconds apart; the median of those paired
ratios is robust to the drifting load of a shared machine.

Variants:
  current             the step as shipped
  jax.random binarize x ~ jax.random.bernoulli(key, pixel / 255) (rolled Threefry loop on CPU)
  jax.random eps      eps ~ jax.random.normal for z = mu + sigma * eps
  4-D likelihood      Bernoulli log-likelihood on [B, 28, 28, 1] arrays, summed over 3 axes
  sample axis at k=1  the ELBO's single z per example on a [1, B, ...] sample axis (as for k > 1)
  all four above      the first version of the step
  no Adam (SGD)       what Adam's per-parameter update costs
  static binarization no random draw for x at all (a different training set: reference only)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import jaxvae.core.distributions as D
import jaxvae.core.likelihoods
import jaxvae.core.objectives
import jaxvae.training.train as T
from jaxvae.core.data import static_binarize
from jaxvae.runs.build import make_objective, make_optimizer, make_vae
from jaxvae.runs.config import Config
from jaxvae.runs.sources import load_mnist


def jax_random_binarize(key, images):
  return jax.random.bernoulli(key, images.astype(jnp.float32) / 255.0).astype(jnp.float32)


def jax_random_sample(key, q, sample_shape=()):
  eps = jax.random.normal(key, sample_shape + q.mean.shape, q.mean.dtype)
  return q.mean + jnp.exp(q.log_scale) * eps


def bernoulli_log_prob_4d(x, logits, event_ndim=3):
  return jnp.sum(x * logits - jax.nn.softplus(logits), axis=(-3, -2, -1))


def elbo_with_sample_axis(vae, params, x, key, *, k=1, analytic_kl=True):
  """jaxvae.core.objectives.elbo as it was: z on a [k, B, d] sample axis even for k = 1."""
  q = vae.q_phi(params, x)
  z = jaxvae.core.objectives.gaussian_sample(key, q, (k,))
  log_p_x_given_z = jnp.mean(vae.log_p_x_given_z(jnp.broadcast_to(x, (k,) + x.shape), vae.p_theta(params, z)), axis=0)
  kl_per_dim = vae.kl_q_p_z(params, q)
  kl = jnp.sum(kl_per_dim, axis=-1)
  return jaxvae.core.objectives.ELBOTerms(log_p_x_given_z, kl, log_p_x_given_z - kl, kl_per_dim)


@contextlib.contextmanager
def swapped(binarize=False, eps=False, likelihood=False, sample_axis=False):
  saved = (
    jaxvae.core.likelihoods.dynamic_binarize,
    jaxvae.core.objectives.gaussian_sample,
    D.bernoulli_log_prob,
    jaxvae.core.objectives.elbo,
  )
  if binarize:
    jaxvae.core.likelihoods.dynamic_binarize = jax_random_binarize
  if eps:
    jaxvae.core.objectives.gaussian_sample = jax_random_sample
  if likelihood:
    D.bernoulli_log_prob = bernoulli_log_prob_4d
  if sample_axis:
    jaxvae.core.objectives.elbo = elbo_with_sample_axis
  try:
    yield
  finally:
    (
      jaxvae.core.likelihoods.dynamic_binarize,
      jaxvae.core.objectives.gaussian_sample,
      D.bernoulli_log_prob,
      jaxvae.core.objectives.elbo,
    ) = saved


def build(images, config=Config(), optimizer=None, **swaps):
  """A compiled epoch of ``config`` and its initial state, built with the given pieces swapped."""
  with swapped(**swaps):
    vae = make_vae(config, images.shape[1:])
    optimizer = optimizer or make_optimizer(config)
    objective = make_objective(config, 1)
    epoch = jax.jit(
      T.make_train_epoch(T.make_train_step(vae, objective, optimizer), config.batch_size), donate_argnums=0
    )
    params = vae.init(jax.random.key(0))
    state = T.TrainState(
      params, optimizer.init(params), jnp.zeros((), jnp.int32), objective.hparams, jnp.zeros((), jnp.int32)
    )
    return epoch.lower(state, images, jax.random.key(1)).compile(), state, images


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rounds", type=int, default=30)
  parser.add_argument("--steps", type=int, default=78, help="steps of 128 images per timed call")
  args = parser.parse_args()
  images = jax.device_put(load_mnist().train[: 128 * args.steps])
  variants = {
    "current": build(images),
    "jax.random binarize": build(images, binarize=True),
    "jax.random eps": build(images, eps=True),
    "4-D likelihood": build(images, likelihood=True),
    "sample axis at k=1": build(images, sample_axis=True),
    "all four above (first version)": build(images, binarize=True, eps=True, likelihood=True, sample_axis=True),
    "no Adam (SGD)": build(images, optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=1e-3)),
    # A static configuration trains on images binarized once (0/1), as `jaxvae train` prepares them.
    "static binarization": build(
      jax.device_put(static_binarize(images, jax.random.key(2))), config=Config(binarization="static")
    ),
  }
  states = {k: v[1] for k, v in variants.items()}
  speeds = {k: [] for k in variants}
  for r in range(args.rounds + 1):
    for name, (fn, _, data) in variants.items():
      t0 = time.perf_counter()
      states[name], metrics = fn(states[name], data, jax.random.key(r))
      jax.block_until_ready(metrics)
      if r:  # round 0 is the warm-up
        speeds[name].append(args.steps * 128 / (time.perf_counter() - t0))
      if metrics["skipped_steps"]:  # a skipped update costs almost nothing: the figure would be void
        raise SystemExit(
          f"variant {name!r} skipped {int(metrics['skipped_steps'])} updates: its timing is not comparable"
        )
  print(f"{'variant':34s} {'images/s (median)':>18s} {'paired ratio to current (IQR)':>32s}")
  for name, xs in speeds.items():
    ratios = sorted(x / c for x, c in zip(xs, speeds["current"]))
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    print(f"{name:34s} {statistics.median(xs):>18,.0f} {statistics.median(ratios):>14.3f} ({q1:.3f}-{q3:.3f})")


if __name__ == "__main__":
  main()
