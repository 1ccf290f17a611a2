"""IWAE against IWAE-DReG: the noise in the encoder's gradient, on a trained model.

  python examples/dreg/gradient_variance.py [--epochs 10] [--ks 1,5,50,200] [--draws 512] [--workdir runs/dreg]

Trains the default MNIST VAE (or reads ``--run W``), fixes a batch of B test images, and draws
the gradient of the IWAE_k loss N times (only the z samples differ) with two estimators of
the same gradient: plain IWAE (``jaxvae.core.objectives.iwae``) and the doubly reparameterized one
(``jaxvae.core.objectives.iwae_dreg``, Tucker et al. 2019). For every parameter j it estimates the
gradient's mean m_j and standard deviation s_j over the draws, and reports, for the encoder
(phi) and the decoder (theta):

  SNR   = median_j |m_j| / s_j          (Rainforth et al. 2018's signal-to-noise ratio, over the
                                         parameters whose gradient is not identically 0: the
                                         weights of pixels that are 0 in every image of the batch)
  noise = sum_j s_j^2                    (the trace of the gradient's covariance)

Rainforth et al. show that IWAE's encoder SNR falls like 1/sqrt(k) as k grows; Tucker et al.
that DReG's does not. Both estimators have the same expectation (the tests check it), and the
same decoder gradient. The same measurement is then made on the linear-Gaussian VAE of
:mod:`jaxvae.core.linear_gaussian` (D = 6, d = 3), with q_phi the true posterior shifted by 0.1:
a model whose importance weights are well behaved, where the asymptotic regime of those
results is reached at small k. Writes ``dreg.json`` and ``dreg.png`` into ``--workdir``.

References:
  G. Tucker, D. Lawson, S. Gu, C. J. Maddison. Doubly Reparameterized Gradient Estimators
  for Monte Carlo Objectives. ICLR 2019.
  T. Rainforth et al. Tighter Variational Bounds are Not Necessarily Better. ICML 2018.
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxvae
from jaxvae.core import linear_gaussian as LG
from jaxvae.runs.evaluate import load_run


def gradient_moments(vae, params, objective, x, keys):
  """Per-parameter mean and variance of ``grad objective.loss`` over the keys (Welford's update, in a scan)."""

  def grad(key):
    return jax.grad(lambda p: objective.loss(vae, p, x, key, objective.hparams, jnp.int32(0))[0])(params)

  def add(carry, key):
    n, mean, m2 = carry
    g = grad(key)
    n = n + 1
    delta = jax.tree.map(lambda gi, mi: gi - mi, g, mean)
    mean = jax.tree.map(lambda mi, di: mi + di / n, mean, delta)
    m2 = jax.tree.map(lambda m, di, gi, mi: m + di * (gi - mi), m2, delta, g, mean)
    return (n, mean, m2), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  (n, mean, m2), _ = jax.lax.scan(add, (jnp.float32(0), zeros, zeros), keys)
  return mean, jax.tree.map(lambda m: m / (n - 1), m2)


def summarize(mean, var, part):
  m = np.concatenate([np.ravel(a) for a in jax.tree.leaves(mean[part])]).astype(np.float64)
  v = np.concatenate([np.ravel(a) for a in jax.tree.leaves(var[part])]).astype(np.float64)
  live = v > 0  # a parameter whose gradient is 0 in every draw carries no signal and no noise
  snr = np.abs(m[live]) / np.sqrt(v[live])
  return {
    "snr_median": float(np.median(snr)),
    "snr_mean": float(np.mean(snr)),
    "noise": float(np.sum(v)),
    "signal": float(np.sum(m * m)),
    "parameters": int(live.sum()),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", help="a trained run folder (default: train the default VAE here)")
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--n-train", type=int)
  parser.add_argument("--ks", default="1,5,50,200")
  parser.add_argument("--draws", type=int, default=512, help="gradient draws per estimator and k")
  parser.add_argument("--batch", type=int, default=16, help="test images in the fixed batch")
  parser.add_argument("--workdir", default="runs/dreg")
  args = parser.parse_args(argv)
  ks = [int(k) for k in args.ks.split(",")]

  run = args.run
  if run is None:
    run = os.path.join(args.workdir, "model")
    config = jaxvae.Config(epochs=args.epochs, n_train=args.n_train)
    jaxvae.train_and_evaluate(config, run, overwrite=True, progress=False, verbose=False)
  loaded = load_run(run)
  vae, params = loaded.vae, loaded.params
  x = jnp.asarray(loaded.setup.test_x[: args.batch])
  keys = jax.random.split(jax.random.key(0), args.draws)

  rows = []
  print(f"{run} (epoch {loaded.epoch}): {args.batch} test images, {args.draws} gradient draws per estimator and k")
  print(
    f"{'k':>5} {'estimator':>10} {'encoder SNR':>12} {'encoder noise':>14} "
    f"{'decoder SNR':>12} {'decoder noise':>14} {'s':>6}"
  )
  for k in ks:
    for name, objective in (("IWAE", jaxvae.core.objectives.iwae(k)), ("DReG", jaxvae.core.objectives.iwae_dreg(k))):
      t0 = time.perf_counter()
      mean, var = jax.jit(lambda keys: gradient_moments(vae, params, objective, x, keys))(keys)
      row = {
        "k": k,
        "estimator": name,
        "encoder": summarize(mean, var, "encoder"),
        "decoder": summarize(mean, var, "decoder"),
        "seconds": time.perf_counter() - t0,
      }
      rows.append(row)
      e, d = row["encoder"], row["decoder"]
      print(
        f"{k:>5} {name:>10} {e['snr_median']:>12.4f} {e['noise']:>14.4g} {d['snr_median']:>12.4f} {d['noise']:>14.4g} "
        f"{row['seconds']:>6.1f}"
      )

  linear = linear_gaussian_rows(ks, keys)
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, "dreg.json"), "w") as f:
    json.dump(
      {
        "run": run,
        "epoch": loaded.epoch,
        "batch": args.batch,
        "draws": args.draws,
        "rows": rows,
        "linear_gaussian_rows": linear,
      },
      f,
      indent=1,
    )
  draw(os.path.join(args.workdir, "dreg.png"), rows, linear, ks, args)
  at = {r["estimator"]: r for r in rows if r["k"] == max(ks)}
  print(
    f"k = {max(ks)}: encoder gradient noise DReG / IWAE = "
    f"{at['DReG']['encoder']['noise'] / at['IWAE']['encoder']['noise']:.3f}, "
    f"encoder SNR DReG / IWAE = {at['DReG']['encoder']['snr_median'] / at['IWAE']['encoder']['snr_median']:.2f}; "
    f"wrote {os.path.join(args.workdir, 'dreg.png')}"
  )


