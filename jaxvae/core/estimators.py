"""Pure estimators of a trained model: log p_theta(x) by importance sampling, a Gaussian q's ELBO,
the locally optimal q*(z|x) within the model's posterior family, and the posterior means behind
active units.

The marginal likelihood log p_theta(x) = log E_{q(z|x)}[ p_theta(x, z) / q(z|x) ] is estimated
with k samples z_i ~ q (q_phi(z|x), or another proposal) (Burda et al. 2016, k = 5000):

  log p^(x) = log (1/k) sum_i w_i,   w_i = p_theta(x|z_i) p(z_i) / q(z_i|x),

a consistent estimator whose expectation is the bound IWAE_k(x) <= log p_theta(x). The samples
are drawn in chunks and combined with a running maximum, so memory is bounded for any k. Its
Monte-Carlo error per example, by the delta method, is

  Var[log p^(x)] ~= Var[w] / (k E[w]^2) = (k sum_i w_i^2 / (sum_i w_i)^2 - 1) / k.

Active units (Burda et al. 2016, Section 5.2): latent dimension u is active if
Cov_x( E_{q(u|x)}[u] ) > 0.01 over the test set.

Every function here is pure and jittable; :mod:`jaxvae.runs.evaluate` runs them over a run's test set.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvae.core.distributions import Gaussian
from jaxvae.core.model import VAE, Params
from jaxvae.core.objectives import importance_terms
from jaxvae.core.trees import map_batches
from jaxvae.errors import JaxvaeError

ACTIVE_UNIT_THRESHOLD = 0.01


def importance_sampled_log_px(
  vae: VAE, params: Params, x: jax.Array, key: jax.Array, k: int, chunk: int, proposal: Gaussian | None = None
) -> dict[str, jax.Array]:
  """log p_theta(x) by importance sampling with k samples from q_phi(z|x), in chunks.

  Args:
    vae: the model.
    params: its parameters.
    x: ``[B, *data_shape]`` data.
    key: PRNG key; chunk j of samples uses ``fold_in(key, j)``.
    k: samples per example.
    chunk: samples per chunk (``k`` is split into ``k // chunk`` chunks and a remainder).
    proposal: another proposal than q_phi(z|x): the posterior family at another encoder
      output ``h`` (batch ``B``; for the Gaussian posterior a Gaussian ``[B, d]``), e.g. the
      optimized q* of :func:`optimize_local_q`.

  Returns:
    ``[B]`` arrays, in the dtype of the model's log-densities (float64 under
    ``jax_enable_x64`` with float64 parameters): ``log_px`` (the estimate), ``mc_var`` (its
    delta-method variance), ``mean_log_w`` (the k-sample ELBO estimate), ``log_p_x_given_z``
    and ``kl`` (the Monte-Carlo KL, log q - log p(z)), both averaged over the samples.
  """

  def draw(j, n):
    return importance_terms(vae, params, x, jax.random.fold_in(key, j), n, h=proposal)

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

  b = x.shape[0]
  dtype = jax.eval_shape(lambda: draw(0, 1).log_w).dtype
  zeros = jnp.zeros(b, dtype)
  carry = (jnp.full(b, -jnp.inf, dtype), zeros, zeros, zeros, zeros, zeros)
  full, rest = divmod(k, chunk)
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
  """A jitted ``(params, x [B, ...], key) -> per-example results`` for one batch of test examples.

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


def latent_variances(
  vae: VAE, params: Params, x: jax.Array, key: jax.Array, batch_size: int = 1000
) -> tuple[jax.Array, ...]:
  """Cov_x(E_q[z_l|x]) per latent dimension of each stochastic layer over the examples ``x``: ``([d_l], ...)``.

  The posterior means are computed in chunks of ``batch_size`` (chunk i with ``fold_in(key, i)``).
  """
  means = map_batches(lambda xb, i: vae.latent_means(params, xb, jax.random.fold_in(key, i)), x, batch_size)
  return tuple(jnp.var(m, axis=0) for m in means)


def active_units(variances: Any) -> list[int]:
  """Active units per stochastic layer: dimensions whose :func:`latent_variances` exceed 0.01."""
  return [int(np.sum(np.asarray(v) > ACTIVE_UNIT_THRESHOLD)) for v in variances]


# ---------------------------------------------------------------------------
# A Gaussian q of one data point (Cremer, Li & Duvenaud 2018).
# ---------------------------------------------------------------------------


