"""Objectives: the ELBO and the beta-weighted training loss, per example, in nats.

For one data point x, with q = q_phi(z|x), the evidence lower bound is

  ELBO(x) = E_{q(z|x)}[ log p_theta(x|z) ] - KL( q_phi(z|x) || p(z) )  <=  log p_theta(x),

and log p_theta(x) - ELBO(x) = KL( q_phi(z|x) || p_theta(z|x) ) >= 0.

It is estimated with one reparameterized sample z = mu + sigma * eps (Kingma &
Welling 2014, eq. 7 with L = 1). The KL is either the closed form (their eq. 10,
"analytic") or the single-sample estimate log q_phi(z|x) - log p(z) ("mc", their
eq. 6). All terms are summed over pixels and latent dimensions; a batch objective
is their mean over examples.

References:
  Kingma & Welling (2014), "Auto-Encoding Variational Bayes", arXiv:1312.6114.
  Higgins et al. (2017), "beta-VAE", ICLR (the beta weight on the KL).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxvae.distributions import gaussian_log_prob, gaussian_sample
from jaxvae.model import VAE, Params


class ELBOTerms(NamedTuple):
  """Per-example terms of the single-sample ELBO estimate, each ``[...]`` float in nats.

  Attributes:
    log_p_x_given_z: log p_theta(x|z) at z ~ q_phi(z|x): the reconstruction term.
    kl: KL(q_phi(z|x) || p(z)) (closed form or single-sample estimate).
    elbo: log_p_x_given_z - kl.
  """

  log_p_x_given_z: jax.Array
  kl: jax.Array
  elbo: jax.Array


def elbo(vae: VAE, params: Params, x: jax.Array, key: jax.Array, *, analytic_kl: bool = True) -> ELBOTerms:
  """The reparameterized single-sample ELBO of each example.

  z = mu_phi(x) + sigma_phi(x) * eps,  eps ~ N(0, I)
  ELBO(x) ~= log p_theta(x|z) - KL(q_phi(z|x) || p(z))          (analytic_kl=True)
  ELBO(x) ~= log p_theta(x|z) + log p(z) - log q_phi(z|x)        (analytic_kl=False)

  Both are unbiased estimates of the ELBO and differentiable in (theta, phi).

  Args:
    vae: the model.
    params: its parameters.
    x: ``[B, H, W, C]`` data.
    key: PRNG key of the eps draw.
    analytic_kl: closed-form KL if True, else the Monte-Carlo estimate.

  Returns:
    :class:`ELBOTerms` with ``[B]`` fields.
  """
  q = vae.q_phi(params, x)
  z = gaussian_sample(key, q)
  log_p_x_given_z = vae.log_p_x_given_z(x, vae.p_theta(params, z))
  if analytic_kl:
    kl = vae.kl_q_p_z(params, q)
  else:
    kl = gaussian_log_prob(q, z) - vae.log_p_z(params, z)
  return ELBOTerms(log_p_x_given_z, kl, log_p_x_given_z - kl)


def beta_elbo_loss(terms: ELBOTerms, beta: jax.Array | float = 1.0) -> jax.Array:
  """The training loss: the negative beta-ELBO, averaged over the batch.

  loss = -(1/B) sum_b [ log p_theta(x_b|z_b) - beta * KL(q_phi(z|x_b) || p(z)) ]

  With beta = 1 this is the negative ELBO in nats per example; beta is a traced
  value, so one compiled step serves every beta.

  Args:
    terms: per-example :class:`ELBOTerms`, ``[B]``.
    beta: the KL weight (Higgins et al. 2017).

  Returns:
    A scalar.
  """
  return -jnp.mean(terms.log_p_x_given_z - beta * terms.kl)
