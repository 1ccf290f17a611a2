"""Priors p(z): the standard normal, a learned mixture of Gaussians, the VampPrior, a hierarchy.

Each is a :class:`Prior` of pure functions (the ones ``--prior`` names are registered in
:data:`PRIORS`); a prior of your own is one too (its log-density,
its sampler, and its closed-form KL to a Gaussian q if it has one). Only the standard normal
has a closed-form KL(q_phi(z|x) || p(z)) here; for the others the ELBO uses the estimate
log q_phi(z|x) - log p(z) at the samples, and importance sampling uses their log-densities,
so log p(x) is exact in the prior whatever it is.

References:
  J. M. Tomczak, M. Welling. VAE with a VampPrior. AISTATS 2018.
  Y. Burda, R. Grosse, R. Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016
  (the two-layer model: p(z2) p(z1|z2)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core import distributions as D
from jaxvae.core.networks import as_network
from jaxvae.core.registry import Registry

#: The built-in priors p(z) by the names ``--prior`` accepts.
PRIORS = Registry("prior")


class Prior(NamedTuple):
  """p(z) as pure functions of the prior's parameters (and, for the VampPrior, the encoder's).

  The functions take the model's whole parameter tree (the prior's own parameters are
  ``params["prior"]``; the VampPrior also reads the encoder's).

  Attributes:
    name: a short name (``"normal"``, ``"mog"``, ``"vamp"``, ...).
    init: ``(key, data=None) -> params["prior"]`` (``{}`` for N(0, I)); ``data``, the
      stored training data ``[N, ...]``, is used by the VampPrior alone.
    log_prob: ``(params, z [..., d]) -> [...]`` log p(z).
    sample: ``(params, key, n) -> z [n, d]``.
    kl_per_dim: ``(params, q) -> [..., d]`` closed-form KL(q || p) per dimension for a
      Gaussian q, or None (then the ELBO estimates the KL by Monte Carlo).
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
  encoder: Any,
  data_shape: tuple[int, ...],
  components: int = 500,
  data_range: tuple[float, float] | None = (0.0, 1.0),
) -> Prior:
  """The VampPrior: p(z) = (1/K) sum_k q_phi(z|u_k), with K learned pseudo-inputs u_k.

  The pseudo-inputs live in data space, u_k = lo + (hi - lo) sigmoid(w_k) for data in
  [lo, hi] (u_k = w_k for unbounded data), and go through the same encoder q_phi as the data,
  so the prior follows the aggregate posterior. Given
  the training images, ``init`` starts the u_k at K of them (the paper's training-data
  initialisation): started at random grey images, the prior sits far from every data
  posterior and the KL term drives q_phi into collapse before the pseudo-inputs can move.
  ``params`` of the prior are ``{"pseudo_inputs": w}``; its functions also read the
  encoder's parameters, so they take the whole parameter tree.

  Args:
    encoder: the encoder of q_phi (``u [K, *data_shape] -> Gaussian [K, d]``), applied with
      ``params["encoder"]`` (and its running statistics, as in evaluation): the module (any that
      :func:`jaxvae.core.networks.as_network` takes) handed to :meth:`jaxvae.VAE.from_modules`. An
      encoder of a flow posterior returns ``(Gaussian, context)``: the components are then
      the base Gaussians of the pseudo-inputs (a mixture of Gaussians still, whose log-density
      and samples stay cheap, instead of the flow's densities).
    data_shape: the shape of one example.
    components: K.
    data_range: the range of the model's x (where the pseudo-inputs live), or None if unbounded.
  """

  network = as_network(encoder, "encoder")

  def pseudo_inputs(params):
    w = params["prior"]["pseudo_inputs"]
    if data_range is None:
      return w
    lo, hi = data_range
    return lo + (hi - lo) * jax.nn.sigmoid(w)

  def init(key, data=None):
    if data is None:
      return {"pseudo_inputs": 0.5 * jax.random.normal(key, (components,) + tuple(data_shape))}
    idx = np.asarray(jax.random.choice(key, data.shape[0], (components,), replace=data.shape[0] < components))
    chosen = np.asarray(data)[idx].astype(np.float32)  # only the K chosen examples go to the device
    if data_range is None:  # real-valued data: u_k starts at K training examples
      return {"pseudo_inputs": jnp.asarray(chosen)}
    # Tomczak & Welling's training-data initialisation: u_k starts at K random training
    # images (intensities squeezed into [0.05, 0.95] so that the logit is finite; data that
    # are binary already hold 0 and 1).
    top = 255.0 if np.max(data) > 1 else 1.0
    u = 0.05 + 0.9 * jnp.asarray(chosen) / top
    return {"pseudo_inputs": jnp.log(u) - jnp.log1p(-u)}

  def components_of(params):
    q, _ = network.apply(params["encoder"], params.get("state", {}).get("encoder", {}), pseudo_inputs(params))
    if not isinstance(q, D.Gaussian):  # (Gaussian, context) of a flow posterior: its base Gaussian
      q = q[0]
    return q.mean, q.log_scale

  def log_prob(params, z):
    means, log_scales = components_of(params)
    return D.gaussian_mixture_log_prob(z, means, log_scales, jnp.full((components,), -math.log(components)))

  def sample(params, key, n):
    means, log_scales = components_of(params)
    return _mixture_sample(key, means, log_scales, jnp.full((components,), -math.log(components)), n)

  return Prior("vamp", init, log_prob, sample, None)