def gaussian_elbo(vae: VAE, params: Params, x: jax.Array, q: Gaussian, eps: jax.Array) -> jax.Array:
  """The ELBO of one data point under a given Gaussian q, with fixed noise ``eps``.

  ELBO(q) ~= (1/S) sum_s log p_theta(x | mu + sigma * eps_s) - KL(q || p(z)),

  Args:
    x: ``[*data_shape]`` one data point.
    q: a :class:`Gaussian` with ``[d]`` fields (any q, not only the encoder's).
    eps: ``[S, d]`` standard normal noise; the same noise scores two q's with common
      random numbers, so that their difference has no sampling noise of its own.
  """
  z = q.mean[None] + jnp.exp(q.log_scale)[None] * eps
  out = vae.p_theta(params, z)
  log_p_x_given_z = vae.log_p_x_given_z(jnp.broadcast_to(x, (eps.shape[0],) + x.shape), out)
  return jnp.mean(log_p_x_given_z) - jnp.sum(vae.kl_q_p_z(params, q))


def family_elbo(vae: VAE, params: Params, x: jax.Array, h: Any, key: jax.Array, samples: int) -> jax.Array:
  """The ELBO of one data point under the posterior family at encoder output ``h``, by Monte Carlo.

  ELBO(q_h) ~= (1/S) sum_s [ log p_theta(x|z_s) + log p(z_s) - log q_h(z_s|x) ],  z_s ~ q_h,

  with ``h`` for a batch of one (leading axis 1) and log q exact (a flow's log-determinant, a
  hierarchy's layers). The same ``key`` scores two h's with common random numbers.
  """
  z, log_q = vae.posterior.sample(params, h, key, (samples,))
  x_s = jnp.broadcast_to(x, (samples, 1) + x.shape)
  return jnp.mean(vae.log_p_x_given_z(x_s, vae.p_theta(params, z)) + vae.log_p_z(params, z) - log_q)


def optimize_local_q(
  vae: VAE,
  params: Params,
  x: jax.Array,
  key: jax.Array,
  *,
  steps: int = 300,
  lr: float = 1e-2,
  samples: int = 16,
  eval_samples: int = 1000,
) -> dict[str, jax.Array]:
  """q*(z|x): the best member of the model's posterior family for one data point.

  The family is what the posterior makes of an encoder output h: for a Gaussian q, every
  N(mu, diag sigma^2); for an IAF, the flow with its trained MADE networks applied to any base
  Gaussian and context; for a hierarchy (burda2, the ladder), its shared upper networks with
  any bottom-up outputs. q* optimizes h for this x alone, starting from the encoder's h_phi(x),
  maximizing the reparameterized ELBO with Adam (``samples`` draws per step; the closed-form KL
  where the model has one: :func:`gaussian_elbo`, else :func:`family_elbo`). Both q's are then
  scored with the same ``eval_samples`` draws; q* is the better of the two, so ELBO(q*) >=
  ELBO(q_phi) under that estimate.

  Args:
    x: ``[*data_shape]``; vmap this function over a batch.

  Returns:
    ``elbo_q_phi``, ``elbo_q_star`` (scalars) and ``q_star``, the optimized encoder output
    (for the Gaussian posterior, a :class:`Gaussian` with ``[d]`` fields).
  """
  if vae.kl_q_p_z is not None:  # a Gaussian q with a closed-form KL: h is q itself, for one x

    def elbo_of(q, k, n):
      return gaussian_elbo(vae, params, x, q, jax.random.normal(k, (n,) + q.mean.shape, q.mean.dtype))

    h_phi = jax.tree.map(lambda a: a[0], vae.q_phi(params, x[None]))
    one = lambda h: h  # noqa: E731
  else:
    if vae.posterior is None or vae.encode is None:
      raise JaxvaeError("inference gaps need a model built with jaxvae.VAE.from_modules (its encoder and posterior)")

    def elbo_of(h, k, n):
      return family_elbo(vae, params, x, h, k, n)

    h_phi = vae.encode(params, x[None])  # a batch of one: what the posterior takes
    one = lambda h: jax.tree.map(lambda a: a[0], h)  # noqa: E731
  k_opt, k_eval = jax.random.split(key)
  optimizer = optax.adam(lr)

  def step(carry, k):
    h, opt_state = carry
    grads = jax.grad(lambda h: -elbo_of(h, k, samples))(h)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(h, updates), opt_state), None

  (h_opt, _), _ = jax.lax.scan(step, (h_phi, optimizer.init(h_phi)), jax.random.split(k_opt, steps))
  elbo_phi = elbo_of(h_phi, k_eval, eval_samples)
  elbo_opt = elbo_of(h_opt, k_eval, eval_samples)
  better = elbo_opt > elbo_phi
  h_star = jax.tree.map(lambda a, b: jnp.where(better, a, b), h_opt, h_phi)
  return {"elbo_q_phi": elbo_phi, "elbo_q_star": jnp.maximum(elbo_opt, elbo_phi), "q_star": one(h_star)}
