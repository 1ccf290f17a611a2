"""Evaluation of a trained model: log p_theta(x) by importance sampling, the ELBO, active units.

The marginal likelihood log p_theta(x) = log E_{q_phi(z|x)}[ p_theta(x, z) / q_phi(z|x) ] is
estimated with k samples z_i ~ q_phi(z|x) as the proposal (Burda et al. 2016, k = 5000):

  log p^(x) = log (1/k) sum_i w_i,   w_i = p_theta(x|z_i) p(z_i) / q_phi(z_i|x),

a consistent estimator whose expectation is the bound IWAE_k(x) <= log p_theta(x). The
samples are drawn in chunks and combined with a running maximum, so memory is bounded for
any k. Its Monte-Carlo error per example, by the delta method, is

  Var[log p^(x)] ~= Var[w] / (k E[w]^2) = (k sum_i w_i^2 / (sum_i w_i)^2 - 1) / k.

Active units (Burda et al. 2016, Section 5.2): latent dimension u is active if
Cov_x( E_{q(u|x)}[u] ) > 0.01 over the test set.

Inference gaps (Cremer, Li & Duvenaud 2018): :func:`inference_gaps` splits
log p(x) - ELBO(q_phi) into the approximation gap of the Gaussian family and the
amortization gap of the encoder.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from jaxvae import plots
from jaxvae.checkpoint import restore_checkpoint
from jaxvae.config import Config, JaxvaeError
from jaxvae.data import ImageDataset, load_dataset, prepare_test_set
from jaxvae.distributions import Gaussian, gaussian_log_prob, gaussian_sample
from jaxvae.model import VAE, Params
from jaxvae.objectives import ImportanceTerms, importance_terms
from jaxvae.run import read_config, train_and_evaluate, write_json

ACTIVE_UNIT_THRESHOLD = 0.01


def _proposal_terms(vae: VAE, params: Params, x: jax.Array, key: jax.Array, k: int, q: Gaussian) -> ImportanceTerms:
  """Like :func:`jaxvae.objectives.importance_terms`, with a given Gaussian proposal ``q [B, d]``."""
  z = gaussian_sample(key, q, (k,))
  log_q = gaussian_log_prob(Gaussian(q.mean[None], q.log_scale[None]), z)
  out = vae.p_theta(params, z)
  return ImportanceTerms(vae.log_p_x_given_z(jnp.broadcast_to(x, (k,) + x.shape), out), vae.log_p_z(params, z), log_q)


def importance_sampled_log_px(
    vae: VAE, params: Params, x: jax.Array, key: jax.Array, k: int, chunk: int, proposal: Gaussian | None = None
) -> dict[str, jax.Array]:
  """log p_theta(x) by importance sampling with k samples from q_phi(z|x), in chunks.

  Args:
    vae: the model.
    params: its parameters.
    x: ``[B, H, W, C]`` data.
    key: PRNG key; chunk j of samples uses ``fold_in(key, j)``.
    k: samples per example.
    chunk: samples per chunk (``k`` is split into ``k // chunk`` chunks and a remainder).
    proposal: another Gaussian proposal ``[B, d]`` than q_phi(z|x) (one stochastic
      layer only), e.g. the optimized q* of :func:`optimize_local_q`.

  Returns:
    ``[B]`` arrays: ``log_px`` (the estimate), ``mc_var`` (its delta-method variance),
    ``mean_log_w`` (the k-sample ELBO estimate), ``log_p_x_given_z`` and ``kl``
    (the Monte-Carlo KL, log q - log p(z)), both averaged over the samples.
  """
  b = x.shape[0]
  zeros = jnp.zeros(b, jnp.float32)
  init = (jnp.full(b, -jnp.inf, jnp.float32), zeros, zeros, zeros, zeros, zeros)

  def add(carry, terms):
    m, s1, s2, sum_log_w, sum_rec, sum_kl = carry
    log_w = terms.log_w
    m_new = jnp.maximum(m, jnp.max(log_w, axis=0))
    scale = jnp.exp(m - m_new)  # 0 on the first chunk (m = -inf)
    u = jnp.exp(log_w - m_new[None])
    return (
        m_new,
        s1 * scale + jnp.sum(u, axis=0),
        s2 * scale * scale + jnp.sum(u * u, axis=0),
        sum_log_w + jnp.sum(log_w, axis=0),
        sum_rec + jnp.sum(terms.log_p_x_given_z, axis=0),
        sum_kl + jnp.sum(terms.log_q_z_given_x - terms.log_p_z, axis=0),
    )

  def draw(j, n):
    k_j = jax.random.fold_in(key, j)
    if proposal is None:
      return importance_terms(vae, params, x, k_j, n)
    return _proposal_terms(vae, params, x, k_j, n, proposal)

  full, rest = divmod(k, chunk)
  carry = init
  if full:
    carry, _ = jax.lax.scan(lambda c, j: (add(c, draw(j, chunk)), None), carry, jnp.arange(full))
  if rest:
    carry = add(carry, draw(full, rest))
  m, s1, s2, sum_log_w, sum_rec, sum_kl = carry
  return {
      "log_px": m + jnp.log(s1) - math.log(k),
      "mc_var": jnp.maximum(k * s2 / (s1 * s1) - 1.0, 0.0) / k,
      "mean_log_w": sum_log_w / k,
      "log_p_x_given_z": sum_rec / k,
      "kl": sum_kl / k,
  }


def make_batch_evaluator(vae: VAE, k: int, chunk: int):
  """A jitted ``(params, x [B, ...], key) -> per-example results`` for one batch of test images.

  Returns IS log p(x) and its variance, the k-sample ELBO terms, the closed-form KL where the
  model has one (else the estimate), and the per-layer posterior means E_q[z_l|x].
  """

  def evaluate_batch(params, x, key):
    k_is, k_means = jax.random.split(key)
    out = importance_sampled_log_px(vae, params, x, k_is, k, chunk)
    if vae.kl_q_p_z is not None:
      out["kl"] = jnp.sum(vae.kl_q_p_z(params, vae.q_phi(params, x)), axis=-1)
    out["elbo"] = out["log_p_x_given_z"] - out["kl"]
    out["latent_means"] = vae.latent_means(params, x, k_means)
    return out

  return jax.jit(evaluate_batch)


def load_run(workdir: str) -> tuple[Config, ImageDataset, Any, Any, int]:
  """Reads a run folder: its config, its dataset, a trainer, and the checkpointed state.

  Returns:
    ``(config, dataset, trainer, state, epoch)``.

  Raises:
    JaxvaeError: the folder, its config.json or its checkpoint is missing or unreadable.
  """
  from jaxvae.train import make_trainer

  config = read_config(workdir, f"{workdir} is not a run folder (no config.json): pass the --workdir of a `jaxvae train` run")
  dataset = load_dataset(config.dataset, config.tfds_data_dir, config.image_size)
  train_size = len(dataset.train_images[: config.n_train])
  trainer = make_trainer(config, dataset.image_shape, train_size=train_size)
  restored = restore_checkpoint(workdir, trainer.init(jax.random.key(0)))
  return config, dataset, trainer, restored.state, restored.epoch


def evaluate_run(
    workdir: str,
    *,
    k: int = 5000,
    batch_size: int = 100,
    n_test: int | None = None,
    seed: int = 0,
    progress: bool = True,
    write: bool = True,
) -> dict[str, Any]:
  """Evaluates the checkpoint of a run folder on its test set and writes ``eval.json``.

  The test set is the run's (same dataset, same fixed binarization); ``n_test`` takes
  its first images. Same arguments, same numbers.

  Args:
    workdir: a `jaxvae train` run folder.
    k: importance samples per test image (Burda et al.: 5000).
    batch_size: test images per batch.
    n_test: evaluate the first ``n_test`` test images (default: all of the run's).
    seed: seed of the importance samples.
    progress: show a progress bar.
    write: write ``workdir/eval.json``.

  Returns:
    The results (also in ``eval.json``): ``test_log_px`` and its standard errors
    (``test_log_px_se`` over test images, ``test_log_px_mc_se`` of the sampling),
    ``test_elbo``, ``test_kl``, ``test_log_p_x_given_z``, ``active_units`` (and per
    layer), ``bits_per_dim``, ``samples_per_sec``, ``seconds``.
  """
  for name, value in (("k", k), ("batch_size", batch_size)):
    if not isinstance(value, int) or value < 1:
      raise JaxvaeError(f"{name}={value!r} must be an integer >= 1")
  if n_test is not None and (not isinstance(n_test, int) or n_test < 1):
    raise JaxvaeError(f"n_test={n_test!r} must be a positive integer (or unset for the whole test set)")
  t_start = time.perf_counter()
  config, dataset, trainer, state, epoch = load_run(workdir)
  test = prepare_test_set(config, dataset)
  if n_test is not None:
    test = test[:n_test]
  n = len(test)
  batch_size = min(batch_size, n)
  chunk = max(1, min(k, 50_000 // batch_size))  # about 50,000 decoder passes in memory at once
  evaluate_batch = make_batch_evaluator(trainer.vae, k, chunk)
  key = jax.random.key(seed)
  params = state.params

  results = []
  t_loop = time.perf_counter()
  batches = range(0, n, batch_size)
  for i, start in enumerate(tqdm.tqdm(batches, desc=f"eval k={k}", unit="batch", disable=None if progress else True)):
    x = test[start : start + batch_size]
    valid = len(x)
    if valid < batch_size:  # pad the last batch: one compiled shape
      x = np.concatenate([x, np.zeros((batch_size - valid,) + x.shape[1:], x.dtype)])
    out = jax.device_get(evaluate_batch(params, jnp.asarray(x), jax.random.fold_in(key, i)))
    results.append(jax.tree.map(lambda a: a[:valid], out))
  loop_seconds = time.perf_counter() - t_loop  # includes the one compilation
  seconds = time.perf_counter() - t_start
  cat = jax.tree.map(lambda *a: np.concatenate(a), *results)

  log_px = cat["log_px"].astype(np.float64)
  pixels = int(np.prod(dataset.image_shape))
  active = [int(np.sum(np.var(m.astype(np.float64), axis=0) > ACTIVE_UNIT_THRESHOLD)) for m in cat["latent_means"]]
  summary = {
      "checkpoint_epoch": int(epoch),
      "k": k,
      "n_test": n,
      "seed": seed,
      "test_log_px": float(np.mean(log_px)),
      "test_log_px_se": float(np.std(log_px, ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
      "test_log_px_mc_se": float(np.sqrt(np.sum(cat["mc_var"].astype(np.float64))) / n),
      "test_elbo": float(np.mean(cat["elbo"])),
      "test_kl": float(np.mean(cat["kl"])),
      "test_log_p_x_given_z": float(np.mean(cat["log_p_x_given_z"])),
      "test_elbo_gap": float(np.mean(log_px) - np.mean(cat["elbo"])),
      "active_units": int(sum(active)),
      "active_units_per_layer": active,
      "bits_per_dim": float(-np.mean(log_px) / (pixels * math.log(2.0))),
      "samples_per_sec": n * k / loop_seconds,
      "seconds": seconds,
  }
  if write:
    write_json(os.path.join(workdir, "eval.json"), summary)
  return summary


# ---------------------------------------------------------------------------
# Inference gaps (Cremer, Li & Duvenaud 2018).
# ---------------------------------------------------------------------------


def gaussian_elbo(vae: VAE, params: Params, x: jax.Array, q: Gaussian, eps: jax.Array) -> jax.Array:
  """The ELBO of one data point under a given Gaussian q, with fixed noise ``eps``.

  ELBO(q) ~= (1/S) sum_s log p_theta(x | mu + sigma * eps_s) - KL(q || p(z)),

  Args:
    x: ``[H, W, C]`` one data point.
    q: a :class:`Gaussian` with ``[d]`` fields (any q, not only the encoder's).
    eps: ``[S, d]`` standard normal noise; the same noise scores two q's with common
      random numbers, so that their difference has no sampling noise of its own.
  """
  z = q.mean[None] + jnp.exp(q.log_scale)[None] * eps
  out = vae.p_theta(params, z)
  log_p_x_given_z = vae.log_p_x_given_z(jnp.broadcast_to(x, out.shape), out)
  return jnp.mean(log_p_x_given_z) - jnp.sum(vae.kl_q_p_z(params, q))


def optimize_local_q(
    vae: VAE, params: Params, x: jax.Array, key: jax.Array, *, steps: int = 300, lr: float = 1e-2,
    samples: int = 16, eval_samples: int = 1000,
) -> dict[str, jax.Array]:  # fmt: skip
  """q*(z|x): the best Gaussian for one data point, found by optimizing its own mean and scale.

  Starts from the encoder's q_phi(z|x) and maximizes the reparameterized ELBO with Adam
  (``samples`` draws per step). Both q's are then scored with the same ``eval_samples``
  draws; q* is the better of the two, so ELBO(q*) >= ELBO(q_phi) under that estimate.

  Args:
    x: ``[H, W, C]``; vmap this function over a batch.

  Returns:
    ``elbo_q_phi``, ``elbo_q_star`` (scalars) and ``q_star`` (a :class:`Gaussian`).
  """
  if vae.kl_q_p_z is None:
    raise JaxvaeError("inference gaps need a model with one Gaussian stochastic layer: use --model mlp or burda1")
  q_phi = jax.tree.map(lambda a: a[0], vae.q_phi(params, x[None]))
  k_opt, k_eval = jax.random.split(key)
  optimizer = optax.adam(lr)

  def step(carry, k):
    q, opt_state = carry
    eps = jax.random.normal(k, (samples,) + q.mean.shape)
    grads = jax.grad(lambda q: -gaussian_elbo(vae, params, x, q, eps))(q)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(q, updates), opt_state), None

  (q_opt, _), _ = jax.lax.scan(step, (q_phi, optimizer.init(q_phi)), jax.random.split(k_opt, steps))
  eps = jax.random.normal(k_eval, (eval_samples,) + q_phi.mean.shape)
  elbo_phi = gaussian_elbo(vae, params, x, q_phi, eps)
  elbo_opt = gaussian_elbo(vae, params, x, q_opt, eps)
  better = elbo_opt > elbo_phi
  q_star = jax.tree.map(lambda a, b: jnp.where(better, a, b), q_opt, q_phi)
  return {"elbo_q_phi": elbo_phi, "elbo_q_star": jnp.maximum(elbo_opt, elbo_phi), "q_star": q_star}


def inference_gaps(
    workdir: str,
    *,
    n_test: int = 1000,
    k: int = 5000,
    steps: int = 300,
    lr: float = 1e-2,
    batch_size: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
  """The amortization and approximation gaps of a run's model on its first ``n_test`` test images.

  log p(x) - ELBO(q_phi) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q_phi)]
                            approximation gap      amortization gap

  q* comes from :func:`optimize_local_q` (vmapped over the images, jitted); log p(x) is the
  importance-sampled estimate with k samples from q*, the better proposal (with q_phi as the
  proposal, a poorly amortized posterior makes the estimate fall below ELBO(q*)). Writes
  ``gaps.json`` and ``gaps.png`` (histograms of the per-image gaps) into ``workdir``.
  """
  for name, value in (("n_test", n_test), ("k", k), ("steps", steps), ("batch_size", batch_size)):
    if not isinstance(value, int) or value < 1:
      raise JaxvaeError(f"{name}={value!r} must be an integer >= 1")
  if not lr > 0:
    raise JaxvaeError(f"lr={lr!r} must be > 0")
  t_start = time.perf_counter()
  config, dataset, trainer, state, epoch = load_run(workdir)
  vae, params = trainer.vae, state.params
  if vae.kl_q_p_z is None:
    raise JaxvaeError("inference gaps need a model with one Gaussian stochastic layer: use --model mlp or burda1")
  test = prepare_test_set(config, dataset)[:n_test]
  n = len(test)
  b = min(batch_size, n)
  local = jax.jit(jax.vmap(lambda x, key: optimize_local_q(vae, params, x, key, steps=steps, lr=lr)))
  chunk = max(1, min(k, 50_000 // b))
  is_batch = jax.jit(lambda x, key, q: importance_sampled_log_px(vae, params, x, key, k, chunk, proposal=q)["log_px"])
  key = jax.random.key(seed)
  parts = []
  for i, start in enumerate(tqdm.tqdm(range(0, n, b), desc="gaps", unit="batch", disable=None if progress else True)):
    x = test[start : start + b]
    valid = len(x)
    if valid < b:
      x = np.concatenate([x, np.zeros((b - valid,) + x.shape[1:], x.dtype)])
    k_is, k_q = jax.random.split(jax.random.fold_in(key, i))
    opt = local(jnp.asarray(x), jax.random.split(k_q, b))
    log_px = is_batch(jnp.asarray(x), k_is, opt["q_star"])  # q*, the better proposal
    parts.append(jax.device_get({"log_px": log_px, "elbo_q_phi": opt["elbo_q_phi"], "elbo_q_star": opt["elbo_q_star"]}))
    parts[-1] = {name: v[:valid].astype(np.float64) for name, v in parts[-1].items()}
  cat = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
  amortization = cat["elbo_q_star"] - cat["elbo_q_phi"]
  approximation = cat["log_px"] - cat["elbo_q_star"]
  se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0  # noqa: E731
  result = {
      "checkpoint_epoch": int(epoch),
      "n_test": n,
      "k": k,
      "steps": steps,
      "lr": lr,
      "seed": seed,
      "log_px": float(np.mean(cat["log_px"])),
      "elbo_q_phi": float(np.mean(cat["elbo_q_phi"])),
      "elbo_q_star": float(np.mean(cat["elbo_q_star"])),
      "inference_gap": float(np.mean(cat["log_px"] - cat["elbo_q_phi"])),
      "amortization_gap": float(np.mean(amortization)),
      "amortization_gap_se": se(amortization),
      "approximation_gap": float(np.mean(approximation)),
      "approximation_gap_se": se(approximation),
      "seconds": time.perf_counter() - t_start,
  }
  plots.save_gap_histograms(os.path.join(workdir, "gaps.png"), amortization, approximation, result)
  write_json(os.path.join(workdir, "gaps.json"), result)
  return result


def train_then_evaluate(
    config: Config, folder: str, *, k: int = 5000, n_test: int | None = None, log=print
) -> tuple[dict[str, Any], dict[str, Any]]:
  """One experiment cell: trains ``config`` into ``folder`` and evaluates it, each step at most once.

  A folder with ``summary.json`` of a completed run is not trained again, one with
  ``eval.json`` not evaluated again, so an interrupted experiment continues where it
  stopped; a folder without a completed ``summary.json`` is an interrupted training and
  starts again. Returns ``(summary, evaluation)``.
  """
  summary_path, eval_path = os.path.join(folder, "summary.json"), os.path.join(folder, "eval.json")
  done = False
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      done = json.load(f).get("completed", True)
  if not done:
    log(f"== {folder}: training {config.epochs} epochs")
    train_and_evaluate(config, folder, overwrite=True, progress=False)
  if not os.path.exists(eval_path):
    log(f"== {folder}: evaluating, k = {k}")
    evaluate_run(folder, k=k, n_test=n_test, progress=False)
  with open(summary_path) as f, open(eval_path) as g:
    return json.load(f), json.load(g)
