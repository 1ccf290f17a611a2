"""A linear-Gaussian VAE: the one VAE whose every quantity has a closed form.

Generative model (probabilistic PCA, Tipping & Bishop 1999):
  p(z) = N(0, I_d),   p_theta(x|z) = N(W z + b, sigma^2 I_D),  theta = (W, b, log sigma).
Then
  p_theta(x)   = N(x; b, W W^T + sigma^2 I_D)                              (the marginal)
  p_theta(z|x) = N(S W^T (x - b) / sigma^2, S),  S = (I_d + W^T W / sigma^2)^-1   (the true posterior)
Amortized approximate posterior (linear encoder, diagonal covariance):
  q_phi(z|x) = N(A x + c, diag(exp(2 s))),  phi = (A, c, s).

With these, log p_theta(x) = ELBO(x) + KL(q_phi(z|x) || p_theta(z|x)) can be checked to
float precision. The true posterior is diagonal (so q_phi can equal it) exactly when
W^T W is diagonal, i.e. W has orthogonal columns.

Here x is a flat vector ``[..., D]`` (not an image). The VAE is built like any user's model,
with :meth:`jaxvae.VAE.from_modules`, from two linear Linen modules and a Gaussian likelihood
of its own; the closed forms below read its parameters. Every function is pure.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae.core import distributions as D
from jaxvae.core.likelihoods import Likelihood
from jaxvae.core.model import VAE, Params


def _lead(v: jax.Array, ndim: int) -> jax.Array:
  """``v [n]`` reshaped to rank ``ndim`` for explicit broadcasting: ``[1, ..., 1, n]``."""
  return v.reshape((1,) * (ndim - 1) + v.shape)


class LinearEncoder(nn.Module):
  """q_phi(z|x) = N(A x + c, diag(exp(2 s))): ``x [B, D] -> Gaussian [B, d]``, phi = (A, c, s)."""

  latent_dim: int
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> D.Gaussian:
    d = self.latent_dim
    a = self.param("A", lambda k, s: 0.1 * jax.random.normal(k, s, self.param_dtype), (d, x.shape[-1]))
    c = self.param("c", nn.initializers.zeros, (d,), self.param_dtype)
    s = self.param("s", nn.initializers.zeros, (d,), self.param_dtype)
    mean = x @ a.T + _lead(c, x.ndim)
    return D.Gaussian(mean, jnp.broadcast_to(s, mean.shape))


class LinearDecoder(nn.Module):
  """p_theta(x|z) = N(W z + b, sigma^2 I): ``z [B, d] -> Gaussian [B, D]``, theta = (W, b, log sigma)."""

  data_dim: int
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> D.Gaussian:
    w = self.param("W", nn.initializers.normal(1.0), (self.data_dim, z.shape[-1]), self.param_dtype)
    b = self.param("b", nn.initializers.zeros, (self.data_dim,), self.param_dtype)
    log_sigma = self.param("log_sigma", nn.initializers.zeros, (), self.param_dtype)
    mean = z @ w.T + _lead(b, z.ndim)
    return D.Gaussian(mean, jnp.broadcast_to(log_sigma, mean.shape))


def gaussian_vector_likelihood(data_dim: int) -> Likelihood:
  """p_theta(x|z) as the decoder's Gaussian over x ``[D]``: log N(x; mu, sigma^2), summed over D.

  A likelihood of one's own: the decoder outputs the distribution itself, so ``outputs`` is
  the identity and ``log_prob`` is the Gaussian density (real-valued data, no preprocessing).
  """
  return Likelihood(
    name="gaussian-vector",
    output_shape=(data_dim,),
    init=lambda: {},
    outputs=lambda params, px: px,
    log_prob=lambda x, px: D.gaussian_log_prob(px, x),
    mean=lambda px: px.mean,
  )


def make_linear_gaussian_vae(data_dim: int, latent_dim: int, param_dtype: Any = jnp.float32) -> VAE:
  """The linear-Gaussian VAE with x ``[..., D]`` and z ``[..., d]``, built with :meth:`VAE.from_modules`.

  ``params = {"encoder": {"A": [d, D], "c": [d], "s": [d]}, "decoder": {"W": [D, d], "b": [D], "log_sigma": []}}``.
  """
  return VAE.from_modules(
    LinearEncoder(latent_dim, param_dtype),
    LinearDecoder(data_dim, param_dtype),
    data_shape=(data_dim,),
    latent_dim=latent_dim,
    likelihood=gaussian_vector_likelihood(data_dim),
  )


def q_phi(params: Params, x: jax.Array) -> D.Gaussian:
  """q_phi(z|x) = N(A x + c, diag(exp(2 s))), ``[B, D] -> [B, d]``."""
  return LinearEncoder(params["encoder"]["A"].shape[0]).apply({"params": params["encoder"]}, x)


def p_theta(params: Params, z: jax.Array) -> D.Gaussian:
  """p_theta(x|z) = N(W z + b, sigma^2 I), ``[B, d] -> [B, D]``."""
  return LinearDecoder(params["decoder"]["W"].shape[0]).apply({"params": params["decoder"]}, z)


def log_p_x(params: Params, x: jax.Array) -> jax.Array:
  """Exact log p_theta(x) = log N(x; b, W W^T + sigma^2 I), ``[B, D] -> [B]``."""
  d = params["decoder"]
  data_dim = d["W"].shape[0]
  cov = d["W"] @ d["W"].T + jnp.exp(2.0 * d["log_sigma"]) * jnp.eye(data_dim)
  chol = jnp.linalg.cholesky(cov)
  u = jax.scipy.linalg.solve_triangular(chol, (x - _lead(d["b"], x.ndim)).T, lower=True)
  log_det = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
  return -0.5 * (jnp.sum(u * u, axis=0) + log_det + data_dim * math.log(2.0 * math.pi))


def true_posterior(params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The exact posterior p_theta(z|x) = N(m(x), S): ``(m [B, d], S [d, d])``."""
  d = params["decoder"]
  w, inv_var = d["W"], jnp.exp(-2.0 * d["log_sigma"])
  cov = jnp.linalg.inv(jnp.eye(w.shape[1]) + inv_var * (w.T @ w))
  mean = inv_var * (x - _lead(d["b"], x.ndim)) @ w @ cov.T
  return mean, cov