def top_down_gaussian(conditional: Any, top_dim: int) -> Prior:
  """p(z1, z2) = p(z2) p(z1|z2) with p(z2) = N(0, I) and p(z1|z2) a Gaussian from a Linen module.

  The latent is the pair ``z = (z1, z2)``; z1 (next to x) is what the decoder reads. Burda et
  al.'s two-layer model uses a tanh MLP for p(z1|z2) (:class:`jaxvae.core.nets.GaussianMLP`), with
  the bottom-up posterior q(z1|x) q(z2|z1) of :func:`jaxvae.core.posteriors.bottom_up_gaussian`.

  Args:
    conditional: a Linen module ``z2 [B, top_dim] -> Gaussian [B, d1]``, applied with
      ``params["prior"]``.
    top_dim: the size of z2.
  """

  def init(key, data=None):
    del data
    return conditional.init(key, jnp.zeros((1, top_dim)))["params"]

  def log_prob(params, z):
    z1, z2 = z
    p1 = conditional.apply({"params": params["prior"]}, z2)
    return D.gaussian_log_prob(p1, z1) + D.standard_normal_log_prob(z2)

  def sample(params, key, n):
    k2, k1 = jax.random.split(key)
    z2 = jax.random.normal(k2, (n, top_dim))
    return D.gaussian_sample(k1, conditional.apply({"params": params["prior"]}, z2)), z2

  return Prior("top-down-gaussian", init, log_prob, sample, None)


# ---------------------------------------------------------------------------
# The built-in priors, by the names a config gives.
# ---------------------------------------------------------------------------

PRIORS.register("normal", standard_normal, help="N(0, I)")


@PRIORS.register("mog", help="(learned mixture of Gaussians)")
def _mixture(latent_dim: int, prior_components: int = 10) -> Prior:
  """``--prior mog``: ``prior_components`` learned Gaussians."""
  return mixture_of_gaussians(latent_dim, prior_components)


@PRIORS.register("vamp", help="(VampPrior)")
def _vamp(encoder: Any, data_shape: tuple[int, ...], likelihood: Any, prior_components: int = 500) -> Prior:
  """``--prior vamp``: ``prior_components`` pseudo-inputs in the data range of the likelihood."""
  return vamp_prior(encoder, data_shape, prior_components, likelihood.data_range)