def linear_gaussian_rows(ks, keys):
  """The same measurement on the linear-Gaussian VAE, q_phi = the true posterior shifted by 0.1, 4 data points."""
  vae = LG.make_linear_gaussian_vae(6, 3)
  params = vae.init(jax.random.key(0))
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 3)))
  params["decoder"] = {
    "W": jnp.asarray(q * np.array([2.0, 1.0, 0.5]), jnp.float32),
    "b": jnp.linspace(-1.0, 1.0, 6),
    "log_sigma": jnp.asarray(np.log(0.7), jnp.float32),
  }
  posterior = LG.optimal_encoder(params)
  params["encoder"] = {**posterior, "c": posterior["c"] + 0.1, "s": posterior["s"] - 0.05}
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6)), jnp.float32)
  rows = []
  for k in ks:
    for name, objective in (("IWAE", jaxvae.core.objectives.iwae(k)), ("DReG", jaxvae.core.objectives.iwae_dreg(k))):
      mean, var = jax.jit(lambda keys: gradient_moments(vae, params, objective, x, keys))(keys)
      rows.append({"k": k, "estimator": name, "encoder": summarize(mean, var, "encoder")})
  print(
    "linear-Gaussian VAE, q_phi = the true posterior shifted by 0.1: median encoder SNR "
    + ", ".join(f"k={r['k']} {r['estimator']} {r['encoder']['snr_median']:.3f}" for r in rows)
  )
  return rows


def draw(path, rows, linear, ks, args):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(14, 4))
  panels = (
    (rows, "encoder", "MNIST VAE: encoder (phi) gradient"),
    (rows, "decoder", "MNIST VAE: decoder (theta) gradient"),
    (linear, "encoder", "linear-Gaussian VAE: encoder gradient"),
  )
  for ax, (table, part, title) in zip(axes, panels):
    for name, color in (("IWAE", "tab:blue"), ("DReG", "tab:red")):
      snr = [r[part]["snr_median"] for r in table if r["estimator"] == name]
      ax.plot(ks, snr, marker="o", color=color, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k (samples of z per example)")
    ax.set_ylabel("median SNR |E g| / std g")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
  fig.suptitle(
    f"signal-to-noise ratio of the IWAE_k gradient, {args.draws} draws (MNIST: {args.batch} test images)", fontsize=10
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
