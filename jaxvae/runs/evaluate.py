"""Evaluation of a run folder: ``jaxvae eval`` (log p(x), ELBO, active units) and ``jaxvae gaps``.

These drivers read a run folder (its config, its data, its checkpoint), run the pure
estimators of :mod:`jaxvae.core.estimators` over the test set in batches (one loop,
:func:`over_batches`), and write ``eval.json`` or ``gaps.json``. A model or data handed over
in Python when the run was trained are handed over again (``model=``, ``data=``). The results
also go to the run's TensorBoard and W&B runs where it has them (``eval/...``, ``gaps/...`` at
step = the checkpoint's epoch; :func:`jaxvae.watch.writers.log_results`).

Inference gaps (Cremer, Li & Duvenaud 2018) split log p(x) - ELBO(q_phi) into the
approximation gap of the Gaussian family and the amortization gap of the encoder.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core.data import Dataset
from jaxvae.core.estimators import active_units, importance_sampled_log_px, make_batch_evaluator, optimize_local_q
from jaxvae.core.likelihoods import bits_per_dim
from jaxvae.core.model import VAE, Params
from jaxvae.core.trees import concat
from jaxvae.errors import JaxvaeError
from jaxvae.runs.folder import read_config, write_json
from jaxvae.runs.setup import Setup, prepare_model
from jaxvae.training.checkpoint import restore_params
from jaxvae.watch import plots
from jaxvae.watch.progress import Progress
from jaxvae.watch.writers import log_results


class Loaded(NamedTuple):
  """A run folder read back: its checked config, model and data (a :class:`~jaxvae.runs.setup.Setup`), parameters."""

  setup: Setup
  params: Params
  epoch: int

  @property
  def config(self):
    return self.setup.config

  @property
  def vae(self) -> VAE:
    return self.setup.vae


def load_run(workdir: str, *, model=None, data: Dataset | None = None) -> Loaded:
  """Reads a run folder: its config, its model and data (rebuilt, or as given), and the checkpointed parameters.

  Raises:
    JaxvaeError: the folder, its config.json or its checkpoint is missing or unreadable, or
      the model or data were handed over in Python and are not given again.
  """
  config = read_config(
    workdir, f"{workdir} is not a run folder (no config.json): pass the --workdir of a `jaxvae train` run"
  )
  setup = prepare_model(config, model=model, data=data)
  params, epoch = restore_params(workdir, setup.vae.init(jax.random.key(0), setup.train_data))
  return Loaded(setup, params, epoch)


def over_batches(
  fn: Callable[[jax.Array, int], dict[str, Any]], x: np.ndarray, batch_size: int, desc: str, progress: bool
) -> dict[str, Any]:
  """``fn(batch, i)`` over consecutive batches of ``x`` (the last one padded: one compiled shape), on the host."""
  n = len(x)
  parts = []
  bar = Progress(progress)
  bar.start(desc, total=-(-n // batch_size), unit="batch")
  for i, start in enumerate(range(0, n, batch_size)):
    bar.update_to(i)
    batch = x[start : start + batch_size]
    valid = len(batch)
    if valid < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - valid,) + batch.shape[1:], batch.dtype)])
    out = jax.device_get(fn(jnp.asarray(batch), i))
    parts.append(jax.tree.map(lambda a: a[:valid], out))
  bar.close()
  return concat(parts, np)


def _check_ints(**values: Any) -> None:
  for name, value in values.items():
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
      raise JaxvaeError(f"{name}={value!r} must be an integer >= 1")


def passes_in_memory(vae: VAE) -> int:
  """How many decoder passes an importance-sampled estimate keeps in memory at once: 50,000, fewer for a
  model whose decoder reads a large latent (the VDVAE's top-down state), about 800 MB of it in all."""
  return max(64, min(50_000, 200_000_000 // (32 * vae.latent_dim)))


def evaluate_run(
  workdir: str,
  *,
  k: int = 5000,
  batch_size: int = 100,
  n_test: int | None = None,
  seed: int = 0,
  progress: bool = True,
  write: bool = True,
  model=None,
  data: Dataset | None = None,
) -> dict[str, Any]:
  """Evaluates the checkpoint of a run folder on its test set and writes ``eval.json``.

  The test set is the run's (same dataset, same fixed binarization); ``n_test`` takes
  its first examples. Same arguments, same numbers.

  Args:
    workdir: a `jaxvae train` run folder.
    k: importance samples per test example (Burda et al.: 5000).
    batch_size: test examples per batch.
    n_test: evaluate the first ``n_test`` test examples (default: all of the run's).
    seed: seed of the importance samples.
    progress: show a progress bar.
    write: write ``workdir/eval.json`` (and add the results to the run's TensorBoard and W&B runs).
    model, data: the model (or its factory) and data, if they were handed over in Python.

  Returns:
    The results (also in ``eval.json``): ``test_log_px`` and its standard errors
    (``test_log_px_se`` over test examples, ``test_log_px_mc_se`` of the sampling),
    ``test_elbo``, ``test_kl``, ``test_log_p_x_given_z``, ``active_units`` (and per
    layer), ``bits_per_dim`` (meaningful where ``eight_bit``: the data are 8-bit, not binary),
    ``samples_per_sec``, ``seconds``.
  """
  _check_ints(k=k, batch_size=batch_size, n_test=n_test)
  t_start = time.perf_counter()
  run = load_run(workdir, model=model, data=data)
  test = run.setup.test_x[:n_test]
  n = len(test)
  batch_size = min(batch_size, n)
  chunk = max(1, min(k, passes_in_memory(run.vae) // batch_size))
  evaluate_batch = make_batch_evaluator(run.vae, k, chunk)
  key = jax.random.key(seed)
  t_loop = time.perf_counter()
  cat = over_batches(
    lambda x, i: evaluate_batch(run.params, x, jax.random.fold_in(key, i)), test, batch_size, f"eval k={k}", progress
  )
  loop_seconds = time.perf_counter() - t_loop  # includes the one compilation

  log_px = cat["log_px"].astype(np.float64)
  active = active_units([np.var(m.astype(np.float64), axis=0) for m in cat["latent_means"]])
  summary = {
    "checkpoint_epoch": run.epoch,
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
    "bits_per_dim": bits_per_dim(float(np.mean(log_px)), run.vae.data_shape),
    "eight_bit": run.vae.likelihood.eight_bit,
    "samples_per_sec": n * k / loop_seconds,
    "seconds": time.perf_counter() - t_start,
  }
  if write:
    write_json(os.path.join(workdir, "eval.json"), summary)
    log_results(workdir, "eval", summary, run.epoch)
  return summary


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
  model=None,
  data: Dataset | None = None,
) -> dict[str, Any]:
  """The amortization and approximation gaps of a run's model on its first ``n_test`` test examples.

  log p(x) - ELBO(q_phi) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q_phi)]
                            approximation gap      amortization gap

  q* comes from :func:`jaxvae.core.estimators.optimize_local_q` (vmapped over the examples,
  jitted): the best member of the model's posterior family for each x, found by optimizing the
  encoder's output for that x alone (a Gaussian's mean and scale; an IAF's base Gaussian and
  context with its trained flow networks fixed; a hierarchy's bottom-up outputs with its upper
  networks fixed). The approximation gap is therefore the gap of that family, the amortization
  gap what the shared encoder loses against it. log p(x) is the importance-sampled estimate
  with k samples from q*, the better
  proposal (with q_phi as the proposal, a poorly amortized posterior makes the estimate fall
  below ELBO(q*)). Writes ``gaps.json`` and ``gaps.png`` (histograms of the per-example gaps).
  """
  _check_ints(n_test=n_test, k=k, steps=steps, batch_size=batch_size)
  if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
    raise JaxvaeError(f"lr={lr!r} must be > 0")
  t_start = time.perf_counter()
  run = load_run(workdir, model=model, data=data)
  vae, params = run.vae, run.params
  test = run.setup.test_x[:n_test]
  n = len(test)
  b = min(batch_size, n)
  local = jax.jit(jax.vmap(lambda x, key: optimize_local_q(vae, params, x, key, steps=steps, lr=lr)))
  chunk = max(1, min(k, passes_in_memory(vae) // b))
  is_batch = jax.jit(lambda x, key, q: importance_sampled_log_px(vae, params, x, key, k, chunk, proposal=q)["log_px"])
  key = jax.random.key(seed)

  def gaps_of(x, i):
    k_is, k_q = jax.random.split(jax.random.fold_in(key, i))
    opt = local(x, jax.random.split(k_q, b))
    log_px = is_batch(x, k_is, opt["q_star"])  # q*, the better proposal
    return {"log_px": log_px, "elbo_q_phi": opt["elbo_q_phi"], "elbo_q_star": opt["elbo_q_star"]}

  cat = {name: v.astype(np.float64) for name, v in over_batches(gaps_of, test, b, "gaps", progress).items()}
  amortization = cat["elbo_q_star"] - cat["elbo_q_phi"]
  approximation = cat["log_px"] - cat["elbo_q_star"]
  se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0  # noqa: E731
  result = {
    "checkpoint_epoch": run.epoch,
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
  log_results(workdir, "gaps", result, run.epoch)
  return result
