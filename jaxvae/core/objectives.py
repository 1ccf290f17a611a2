"""Objectives: the ELBO, beta, free bits, KL warm-up, the IWAE bound and its DReG gradient, in nats.

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

A training objective is a value, an :class:`Objective`: a pure loss and its hyperparameters
as arrays (which a sweep vmaps). The built-in ones are :func:`beta_elbo` (with warm-up and
free bits), :func:`iwae` and :func:`iwae_dreg`; one of your own is built the same way.

References:
  Kingma & Welling (2014), "Auto-Encoding Variational Bayes", arXiv:1312.6114.
  Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders", ICLR.
  Higgins et al. (2017), "beta-VAE", ICLR (the weight beta on the KL).
  Bowman et al. (2016), "Generating Sentences from a Continuous Space" (KL warm-up).
  Kingma et al. (2016), "Improved Variational Inference with Inverse Autoregressive Flow"
  (free bits, their eq. 15).
  Tucker, Lawson, Gu & Maddison (2019), "Doubly Reparameterized Gradient Estimators for
  Monte Carlo Objectives", ICLR (IWAE-DReG).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvae.core.distributions import gaussian_sample
from jaxvae.core.model import VAE, Params
from jaxvae.core.posteriors import diagonal_gaussian
from jaxvae.core.registry import Registry
from jaxvae.errors import JaxvaeError

Metrics = dict[str, jax.Array]
#: The built-in objectives by the names ``--objective`` accepts (factories returning an :class:`Objective`).
OBJECTIVES = Registry("objective")


class ELBOTerms(NamedTuple):
  """Per-example terms of the ELBO estimate, each ``[B]`` float in nats.

  Attributes:
    log_p_x_given_z: log p_theta(x|z) averaged over the k samples z ~ q_phi(z|x).
    kl: KL(q_phi(z|x) || p(z)) (closed form, or the estimate averaged over the samples).
    elbo: log_p_x_given_z - kl.
    kl_per_dim: ``[B, d]`` closed-form KL of each latent dimension (sums to ``kl``; all
      layers' dimensions side by side for a hierarchy), or None where the KL is estimated.
    kl_per_layer: ``[B, L]`` the KL of each stochastic layer (in the posterior's order), where the
      posterior gives it layer by layer (:attr:`jaxvae.Posterior.sample_kl`), else None.
    layer_sizes: the number of latent dimensions of each of those layers (static ints), or None.
  """

  log_p_x_given_z: jax.Array
  kl: jax.Array
  elbo: jax.Array
  kl_per_dim: jax.Array | None = None
  kl_per_layer: jax.Array | None = None
  layer_sizes: tuple[int, ...] | None = None


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


def importance_terms(vae: VAE, params: Params, x: jax.Array, key: jax.Array, k: int, h: Any = None) -> ImportanceTerms:
  """Draws z_1..z_k ~ q_phi(z|x) (reparameterized) and scores them.

  Args:
    vae: the model.
    params: its parameters.
    x: ``[B, H, W, C]`` data.
    key: PRNG key of the draws.
    k: samples per data point.
    h: propose from the model's posterior family at this encoder output (batch B) instead of
      at the encoder's h_phi(x): e.g. the optimized q* of :func:`jaxvae.core.estimators.optimize_local_q`.

  Returns:
    :class:`ImportanceTerms` with ``[k, B]`` fields.
  """
  if h is None:
    z, log_q = vae.sample_q(params, x, key, (k,))
  else:
    z, log_q = (vae.posterior or diagonal_gaussian()).sample(params, h, key, (k,))
  return ImportanceTerms(_log_p_x_given_z(vae, params, x, z, k), vae.log_p_z(params, z), log_q)


def elbo(vae: VAE, params: Params, x: jax.Array, key: jax.Array, *, k: int = 1, analytic_kl: bool = True) -> ELBOTerms:
  """The reparameterized ELBO of each example, averaged over k samples of z.

  z_i = mu_phi(x) + sigma_phi(x) * eps_i,  eps_i ~ N(0, I),  i = 1..k
  ELBO(x) ~= (1/k) sum_i log p_theta(x|z_i) - KL(q_phi(z|x) || p(z))            (analytic_kl)
  ELBO(x) ~= (1/k) sum_i [ log p_theta(x|z_i) + log p(z_i) - log q_phi(z_i|x) ]  (otherwise)

  Both are unbiased estimates of the ELBO and differentiable in (theta, phi). The
  closed form is used only where the model has one (``vae.kl_q_p_z``); for a hierarchy
  whose posterior gives it layer by layer (``vae.sample_kl``, e.g. the Ladder VAE),
  KL ~= (1/k) sum_i sum_l KL(q(z_l | z_{>l,i}, x) || p(z_l | z_{>l,i})), closed-form per layer
  at the drawn layers above; otherwise the estimate is used whatever ``analytic_kl`` says.

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
  if analytic_kl and vae.sample_kl is not None:
    z, kls = vae.sample_kl(params, x, key, (k,))
    log_p_x_given_z = jnp.mean(_log_p_x_given_z(vae, params, x, z, k), axis=0)
    kl_per_dim = jnp.concatenate([jnp.mean(layer, axis=0) for layer in kls], axis=-1)
    kl_per_layer = jnp.stack([jnp.sum(jnp.mean(layer, axis=0), axis=-1) for layer in kls], axis=-1)
    kl = jnp.sum(kl_per_layer, axis=-1)
    sizes = tuple(int(layer.shape[-1]) for layer in kls)
    return ELBOTerms(log_p_x_given_z, kl, log_p_x_given_z - kl, kl_per_dim, kl_per_layer, sizes)
  t = importance_terms(vae, params, x, key, k)
  log_p_x_given_z = jnp.mean(t.log_p_x_given_z, axis=0)
  kl = jnp.mean(t.log_q_z_given_x - t.log_p_z, axis=0)
  return ELBOTerms(log_p_x_given_z, kl, log_p_x_given_z - kl)


def layer_kls(terms: ELBOTerms) -> Metrics:
  """``{"kl_layer1": [B], "kl_layer2": [B], ...}``: each layer's KL, where the terms have several layers."""
  if terms.kl_per_layer is None or terms.kl_per_layer.shape[-1] < 2:
    return {}
  return {f"kl_layer{l + 1}": terms.kl_per_layer[:, l] for l in range(terms.kl_per_layer.shape[-1])}


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


def balanced_kl(kl_per_layer: jax.Array, layer_sizes: tuple[int, ...]) -> jax.Array:
  """NVAE's KL balancing: the batch-mean KL as sum_l c_l KL_l, the weights c_l following each layer's KL.

  With KL_l the batch-mean KL of layer l (nats) and alpha_l = D_l / n_l (its size D_l over the
  number n_l of layers of that size, i.e. at that resolution; NVAE's ``square`` coefficients,
  normalized to a minimum of 1):

    c_l = L * (KL_l + 0.01) / alpha_l / sum_j (KL_j + 0.01) / alpha_j      (mean c_l = 1)

  and the c_l carry no gradient. A layer holding much information is pushed harder towards the
  prior, one holding little is spared: used during KL warm-up, it keeps layers from collapsing
  to the prior before the decoder learns to use them (Vahdat & Kautz 2020, sec. 3.2).

  Args:
    kl_per_layer: ``[B, L]`` the KL of each layer.
    layer_sizes: D_l, the latent dimensions of each layer.

  Returns:
    ``[]``: the balanced batch-mean KL (equal to the plain sum when every c_l is 1).
  """
  sizes = np.asarray(layer_sizes, np.float64)
  alpha = sizes / np.sum(sizes[None, :] == sizes[:, None], axis=1)
  alpha = jnp.asarray(alpha / alpha.min(), jnp.float32)
  kl_l = jnp.mean(kl_per_layer, axis=0)
  c = (jnp.abs(kl_l) + 0.01) / alpha
  c = jax.lax.stop_gradient(c / jnp.mean(c))
  return jnp.sum(c * kl_l)


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


# ---------------------------------------------------------------------------
# Training objectives as values.
# ---------------------------------------------------------------------------


class Objective(NamedTuple):
  """A training objective: a pure loss of a batch, and its hyperparameters as traced arrays.

  Attributes:
    name: a short name, shown in run folders.
    loss: ``(vae, params, x [B, ...], key, hparams, step) -> (loss, metrics)``: the scalar
      whose gradient trains (parameters move along -grad; for a gradient estimator such as
      :func:`iwae_dreg` a surrogate, whose value need not be the bound), and a dict of
      scalar batch means to log. ``metrics["loss"]`` is the objective's value (-bound) where
      it differs from the surrogate; ``elbo``, ``kl`` and ``log_p_x_given_z`` are shown in the
      epoch lines when present. ``step`` is the int32 count of batches done (for schedules).
    hparams: a pytree of arrays handed to ``loss`` (``TrainState.hparams``): values that a
      sweep changes without recompiling, e.g. beta.
    settings: its fixed hyperparameters by name, e.g. ``{"k": 5}``: what a run records of it
      (config.json, TensorBoard's HParams) and how it labels its metrics (``train IWAE_5``).

  Example:
    >>> def my_loss(vae, params, x, key, hparams, step):
    ...   terms = elbo(vae, params, x, key)
    ...   return -jnp.mean(terms.elbo), {"elbo": jnp.mean(terms.elbo)}
    >>> objective = Objective("mine", my_loss)
  """

  name: str
  loss: Callable[[VAE, Params, jax.Array, jax.Array, Any, jax.Array], tuple[jax.Array, Metrics]]
  hparams: Any = ()
  settings: Mapping[str, Any] = MappingProxyType({})


class BetaELBOHParams(NamedTuple):
  """The traced hyperparameters of :func:`beta_elbo`.

  Attributes:
    beta: ``[]`` float32, the KL weight (1: the ELBO).
    warmup_steps: ``[]`` float32, steps over which the KL weight rises from 0 to beta (0: none).
    free_bits: ``[]`` float32, the per-dimension KL floor in nats (0: none).
  """

  beta: jax.Array
  warmup_steps: jax.Array
  free_bits: jax.Array


def beta_elbo(
  *,
  k: int = 1,
  analytic_kl: bool = True,
  beta: float = 1.0,
  warmup_steps: float = 0.0,
  free_bits: float = 0.0,
  kl_balance: bool = False,
) -> Objective:
  """The (beta-)ELBO averaged over k samples of z, with KL warm-up and free bits.

  loss = -(1/B) sum_b (1/k) sum_i log p_theta(x_b|z_bi) + beta_t * R   (:func:`beta_elbo_loss`),
  beta_t = beta * min(1, t / warmup_steps) (:func:`kl_warmup`) at step t.
  With beta = 1, no warm-up and no free bits, the loss is the negative ELBO in nats per example.

  Args:
    k: samples of z per example.
    analytic_kl: the closed-form KL where the model has one (else log q - log p at the samples).
    beta, warmup_steps, free_bits: the initial values of :class:`BetaELBOHParams`.
    kl_balance: during warm-up (while beta_t < beta), weight the layers' KLs by
      :func:`balanced_kl` (NVAE); needs a model whose posterior gives the KL layer by layer.
  """

  def loss(vae, params, x, key, hparams, step):
    terms = elbo(vae, params, x, key, k=k, analytic_kl=analytic_kl)
    kl_weight = kl_warmup(hparams.beta, hparams.warmup_steps)(step)
    value = beta_elbo_loss(terms, kl_weight, hparams.free_bits)
    if kl_balance:
      if terms.layer_sizes is None:
        raise JaxvaeError(
          "kl_balance weights the KL of each stochastic layer, and this model gives one KL: "
          "use a hierarchy (--model ladder or vdvae) or kl_balance='off'"
        )
      shift = balanced_kl(terms.kl_per_layer, terms.layer_sizes) - jnp.mean(terms.kl)
      value = value + kl_weight * jnp.where(kl_weight < hparams.beta, shift, 0.0)
    return value, {
      "loss": value,
      "elbo": jnp.mean(terms.elbo),
      "log_p_x_given_z": jnp.mean(terms.log_p_x_given_z),
      "kl": jnp.mean(terms.kl),
      "kl_weight": kl_weight,
      **{name: jnp.mean(v) for name, v in layer_kls(terms).items()},
    }

  f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
  hparams = BetaELBOHParams(f32(beta), f32(warmup_steps), f32(free_bits))
  return Objective("vae", loss, hparams, settings={"k": k, **({"kl_balance": "nvae"} if kl_balance else {})})


def _importance_metrics(t: ImportanceTerms, iw: jax.Array, bound: jax.Array) -> Metrics:
  """An importance-weighted objective's metrics: ``loss`` = -bound (the bound it trains), ``iwae``, and the
  k-sample ELBO with its terms (the KL by Monte Carlo), from ``[k, B]`` terms and ``[B]`` IWAE values ``iw``."""
  return {
    "loss": -bound,
    "iwae": jnp.mean(iw),
    "elbo": jnp.mean(t.log_w),
    "log_p_x_given_z": jnp.mean(t.log_p_x_given_z),
    "kl": jnp.mean(t.log_q_z_given_x - t.log_p_z),
  }


def iwae(k: int) -> Objective:
  """The importance-weighted bound of Burda et al. (2016): loss = -(1/B) sum_b log (1/k) sum_i w(z_bi).

  Its gradient is E[ sum_i w~_i grad log w_i ], w~_i = w_i / sum_j w_j (normalized weights).
  """

  def loss(vae, params, x, key, hparams, step):
    del hparams, step
    t = importance_terms(vae, params, x, key, k)
    iw = iwae_bound(t.log_w)
    bound = jnp.mean(iw)
    return -bound, _importance_metrics(t, iw, bound)

  return Objective("iwae", loss, settings={"k": k})


class SwitchHParams(NamedTuple):
  """The traced hyperparameter of :func:`vae_or_iwae`.

  Attributes:
    iwae: ``[]`` float32, 1 for the IWAE bound, 0 for the k-sample ELBO.
  """

  iwae: jax.Array


def vae_or_iwae(k: int, iwae: bool) -> Objective:
  """Burda et al.'s VAE or IWAE with k samples, the choice a traced switch: one program trains both.

  With log w_i = log p_theta(x, z_i) - log q_phi(z_i|x), z_1..z_k ~ q_phi(z|x):

    VAE:   loss = -(1/B) sum_b (1/k) sum_i log w_bi          (the k-sample ELBO, KL by Monte Carlo)
    IWAE:  loss = -(1/B) sum_b log (1/k) sum_i w_bi          (:func:`iwae_bound`)

  Both have the same shapes, so ``hparams.iwae`` (1 or 0) selects the bound inside one compiled
  step, and a sweep vmaps VAE and IWAE models of the same k together (:func:`jaxvae.runs.sweep.train_group`).
  Its values and gradients are those of ``beta_elbo(k=k, analytic_kl=False)`` and :func:`iwae`.
  """

  def loss(vae, params, x, key, hparams, step):
    del step
    t = importance_terms(vae, params, x, key, k)
    iw = iwae_bound(t.log_w)
    bound = jnp.mean(jnp.where(hparams.iwae > 0, iw, jnp.mean(t.log_w, axis=0)))
    return -bound, _importance_metrics(t, iw, bound)

  hparams = SwitchHParams(jnp.asarray(float(iwae), jnp.float32))
  return Objective("iwae" if iwae else "vae", loss, hparams, settings={"k": k})


def iwae_dreg(k: int) -> Objective:
  """The IWAE bound trained with the doubly reparameterized gradient (IWAE-DReG, Tucker et al. 2019).

  With z_i = z_phi(eps_i) and w~_i = w_i / sum_j w_j, the IWAE gradient of the inference
  network phi contains a score-function term whose signal-to-noise ratio falls as k grows.
  DReG replaces it by a second reparameterization::

    grad_theta = sum_i w~_i grad_theta log w_i                       (as IWAE)
    grad_phi   = sum_i w~_i^2 (d log w_i / d z_i) (d z_i / d phi)    (+ w~_i grad_phi log p(z_i),
                                                                     where p(z) depends on phi)

  where log w_i = log p_theta(x, z_i) - log q_phi'(z_i|x) with phi' = stop_gradient(phi).
  The surrogate sum_i w~_i log w_i(z'_i), z'_i = z_i with its gradient scaled by w~_i, has
  exactly these gradients (two passes through the decoder: one for w~, one to differentiate).
  Its value, reported as ``loss``, is the IWAE bound of the batch.
  """

  def loss(vae, params, x, key, hparams, step):
    del hparams, step
    sg = jax.lax.stop_gradient
    z, _ = vae.sample_q(params, x, key, (k,))
    x_k = jnp.broadcast_to(x, (k,) + x.shape)

    def terms(z):
      return ImportanceTerms(
        vae.log_p_x_given_z(x_k, vae.p_theta(params, z)), vae.log_p_z(params, z), vae.log_q(sg(params), x, z)
      )

    t = jax.tree.map(sg, terms(jax.tree.map(sg, z)))
    w = jax.nn.softmax(t.log_w, axis=0)  # [k, B], normalized weights, no gradient

    def scaled(a):  # the value of z, its gradient multiplied by w~
      return sg(a) + w.reshape(w.shape + (1,) * (a.ndim - 2)) * (a - sg(a))

    surrogate = -jnp.mean(jnp.sum(w * terms(jax.tree.map(scaled, z)).log_w, axis=0))
    iw = iwae_bound(t.log_w)
    return surrogate, _importance_metrics(t, iw, jnp.mean(iw))

  return Objective("iwae-dreg", loss, settings={"k": k})


# ---------------------------------------------------------------------------
# The built-in objectives, by the names a config gives.
# ---------------------------------------------------------------------------


@OBJECTIVES.register("vae", help="(the beta-ELBO)")
def _beta_elbo(
  steps_per_epoch: int = 1,
  k: int = 1,
  kl: str = "analytic",
  beta: float = 1.0,
  warmup_epochs: float = 0.0,
  free_bits: float = 0.0,
  kl_balance: str = "off",
) -> Objective:
  """``--objective vae``: the beta-ELBO with ``k`` samples, KL warm-up over ``warmup_epochs``, free bits and
  (``kl_balance="nvae"``) KL balancing during the warm-up."""
  warmup_steps = warmup_epochs * steps_per_epoch
  return beta_elbo(
    k=k,
    analytic_kl=kl == "analytic",
    beta=beta,
    warmup_steps=warmup_steps,
    free_bits=free_bits,
    kl_balance=kl_balance == "nvae",
  )


def _unweighted_kl(config: Any) -> str | None:
  """The rule of the importance-weighted objectives: they have no KL weight, warm-up or free bits."""
  if config.beta == 1 and config.warmup_epochs == 0 and config.free_bits == 0 and config.kl_balance == "off":
    return None
  return (
    "beta, warmup_epochs, free_bits and kl_balance weight the KL of the vae objective: "
    f"leave them at 1, 0, 0, off with --objective {config.objective}"
  )


OBJECTIVES.register("iwae", iwae, check=_unweighted_kl)
OBJECTIVES.register("iwae-dreg", iwae_dreg, check=_unweighted_kl)