def kl_to_true_posterior(params: Params, q: D.Gaussian, x: jax.Array) -> jax.Array:
  """KL(q_phi(z|x) || p_theta(z|x)) in closed form, ``[B]``.

  For q = N(m_q, diag(v_q)) and p = N(m_p, S):
  KL = 1/2 [ tr(S^-1 diag(v_q)) + (m_p - m_q)^T S^-1 (m_p - m_q) - d + log det S - sum log v_q ].
  """
  m_p, cov = true_posterior(params, x)
  prec = jnp.linalg.inv(cov)
  v_q = jnp.exp(2.0 * q.log_scale)
  diff = m_p - q.mean
  _, log_det = jnp.linalg.slogdet(cov)
  trace = jnp.sum(_lead(jnp.diag(prec), v_q.ndim) * v_q, axis=-1)
  maha = jnp.einsum("bi,ij,bj->b", diff, prec, diff)
  return 0.5 * (trace + maha - q.mean.shape[-1] + log_det - jnp.sum(2.0 * q.log_scale, axis=-1))


def exact_elbo(params: Params, x: jax.Array) -> jax.Array:
  """The ELBO with both expectations in closed form, ``[B]``.

  E_q[log p_theta(x|z)] = log N(x; W m_q + b, sigma^2 I) - 1/(2 sigma^2) sum_j ||W_:j||^2 v_q,j
  ELBO = E_q[log p_theta(x|z)] - KL(q_phi(z|x) || N(0, I)).
  """
  q = q_phi(params, x)
  w, inv_var = params["decoder"]["W"], jnp.exp(-2.0 * params["decoder"]["log_sigma"])
  expected_log_lik = D.gaussian_log_prob(p_theta(params, q.mean), x) - 0.5 * inv_var * jnp.sum(
    _lead(jnp.sum(w * w, axis=0), x.ndim) * jnp.exp(2.0 * q.log_scale), axis=-1
  )
  return expected_log_lik - D.gaussian_kl_to_standard_normal(q)


def optimal_encoder(params: Params) -> Params:
  """The encoder (A, c, s) that makes q_phi(z|x) the true posterior, when W^T W is diagonal.

  m(x) = S W^T (x - b) / sigma^2 gives A = S W^T / sigma^2, c = -A b; s = 1/2 log diag(S).
  """
  d = params["decoder"]
  w, inv_var = d["W"], jnp.exp(-2.0 * d["log_sigma"])
  cov = jnp.linalg.inv(jnp.eye(w.shape[1]) + inv_var * (w.T @ w))
  a = inv_var * cov @ w.T
  return {"A": a, "c": -a @ d["b"], "s": 0.5 * jnp.log(jnp.diag(cov))}
