"""Posteriors q_phi(z|x): how the encoder's output becomes a distribution over z, sampled and scored.

The encoder (a Linen module) maps x to h(x); a :class:`Posterior` turns h into q_phi(z|x):

* :func:`diagonal_gaussian` (the default): h is a :class:`jaxvae.Gaussian` (mean, log sigma), and
  q_phi(z|x) = N(mu_phi(x), diag sigma_phi(x)^2), sampled by z = mu + sigma * eps.
* :func:`bottom_up_gaussian`: two stochastic layers, q_phi(z1, z2 | x) = q_phi(z1|x) q_phi(z2|z1),
  with q_phi(z2|z1) a Gaussian from a Linen module (Burda et al. 2016); z = (z1, z2).

Two more are built on this module: the inverse autoregressive flow (:func:`jaxvae.core.flows.iaf`) and
the Ladder VAE's top-down posterior (:func:`jaxvae.core.ladder.ladder`). The ones ``--posterior``
names are registered in :data:`POSTERIORS`. A posterior of your own (a normalizing flow, a
mixture) is a :class:`Posterior` too. Every
sample is reparameterized: z is a differentiable function of phi and the noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxvae.core import distributions as D
from jaxvae.core.registry import Registry
from jaxvae.core.trees import describe

Latent = Any  # z: an array [..., d], or a tuple of arrays for several stochastic layers
#: The built-in posteriors q_phi(z|x) by the names ``--posterior`` accepts.
POSTERIORS = Registry("posterior")


class Posterior(NamedTuple):
  """q_phi(z|x) given the encoder's output h = h_phi(x), as pure functions.

  Attributes:
    name: a short name.
    init: ``key -> params["posterior"]``, the posterior's own parameters (``{}`` if none).
    gaussian: ``(params, h) -> Gaussian [B, d]``: the diagonal Gaussian q_phi(z1|x) of the layer
      next to x (for a Gaussian posterior, q itself): what pictures draw and what the local
      optimization of :func:`jaxvae.core.estimators.optimize_local_q` starts from.
    sample: ``(params, h, key, sample_shape) -> (z, log q_phi(z|x))``: reparameterized draws
      ``[*sample_shape, B, ...]`` and their log-density ``[*sample_shape, B]``.
    log_prob: ``(params, h, z) -> [*sample_shape, B]``: log q_phi(z|x) of given ``z`` (with
      leading sample axes).
    means: ``(params, h, key) -> tuple of [B, d_l]``: E_q[z_l|x] of each stochastic layer,
      for counting active units (Monte Carlo where there is no closed form).
    closed_form: q is exactly ``gaussian(params, h)``, so a prior's closed-form KL applies.
    sample_kl: ``(params, h, key, sample_shape) -> (z, kls)`` or None: for a hierarchy whose
      prior and posterior are built together (:mod:`jaxvae.core.ladder`), draws z as ``sample``
      does and returns, per stochastic layer l, the closed-form KL of each dimension of
      q(z_l | z_{>l}, x) to p(z_l | z_{>l}) at the drawn z_{>l}: a tuple of ``[*S, B, d_l]``.
      Their sum is an unbiased estimate of KL(q || p) with less variance than
      log q - log p; the objectives use it for per-layer KL, warm-up and free bits.
    context_dim: the size of the context the encoder gives beside q's Gaussian, ``h = (Gaussian,
      context [B, context_dim])`` (an IAF's); 0: the encoder gives the Gaussian alone.
    expects: ``(h, latent_dim) -> None or what is wrong with h``: checks the encoder's output
      (shapes as ``jax.eval_shape`` gives them) before a run starts (:func:`expects_gaussian`);
      None: not checked.
  """

  name: str
  init: Callable[[jax.Array], Any]
  gaussian: Callable[[Any, Any], D.Gaussian]
  sample: Callable[[Any, Any, jax.Array, tuple[int, ...]], tuple[Latent, jax.Array]]
  log_prob: Callable[[Any, Any, Latent], jax.Array]
  means: Callable[[Any, Any, jax.Array], tuple[jax.Array, ...]]
  closed_form: bool = False
  sample_kl: Callable[[Any, Any, jax.Array, tuple[int, ...]], tuple[Latent, tuple[jax.Array, ...]]] | None = None
  context_dim: int = 0
  expects: Callable[[Any, int], str | None] | None = None


def expects_gaussian(name: str, context_dim: int = 0) -> Callable[[Any, int], str | None]:
  """The check of an encoder output ``h = Gaussian(mean [B, d], log_scale [B, d])`` (or, with
  ``context_dim``, ``(Gaussian, context [B, context_dim])``) for the posterior ``name``."""
  wanted = "jaxvae.Gaussian(mean, log_sigma), each [B, d]" + (
    f", and a context [B, {context_dim}], as a pair (Gaussian, context)" if context_dim else ""
  )

  def check(h: Any, latent_dim: int) -> str | None:
    gaussian, context = (h[0], h[1]) if context_dim and isinstance(h, tuple) and len(h) == 2 else (h, None)
    if not isinstance(gaussian, D.Gaussian) or (context_dim and context is None):
      fix = "return jaxvae.Gaussian(mean, log_sigma) (from a log-variance: log_sigma = log_var / 2)"
      return f"returns {describe(h)}; the {name} posterior reads {wanted}: {fix}"
    if gaussian.mean.shape != gaussian.log_scale.shape or gaussian.mean.ndim != 2:
      return f"returns {describe(h)}; the {name} posterior reads a mean and a log sigma of one shape [B, d]"
    d = gaussian.mean.shape[-1]
    if d != latent_dim:
      return (
        f"returns a Gaussian of {d} dimensions but latent_dim={latent_dim}: make them agree "
        f"(latent_dim={d}, or an encoder with {latent_dim} outputs)"
      )
    if context_dim and (context.ndim != 2 or context.shape[-1] != context_dim):
      return f"returns a context {describe(context)}; the {name} posterior reads [B, {context_dim}]"
    return None

  return check


def expand(q: D.Gaussian, sample_ndim: int) -> D.Gaussian:
  """Adds ``sample_ndim`` leading size-1 axes, to score samples ``[*S, B, d]`` under q ``[B, d]``."""
  lead = (1,) * sample_ndim
  return D.Gaussian(q.mean.reshape(lead + q.mean.shape), q.log_scale.reshape(lead + q.log_scale.shape))


def diagonal_gaussian() -> Posterior:
  """q_phi(z|x) = N(mu_phi(x), diag sigma_phi(x)^2) from an encoder that returns ``Gaussian(mu, log sigma)``.

  z = mu + sigma * eps, eps ~ N(0, I) (Kingma & Welling 2014, Section 2.4);
  log q(z|x) = -1/2 sum_i [ ((z_i - mu_i) / sigma_i)^2 + 2 log sigma_i + log(2 pi) ].
  """

  def sample(params, h, key, sample_shape=()):
    del params
    z = D.gaussian_sample(key, h, sample_shape)
    return z, D.gaussian_log_prob(expand(h, len(sample_shape)), z)

  def log_prob(params, h, z):
    del params
    return D.gaussian_log_prob(expand(h, z.ndim - h.mean.ndim), z)

  return Posterior(
    name="gaussian",
    init=lambda key: {},
    gaussian=lambda params, h: h,
    sample=sample,
    log_prob=log_prob,
    means=lambda params, h, key: (h.mean,),
    closed_form=True,
    expects=expects_gaussian("gaussian"),
  )


def bottom_up_gaussian(conditional: Any, z1_dim: int, mean_samples: int = 16) -> Posterior:
  """q_phi(z1, z2 | x) = q_phi(z1|x) q_phi(z2|z1): the encoder gives q(z1|x), a Linen module q(z2|z1).

  log q(z1, z2 | x) = log N(z1; mu_phi(x), sigma_phi(x)^2) + log N(z2; mu(z1), sigma(z1)^2).

  Inference goes bottom-up, x -> z1 -> z2, against the generative direction of the prior
  p(z2) p(z1|z2) (:func:`jaxvae.core.priors.top_down_gaussian`); the Ladder VAE's posterior
  (:mod:`jaxvae.core.ladder`) goes top-down instead.

  Args:
    conditional: a Linen module ``z1 [B, z1_dim] -> Gaussian [B, d2]``, applied with
      ``params["posterior"]``.
    z1_dim: the size of z1.
    mean_samples: draws of z1 for E_q[z2|x] = E_{q(z1|x)}[ mean of q(z2|z1) ].
  """

  def q2(params, z1):
    return conditional.apply({"params": params["posterior"]}, z1)

  def sample(params, h, key, sample_shape=()):
    k1, k2 = jax.random.split(key)
    z1 = D.gaussian_sample(k1, h, sample_shape)
    q_z2 = q2(params, z1)
    z2 = D.gaussian_sample(k2, q_z2)
    return (z1, z2), D.gaussian_log_prob(expand(h, len(sample_shape)), z1) + D.gaussian_log_prob(q_z2, z2)

  def log_prob(params, h, z):
    z1, z2 = z
    return D.gaussian_log_prob(expand(h, z1.ndim - h.mean.ndim), z1) + D.gaussian_log_prob(q2(params, z1), z2)

  def means(params, h, key):
    z1 = D.gaussian_sample(key, h, (mean_samples,))
    return h.mean, jnp.mean(q2(params, z1).mean, axis=0)

  return Posterior(
    name="bottom-up-gaussian",
    init=lambda key: conditional.init(key, jnp.zeros((1, z1_dim)))["params"],
    gaussian=lambda params, h: h,
    sample=sample,
    log_prob=log_prob,
    means=means,
    expects=expects_gaussian("bottom-up-gaussian"),
  )


POSTERIORS.register("gaussian", diagonal_gaussian, help="(diagonal)")
