"""Objectives: the ELBO, beta, free bits, KL warm-up and the IWAE bound, per example, in nats.

For one data point x, with importance weights w(z) = p_theta(x, z) / q_phi(z|x),

  ELBO(x)      = E_q[ log w(z) ] = E_q[ log p_theta(x|z) ] - KL( q_phi(z|x) || p(z) )
  IWAE_k(x)    = E_{z_1..z_k ~ q}[ log (1/k) sum_i w(z_i) ]
  ELBO(x) = IWAE_1(x) <= IWAE_k(x) <= IWAE_{k+1}(x) <= log p_theta(x),

and log p_theta(x) - ELBO(x) = KL( q_phi(z|x) || p_theta(z|x) ) >= 0.

Expectations are estimated with reparameterized samples z = mu + sigma * eps
(Kingma & Welling 2014, eq. 7). The KL is either the closed form (their eq. 10,
"analytic"; for models that have one) or the estimate log q_phi(z|x) - log p(z).
All terms are summed over pixels and latent dimensions; a batch objective is their
mean over examples.

References:
  Kingma & Welling (2014), "Auto-Encoding Variational Bayes", arXiv:1312.6114.
  Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders", ICLR.
  Higgins et al. (2017), "beta-VAE", ICLR (the weight beta on the KL).
  Bowman et al. (2016), "Generating Sentences from a Continuous Space" (KL warm-up).
  Kingma et al. (2016), "Improved Variational Inference with Inverse Autoregressive Flow"
  (free bits, their eq. 15).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxvae.distributions import gaussian_sample
from jaxvae.model import VAE, Params


class ELBOTerms(NamedTuple):
  """Per-example terms of the ELBO estimate, each ``[B]`` float in nats.

  Attributes:
    log_p_x_given_z: log p_theta(x|z) averaged over the k samples z ~ q_phi(z|x).
    kl: KL(q_phi(z|x) || p(z)) (closed form, or the estimate averaged over the samples).
    elbo: log_p_x_given_z - kl.
    kl_per_dim: ``[B, d]`` closed-form KL of each latent dimension (sums to ``kl``),
      or None where the KL is estimated.
  """

  log_p_x_given_z: jax.Array
  kl: jax.Array
  elbo: jax.Array
  kl_per_dim: jax.Array | None = None


class ImportanceTerms(NamedTuple):
  """The three log-densities at k samples z_i ~ q_phi(z|x), each ``[k, B]``.

  log w_i = log p_theta(x|z_i) + log p(z_i) - log q_phi(z_i|x).
  """

  log_p_x_given_z: jax.Array
  log_p_z: jax.Array
  log_q_z_given_x: jax.Array

  @property
  def log_w(self) -> jax.Array:
    return self.log_p_x_given_z + self.log_p_z - self.log_q_z_given_x


def _log_p_x_given_z(vae: VAE, params: Params, x: jax.Array, z, k: int) -> jax.Array:
  """log p_theta(x|z) for z with a leading sample axis ``[k, B, ...]`` -> ``[k, B]``."""
  return vae.log_p_x_given_z(jnp.broadcast_to(x, (k,) + x.shape), vae.p_theta(params, z))


def importance_terms(vae: VAE, params: Params, x: jax.Array, key: jax.Array, k: int) -> ImportanceTerms:
  """Draws z_1..z_k ~ q_phi(z|x) (reparameterized) and scores them.

  Args:
    vae: the model.
    params: its parameters.
    x: ``[B, H, W, C]`` data.
    key: PRNG key of the draws.
    k: samples per data point.

  Returns:
    :class:`ImportanceTerms` with ``[k, B]`` fields.
  """
  z, log_q = vae.sample_q(params, x, key, (k,))
  return ImportanceTerms(_log_p_x_given_z(vae, params, x, z, k), vae.log_p_z(params, z), log_q)


def elbo(
    vae: VAE, params: Params, x: jax.Array, key: jax.Array, *, k: int = 1, analytic_kl: bool = True
) -> ELBOTerms:
  """The reparameterized ELBO of each example, averaged over k samples of z.

  z_i = mu_phi(x) + sigma_phi(x) * eps_i,  eps_i ~ N(0, I),  i = 1..k
  ELBO(x) ~= (1/k) sum_i log p_theta(x|z_i) - KL(q_phi(z|x) || p(z))            (analytic_kl)
  ELBO(x) ~= (1/k) sum_i [ log p_theta(x|z_i) + log p(z_i) - log q_phi(z_i|x) ]  (otherwise)

  Both are unbiased estimates of the ELBO and differentiable in (theta, phi). The
  closed form is used only where the model has one (``vae.kl_q_p_z``); otherwise
  the estimate is used whatever ``analytic_kl`` says.

  Args:
    vae: the model.
    params: its parameters.
    x: ``[B, H, W, C]`` data.
    key: PRNG key of the eps draws.
    k: samples of z per example.
    analytic_kl: closed-form KL where the model has one.

  Returns:
    :class:`ELBOTerms` with ``[B]`` fields.
  """
  if analytic_kl and vae.kl_q_p_z is not None:
    q = vae.q_phi(params, x)
    if k == 1:  # no sample axis: [1, B, ...] arrays make XLA transpose the weight-gradient operands
      log_p_x_given_z = vae.log_p_x_given_z(x, vae.p_theta(params, gaussian_sample(key, q)))
    else:
      log_p_x_given_z = jnp.mean(_log_p_x_given_z(vae, params, x, gaussian_sample(key, q, (k,)), k), axis=0)
    kl_per_dim = vae.kl_q_p_z(params, q)
    kl = jnp.sum(kl_per_dim, axis=-1)
    return ELBOTerms(log_p_x_given_z, kl, log_p_x_given_z - kl, kl_per_dim)
  t = importance_terms(vae, params, x, key, k)
  log_p_x_given_z = jnp.mean(t.log_p_x_given_z, axis=0)
  kl = jnp.mean(t.log_q_z_given_x - t.log_p_z, axis=0)
  return ELBOTerms(log_p_x_given_z, kl, log_p_x_given_z - kl)


def iwae_bound(log_w: jax.Array) -> jax.Array:
  """The importance-weighted bound log (1/k) sum_i w_i, stably, from ``[k, B]`` log-weights.

  log (1/k) sum_i exp(log w_i) = m + log sum_i exp(log w_i - m) - log k,  m = max_i log w_i.
  With k = 1 it is the single-sample ELBO estimate.

  Returns:
    ``[B]`` nats.
  """
  return jax.nn.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


def beta_elbo_loss(terms: ELBOTerms, beta: jax.Array | float = 1.0, free_bits: jax.Array | float = 0.0) -> jax.Array:
  """The vae training loss: the negative beta-ELBO, averaged over the batch, with free bits.

  loss = -(1/B) sum_b log p_theta(x_b|z_b) + beta * R,
  R = (1/B) sum_b KL_b                                    if free_bits = 0,
  R = sum_j max(free_bits, (1/B) sum_b KL_bj)             otherwise (Kingma et al. 2016, eq. 15),

  where KL_bj is the KL of latent dimension j for example b: a dimension whose
  batch-mean KL is below the floor contributes a constant and gets no KL gradient.
  With beta = 1 and no free bits this is the negative ELBO in nats per example.
  beta and free_bits may be traced (one compiled step serves every value).

  Args:
    terms: per-example :class:`ELBOTerms`; ``kl_per_dim`` is needed for free bits.
    beta: the KL weight (Higgins et al. 2017), or its warm-up value.
    free_bits: the per-dimension floor in nats.

  Returns:
    A scalar.
  """
  kl = jnp.mean(terms.kl)
  if terms.kl_per_dim is not None:
    floored = jnp.sum(jnp.maximum(free_bits, jnp.mean(terms.kl_per_dim, axis=0)))
    kl = jnp.where(free_bits > 0, floored, kl)
  return -jnp.mean(terms.log_p_x_given_z) + beta * kl


def kl_warmup(beta: jax.Array | float, warmup_steps: jax.Array | float) -> optax.Schedule:
  """KL warm-up as an optax schedule: beta_t = beta * min(1, t / T), or beta if T = 0.

  The KL weight rises linearly from 0 at step 0 to beta at step T (Bowman et al.
  2016; Sonderby et al. 2016). ``beta`` and ``warmup_steps`` may be traced arrays,
  so runs with different warm-ups share one compiled step.

  Args:
    beta: the final KL weight.
    warmup_steps: T, in optimizer steps.

  Returns:
    ``count -> beta_count``.
  """

  def schedule(count):
    ramp = jnp.minimum(1.0, count / jnp.maximum(warmup_steps, 1.0))
    return beta * jnp.where(warmup_steps > 0, ramp, 1.0)

  return schedule
