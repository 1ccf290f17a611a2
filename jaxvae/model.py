"""The VAE as pure functions named after the papers' symbols.

================  ====================================  ==========================
symbol            meaning                               function
================  ====================================  ==========================
p(z)              the prior                             ``vae.log_p_z``, ``vae.sample_p_z``
p_theta(x|z)      the likelihood (decoder)              ``vae.p_theta`` (its parameters),
                                                        ``vae.log_p_x_given_z`` (its log-density)
q_phi(z|x)        the approximate posterior (encoder)   ``vae.q_phi``
KL(q_phi || p)    the KL to the prior, in closed form   ``vae.kl_q_p_z``
================  ====================================  ==========================

The encoder is "amortized": one network q_phi serves every x, instead of one set
of variational parameters per data point. The ELBO that ties them together is in
:mod:`jaxvae.objectives`.

Example:
  >>> vae = make_vae(Config())
  >>> params = vae.init(jax.random.key(0))
  >>> q = vae.q_phi(params, x)              # q_phi(z|x): Gaussian, [B, 20]
  >>> z = gaussian_sample(key, q)           # z ~ q_phi(z|x), reparameterized
  >>> logits = vae.p_theta(params, z)       # p_theta(x|z): Bernoulli logits, [B, 28, 28, 1]
  >>> vae.log_p_x_given_z(x, logits)        # [B] nats
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxvae import distributions as D
from jaxvae.config import Config
from jaxvae.nets import MLPDecoder, MLPEncoder

Params = Any  # a pytree: {"encoder": ..., "decoder": ...}


class VAE(NamedTuple):
  """A variational autoencoder as a NamedTuple of pure functions.

  Attributes:
    init: ``key -> params``.
    q_phi: ``(params, x [..., H, W, C]) -> Gaussian [..., d]``: the encoder, the
      amortized approximate posterior q_phi(z|x).
    p_theta: ``(params, z [..., d]) -> [..., H, W, C]``: the decoder, the
      parameters of the likelihood p_theta(x|z) (Bernoulli logits).
    log_p_x_given_z: ``(x, p_theta output) -> [...]``: log p_theta(x|z), summed over pixels.
    mean_x: ``p_theta output -> [..., H, W, C]``: E[x|z], the image a decoder shows.
    log_p_z: ``(params, z [..., d]) -> [...]``: the prior log p(z).
    sample_p_z: ``(params, key, n) -> [n, d]``: z ~ p(z).
    kl_q_p_z: ``(params, q) -> [...]``: KL(q_phi(z|x) || p(z)) in closed form.
    latent_dim: d.
    image_shape: (H, W, C).
  """

  init: Callable[[jax.Array], Params]
  q_phi: Callable[[Params, jax.Array], D.Gaussian]
  p_theta: Callable[[Params, jax.Array], jax.Array]
  log_p_x_given_z: Callable[[jax.Array, jax.Array], jax.Array]
  mean_x: Callable[[jax.Array], jax.Array]
  log_p_z: Callable[[Params, jax.Array], jax.Array]
  sample_p_z: Callable[[Params, jax.Array, int], jax.Array]
  kl_q_p_z: Callable[[Params, D.Gaussian], jax.Array]
  latent_dim: int
  image_shape: tuple[int, int, int]


def make_vae(config: Config, image_shape: tuple[int, int, int] = (28, 28, 1)) -> VAE:
  """Builds the VAE of ``config``: MLP q_phi(z|x), MLP Bernoulli p_theta(x|z), p(z) = N(0, I).

  The Linen modules are built here, once; the returned functions only apply them.

  Args:
    config: the run configuration (``hidden``, ``latent_dim``, ``activation``).
    image_shape: (H, W, C) of x.

  Returns:
    A :class:`VAE`.
  """
  image_shape = tuple(image_shape)
  d = config.latent_dim
  encoder = MLPEncoder(hidden=config.hidden, latent_dim=d, activation=config.activation)
  decoder = MLPDecoder(hidden=config.hidden[::-1], image_shape=image_shape, activation=config.activation)

  def init(key: jax.Array) -> Params:
    k_enc, k_dec = jax.random.split(key)
    return {
        "encoder": encoder.init(k_enc, jnp.zeros((1,) + image_shape))["params"],
        "decoder": decoder.init(k_dec, jnp.zeros((1, d)))["params"],
    }

  def q_phi(params: Params, x: jax.Array) -> D.Gaussian:
    return encoder.apply({"params": params["encoder"]}, x)

  def p_theta(params: Params, z: jax.Array) -> jax.Array:
    return decoder.apply({"params": params["decoder"]}, z)

  def log_p_z(params: Params, z: jax.Array) -> jax.Array:
    del params  # N(0, I) has none.
    return D.standard_normal_log_prob(z)

  def sample_p_z(params: Params, key: jax.Array, n: int) -> jax.Array:
    del params
    return jax.random.normal(key, (n, d))

  def kl_q_p_z(params: Params, q: D.Gaussian) -> jax.Array:
    del params
    return D.gaussian_kl_to_standard_normal(q)

  return VAE(
      init=init,
      q_phi=q_phi,
      p_theta=p_theta,
      log_p_x_given_z=D.bernoulli_log_prob,
      mean_x=D.bernoulli_mean,
      log_p_z=log_p_z,
      sample_p_z=sample_p_z,
      kl_q_p_z=kl_q_p_z,
      latent_dim=d,
      image_shape=image_shape,
  )
