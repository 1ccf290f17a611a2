"""The VAE as pure functions named after the papers' symbols.

================  ====================================  ==========================
symbol            meaning                               function
================  ====================================  ==========================
p(z)              the prior                             ``vae.log_p_z``, ``vae.sample_p_z``
p_theta(x|z)      the likelihood (decoder)              ``vae.p_theta`` (its parameters),
                                                        ``vae.log_p_x_given_z`` (its log-density)
q_phi(z|x)        the approximate posterior (encoder)   ``vae.q_phi`` (its Gaussian),
                                                        ``vae.sample_q`` (z and log q_phi(z|x))
KL(q_phi || p)    the KL to the prior, in closed form   ``vae.kl_q_p_z`` (per dimension)
================  ====================================  ==========================

The encoder is "amortized": one network q_phi serves every x, instead of one set
of variational parameters per data point. The ELBO that ties them together is in
:mod:`jaxvae.objectives`.

Two families:

* one stochastic layer (``mlp``, ``burda1``; MLP or conv networks): q_phi(z|x) =
  N(mu_phi(x), sigma_phi(x)^2), any likelihood of :mod:`jaxvae.likelihoods`, any prior of
  :mod:`jaxvae.priors` (N(0, I), a mixture of Gaussians, the VampPrior); z is ``[..., d]``.
* two stochastic layers (``burda2``, Burda et al. 2016): q_phi(z1|x) q_phi(z2|z1) and
  p(z2) p_theta(z1|z2) p_theta(x|z1), all Gaussian but the likelihood; z is the pair
  ``(z1, z2)``, and KL(q || p) has no closed form.

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
from jaxvae.likelihoods import make_likelihood
from jaxvae.nets import ConvDecoder, ConvEncoder, GaussianMLP, MLPDecoder, MLPEncoder
from jaxvae.priors import Prior, mixture_of_gaussians, standard_normal, vamp_prior

Params = Any  # a pytree: {"encoder": ..., "decoder": ..., ...}
Latent = Any  # z: an array [..., d], or a tuple of arrays for several stochastic layers


class VAE(NamedTuple):
  """A variational autoencoder as a NamedTuple of pure functions.

  Attributes:
    init: ``(key, data=None) -> params``; ``data`` (training images, ``[N, H, W, C]``
      uint8) initialises the VampPrior's pseudo-inputs and is ignored otherwise.
    q_phi: ``(params, x [..., H, W, C]) -> Gaussian [..., d]``: the encoder, the
      amortized approximate posterior q_phi(z|x) (its first layer, q_phi(z1|x), if
      there are two).
    sample_q: ``(params, x [B, ...], key, sample_shape) -> (z, log q_phi(z|x))``:
      reparameterized draws of every stochastic layer, ``[*sample_shape, B, ...]``,
      and their log-density ``[*sample_shape, B]``.
    p_theta: ``(params, z) -> the parameters of p_theta(x|z)``: the decoder (Bernoulli
      logits ``[..., H, W, C]``, a Gaussian, or a logistic mixture; see :mod:`jaxvae.likelihoods`).
    log_p_x_given_z: ``(x, p_theta output) -> [...]``: log p_theta(x|z), summed over
      pixels; ``x`` has the output's shape.
    mean_x: ``p_theta output -> [..., H, W, C]``: E[x|z], the image a decoder shows.
    log_p_z: ``(params, z) -> [...]``: the prior log p(z) of the whole latent.
    sample_p_z: ``(params, key, n) -> z``: z ~ p(z), ``[n, ...]``.
    kl_q_p_z: ``(params, q) -> [..., d]``: KL(q_phi(z|x) || p(z)) in closed form,
      per latent dimension (the KL is their sum), or None where there is none.
    latent_means: ``(params, x, key) -> tuple of [B, d_l]``: E_q[z_l|x] per
      stochastic layer (Monte Carlo above the first), for counting active units.
    latent_dim: d (of z1).
    image_shape: (H, W, C).
  """

  init: Callable[..., Params]
  q_phi: Callable[[Params, jax.Array], D.Gaussian]
  sample_q: Callable[[Params, jax.Array, jax.Array, tuple[int, ...]], tuple[Latent, jax.Array]]
  p_theta: Callable[[Params, Latent], jax.Array]
  log_p_x_given_z: Callable[[jax.Array, jax.Array], jax.Array]
  mean_x: Callable[[jax.Array], jax.Array]
  log_p_z: Callable[[Params, Latent], jax.Array]
  sample_p_z: Callable[[Params, jax.Array, int], Latent]
  kl_q_p_z: Callable[[Params, D.Gaussian], jax.Array] | None
  latent_means: Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, ...]]
  latent_dim: int
  image_shape: tuple[int, int, int]


def _expand(q: D.Gaussian, sample_ndim: int) -> D.Gaussian:
  """Adds ``sample_ndim`` leading size-1 axes, to score samples ``[*S, B, d]`` under q ``[B, d]``."""
  lead = (1,) * sample_ndim
  return D.Gaussian(q.mean.reshape(lead + q.mean.shape), q.log_scale.reshape(lead + q.log_scale.shape))


def make_vae(config: Config, image_shape: tuple[int, int, int] = (28, 28, 1)) -> VAE:
  """Builds the VAE of ``config.model``; the Linen modules are built here, once.

  Args:
    config: the run configuration (``model`` and its architecture fields).
    image_shape: (H, W, C) of x.

  Returns:
    A :class:`VAE`.
  """
  if config.model == "burda2":
    return _make_two_layer_vae(config, tuple(image_shape))
  return _make_one_layer_vae(config, tuple(image_shape))


def _make_one_layer_vae(config: Config, image_shape: tuple[int, int, int]) -> VAE:
  """q_phi(z|x) -> N(mu, sigma^2) from an MLP or conv encoder; the configured likelihood and prior."""
  d = config.latent_dim
  likelihood = make_likelihood(config, image_shape)
  out_shape = tuple(image_shape[:2]) + (likelihood.features,)
  if config.net == "conv":
    encoder = ConvEncoder(channels=config.conv_channels, latent_dim=d, activation=config.activation)
    decoder = ConvDecoder(channels=config.conv_channels[::-1], out_shape=out_shape, activation=config.activation)
  else:
    encoder = MLPEncoder(hidden=config.hidden, latent_dim=d, activation=config.activation)
    decoder = MLPDecoder(hidden=config.hidden[::-1], image_shape=out_shape, activation=config.activation)

  def q_phi(params: Params, x: jax.Array) -> D.Gaussian:
    return encoder.apply({"params": params["encoder"]}, x)

  prior = _make_prior(config, q_phi, image_shape)

  def init(key: jax.Array, data: jax.Array | None = None) -> Params:
    k_enc, k_dec, k_prior = jax.random.split(key, 3)
    params = {
        "encoder": encoder.init(k_enc, jnp.zeros((1,) + image_shape))["params"],
        "decoder": decoder.init(k_dec, jnp.zeros((1, d)))["params"],
    }
    for name, value in (("prior", prior.init(k_prior, data)), ("likelihood", likelihood.init())):
      if value:  # no empty subtrees: N(0, I) and the Bernoulli have no parameters of their own
        params[name] = value
    return params

  def sample_q(params: Params, x: jax.Array, key: jax.Array, sample_shape: tuple[int, ...] = ()):
    q = q_phi(params, x)
    z = D.gaussian_sample(key, q, sample_shape)
    return z, D.gaussian_log_prob(_expand(q, len(sample_shape)), z)

  def p_theta(params: Params, z: jax.Array):
    return likelihood.outputs(params.get("likelihood", {}), decoder.apply({"params": params["decoder"]}, z))

  def latent_means(params: Params, x: jax.Array, key: jax.Array) -> tuple[jax.Array, ...]:
    del key
    return (q_phi(params, x).mean,)

  return VAE(
      init=init,
      q_phi=q_phi,
      sample_q=sample_q,
      p_theta=p_theta,
      log_p_x_given_z=likelihood.log_prob,
      mean_x=likelihood.mean,
      log_p_z=prior.log_prob,
      sample_p_z=prior.sample,
      kl_q_p_z=prior.kl_per_dim,
      latent_means=latent_means,
      latent_dim=d,
      image_shape=image_shape,
  )


def _make_prior(config: Config, q_phi, image_shape: tuple[int, int, int]) -> Prior:
  if config.prior == "mog":
    return mixture_of_gaussians(config.latent_dim, config.prior_components)
  if config.prior == "vamp":
    data_range = (-1.0, 1.0) if config.likelihood == "discretized-logistic" else (0.0, 1.0)
    return vamp_prior(q_phi, image_shape, config.prior_components, data_range)
  return standard_normal(config.latent_dim)


def _make_two_layer_vae(config: Config, image_shape: tuple[int, int, int]) -> VAE:
  """Burda et al. (2016), two stochastic layers.

  Inference:  q_phi(z1, z2 | x) = q_phi(z1|x) q_phi(z2|z1)
  Generative: p_theta(x, z1, z2) = p(z2) p_theta(z1|z2) p_theta(x|z1),  p(z2) = N(0, I)
  Every conditional is a diagonal Gaussian from an MLP (``hidden`` between x and z1,
  ``hidden2`` between z1 and z2), except the Bernoulli p_theta(x|z1).
  """
  d1, d2 = config.latent_dim, config.latent_dim2
  act = config.activation
  likelihood = make_likelihood(config, image_shape)
  q_z1 = MLPEncoder(hidden=config.hidden, latent_dim=d1, activation=act)
  q_z2 = GaussianMLP(hidden=config.hidden2, out_dim=d2, activation=act)
  p_z1 = GaussianMLP(hidden=config.hidden2[::-1], out_dim=d1, activation=act)
  p_x = MLPDecoder(hidden=config.hidden[::-1], image_shape=tuple(image_shape[:2]) + (likelihood.features,), activation=act)

  def init(key: jax.Array, data: jax.Array | None = None) -> Params:
    del data  # p(z2) = N(0, I) has no data-dependent initialisation
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = {
        "encoder": q_z1.init(k1, jnp.zeros((1,) + image_shape))["params"],
        "encoder2": q_z2.init(k2, jnp.zeros((1, d1)))["params"],
        "prior1": p_z1.init(k3, jnp.zeros((1, d2)))["params"],
        "decoder": p_x.init(k4, jnp.zeros((1, d1)))["params"],
    }
    if own := likelihood.init():  # e.g. a learned Gaussian scale; the Bernoulli has none
      params["likelihood"] = own
    return params

  def q_phi(params: Params, x: jax.Array) -> D.Gaussian:
    return q_z1.apply({"params": params["encoder"]}, x)

  def sample_q(params: Params, x: jax.Array, key: jax.Array, sample_shape: tuple[int, ...] = ()):
    k1, k2 = jax.random.split(key)
    q1 = q_phi(params, x)
    z1 = D.gaussian_sample(k1, q1, sample_shape)
    q2 = q_z2.apply({"params": params["encoder2"]}, z1)
    z2 = D.gaussian_sample(k2, q2)
    log_q = D.gaussian_log_prob(_expand(q1, len(sample_shape)), z1) + D.gaussian_log_prob(q2, z2)
    return (z1, z2), log_q

  def p_theta(params: Params, z):
    return likelihood.outputs(params.get("likelihood", {}), p_x.apply({"params": params["decoder"]}, z[0]))

  def log_p_z(params: Params, z) -> jax.Array:
    z1, z2 = z
    p1 = p_z1.apply({"params": params["prior1"]}, z2)
    return D.gaussian_log_prob(p1, z1) + D.standard_normal_log_prob(z2)

  def sample_p_z(params: Params, key: jax.Array, n: int):
    k2, k1 = jax.random.split(key)
    z2 = jax.random.normal(k2, (n, d2))
    z1 = D.gaussian_sample(k1, p_z1.apply({"params": params["prior1"]}, z2))
    return (z1, z2)

  def latent_means(params: Params, x: jax.Array, key: jax.Array, samples: int = 16) -> tuple[jax.Array, ...]:
    # E_q[z2|x] = E_{q(z1|x)} [ mean of q(z2|z1) ], by Monte Carlo over z1.
    q1 = q_phi(params, x)
    z1 = D.gaussian_sample(key, q1, (samples,))
    return q1.mean, jnp.mean(q_z2.apply({"params": params["encoder2"]}, z1).mean, axis=0)

  return VAE(
      init=init,
      q_phi=q_phi,
      sample_q=sample_q,
      p_theta=p_theta,
      log_p_x_given_z=likelihood.log_prob,
      mean_x=likelihood.mean,
      log_p_z=log_p_z,
      sample_p_z=sample_p_z,
      kl_q_p_z=None,
      latent_means=latent_means,
      latent_dim=d1,
      image_shape=image_shape,
  )
