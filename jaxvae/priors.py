"""Priors p(z): the standard normal, a learned mixture of Gaussians, and the VampPrior.

Each is a :class:`Prior` of pure functions. Only the standard normal has a closed-form
KL(q_phi(z|x) || p(z)); for the others the ELBO uses the estimate log q_phi(z|x) - log p(z)
at the samples, and importance sampling uses their log-densities, so log p(x) is exact in
the prior whatever it is.

References:
  J. M. Tomczak, M. Welling. VAE with a VampPrior. AISTATS 2018.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import distributions as D


class Prior(NamedTuple):
  """p(z) as pure functions of the prior's parameters (and, for the VampPrior, the encoder's).

  The functions take the model's whole parameter tree (the prior's own parameters are
  ``params["prior"]``; the VampPrior also reads the encoder's).

  Attributes:
    name: one of :data:`jaxvae.config.PRIORS`.
    init: ``(key, data=None) -> params["prior"]`` (``{}`` for N(0, I)); ``data``, the
      training images as ``[N, H, W, C]`` uint8, is used by the VampPrior alone.
    log_prob: ``(params, z [..., d]) -> [...]`` log p(z).
    sample: ``(params, key, n) -> [n, d]``.
    kl_per_dim: ``(params, q) -> [..., d]`` closed-form KL(q || p) per dimension, or None.
  """

  name: str
  init: Callable[..., Any]
  log_prob: Callable[[Any, jax.Array], jax.Array]
  sample: Callable[[Any, jax.Array, int], jax.Array]
  kl_per_dim: Callable[[Any, D.Gaussian], jax.Array] | None


def standard_normal(latent_dim: int) -> Prior:
  """p(z) = N(0, I): the prior of Kingma & Welling; its KL to a Gaussian q is closed-form."""
  return Prior(
      name="normal",
      init=lambda key, data=None: {},
      log_prob=lambda params, z: D.standard_normal_log_prob(z),
      sample=lambda params, key, n: jax.random.normal(key, (n, latent_dim)),
      kl_per_dim=lambda params, q: D.gaussian_kl_to_standard_normal_per_dim(q),
  )


def _mixture_sample(key, means, log_scales, log_weights, n):
  k_c, k_z = jax.random.split(key)
  comp = jax.random.categorical(k_c, log_weights, shape=(n,))
  return means[comp] + jnp.exp(log_scales[comp]) * jax.random.normal(k_z, (n, means.shape[-1]))


def mixture_of_gaussians(latent_dim: int, components: int = 10) -> Prior:
  """p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), all learned (means start spread as N(0, I) draws)."""

  def init(key, data=None):
    del data
    return {
        "means": jax.random.normal(key, (components, latent_dim)),
        "log_scales": jnp.zeros((components, latent_dim)),
        "logits": jnp.zeros((components,)),
    }

  def log_prob(params, z):
    p = params["prior"]
    return D.gaussian_mixture_log_prob(z, p["means"], p["log_scales"], jax.nn.log_softmax(p["logits"]))

  def sample(params, key, n):
    p = params["prior"]
    return _mixture_sample(key, p["means"], p["log_scales"], jax.nn.log_softmax(p["logits"]), n)

  return Prior("mog", init, log_prob, sample, None)


def vamp_prior(
    encoder: Callable[[Any, jax.Array], D.Gaussian],
    image_shape: tuple[int, int, int],
    components: int = 500,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> Prior:
  """The VampPrior: p(z) = (1/K) sum_k q_phi(z|u_k), with K learned pseudo-inputs u_k.

  The pseudo-inputs live in data space, u_k = lo + (hi - lo) sigmoid(w_k), and go through
  the same encoder q_phi as the data, so the prior follows the aggregate posterior. Given
  the training images, ``init`` starts the u_k at K of them (the paper's training-data
  initialisation): started at random grey images, the prior sits far from every data
  posterior and the KL term drives q_phi into collapse before the pseudo-inputs can move.
  ``params`` of the prior are ``{"pseudo_inputs": w}``; its functions also read the
  encoder's parameters, so they take the whole parameter tree.

  Args:
    encoder: ``(all params, u [K, H, W, C]) -> Gaussian [K, d]``, i.e. ``vae.q_phi``.
    image_shape: (H, W, C).
    components: K.
    data_range: the range of the model's x (where the pseudo-inputs live).
  """
  lo, hi = data_range

  def pseudo_inputs(params):
    return lo + (hi - lo) * jax.nn.sigmoid(params["prior"]["pseudo_inputs"])

  def init(key, data=None):
    if data is None:
      return {"pseudo_inputs": 0.5 * jax.random.normal(key, (components,) + tuple(image_shape))}
    # Tomczak & Welling's training-data initialisation: u_k starts at K random training
    # images (intensities squeezed into [0.05, 0.95] so that the logit is finite; data that
    # were binarized once, statically, hold 0 and 1).
    top = 255.0 if np.max(data) > 1 else 1.0
    idx = np.asarray(jax.random.choice(key, data.shape[0], (components,), replace=data.shape[0] < components))
    u = 0.05 + 0.9 * jnp.asarray(np.asarray(data)[idx], jnp.float32) / top  # only the K chosen images go to the device
    return {"pseudo_inputs": jnp.log(u) - jnp.log1p(-u)}

  def components_of(params):
    q = encoder(params, pseudo_inputs(params))
    return q.mean, q.log_scale

  def log_prob(params, z):
    means, log_scales = components_of(params)
    return D.gaussian_mixture_log_prob(z, means, log_scales, jnp.full((components,), -math.log(components)))

  def sample(params, key, n):
    means, log_scales = components_of(params)
    return _mixture_sample(key, means, log_scales, jnp.full((components,), -math.log(components)), n)

  return Prior("vamp", init, log_prob, sample, None)
