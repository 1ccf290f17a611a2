"""The Ladder VAE: L stochastic layers, top-down inference sharing the generative path.

Sønderby, Raiko, Maaløe, Sønderby & Winther (2016). With z = (z_1, ..., z_L), z_1 next to x::

  generative   p_theta(x, z) = p(z_L) prod_{l<L} p_theta(z_l | z_{l+1}) p_theta(x | z_1),  p(z_L) = N(0, I)
  bottom-up    d_1 = MLP(x), d_l = MLP(d_{l-1});  (mu^_l, sigma^_l) = Linear(d_l)      (deterministic)
  inference    q(z_L | x) = N(mu^_L, sigma^_L^2)
               q(z_l | z_{l+1}, x) = N(mu_q, sigma_q^2),  the precision-weighted merge of the
               bottom-up (mu^_l, sigma^_l) and the top-down p_theta(z_l | z_{l+1}) = N(mu_p, sigma_p^2):
                 sigma_q^-2 = sigma^_l^-2 + sigma_p^-2,   mu_q = (mu^_l sigma^_l^-2 + mu_p sigma_p^-2) sigma_q^2

The top-down networks are shared: the prior evaluates p_theta(z_l | z_{l+1}) with them and the
posterior merges their output into q, so q is corrected by what the generative model expects
(the design that NVAE and VDVAE scale up). The precision-weighted merge is Sønderby et al.'s;
NVAE's residual form (q's parameters as offsets of p's) needs batch normalization and spectral
regularization to be stable at depth, which a 5-layer MLP model does not need; the merge keeps
every q a proper posterior of two Gaussian "observations" of z_l.

Each layer's KL is closed-form given the layer above: KL_l = KL(q(z_l|z_{l+1},x) || p(z_l|z_{l+1}))
at the drawn z_{l+1} (Posterior.sample_kl). Their sum estimates KL(q || p) with less variance than
log q - log p, and gives per-layer KL, warm-up and free bits (:func:`jaxvae.core.objectives.beta_elbo`).

References:
  Sønderby et al. (2016), "Ladder Variational Autoencoders", NeurIPS.
  Vahdat & Kautz (2020), "NVAE"; Child (2021), "Very Deep VAEs" (the residual parameterization).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core import distributions as D
from jaxvae.core.model import MODELS, VAE
from jaxvae.core.nets import ACTIVATIONS, GaussianMLP
from jaxvae.core.posteriors import Posterior, expand
from jaxvae.core.priors import Prior
from jaxvae.core.vaes import FREE_BITS_RULE, architecture_problem, check_conv, decoder_of, likelihood_of


class LadderEncoder(nn.Module):
  """The bottom-up pass: x -> (Gaussian(mu^_l, log sigma^_l) [B, d_l] for l = 1..L).

  Each layer l is two Dense layers of ``widths[l]`` on the previous layer's features, then a
  linear map to (mu^_l, log sigma^_l). With ``conv_channels``, x first goes through strided
  4x4 convolutions (H and W halve per width), flattened (the convolutional version for images).

  Attributes:
    widths: deterministic width of each layer, bottom (next to x) first.
    latents: d_l of each layer, bottom first.
    activation: a name in :data:`jaxvae.core.nets.ACTIVATIONS`.
    conv_channels: widths of the convolutions below the first layer (None: an MLP).
  """

  widths: Sequence[int]
  latents: Sequence[int]
  activation: str = "elu"
  conv_channels: Sequence[int] | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[D.Gaussian, ...]:
    act = ACTIVATIONS[self.activation]
    h = x
    if self.conv_channels:
      for width in self.conv_channels:
        h = act(nn.Conv(width, (4, 4), strides=(2, 2), padding="SAME")(h))
    h = h.reshape(h.shape[:1] + (-1,))
    out = []
    for width, d in zip(self.widths, self.latents):
      h = act(nn.Dense(width)(act(nn.Dense(width)(h))))
      mean, log_scale = jnp.split(nn.Dense(2 * d)(h), 2, axis=-1)
      out.append(D.Gaussian(mean, log_scale))
    return tuple(out)


def merge(bottom_up: D.Gaussian, top_down: D.Gaussian) -> D.Gaussian:
  """The precision-weighted product of two Gaussians over z_l, renormalized (Sønderby et al., eqs. 18-19).

  sigma_q^-2 = sigma_a^-2 + sigma_b^-2,  mu_q = w mu_a + (1 - w) mu_b,  w = sigma_a^-2 / sigma_q^-2,
  computed in log space: log sigma_q = -1/2 logaddexp(-2 log sigma_a, -2 log sigma_b),
  w = sigmoid(2 (log sigma_b - log sigma_a)).
  """
  w = jax.nn.sigmoid(2.0 * (top_down.log_scale - bottom_up.log_scale))
  mean = w * bottom_up.mean + (1.0 - w) * top_down.mean
  log_scale = -0.5 * jnp.logaddexp(-2.0 * bottom_up.log_scale, -2.0 * top_down.log_scale)
  return D.Gaussian(mean, log_scale)


def ladder(
  latents: Sequence[int], widths: Sequence[int], activation: str = "elu", *, mean_samples: int = 64
) -> tuple[Prior, Posterior]:
  """The Ladder VAE's prior p(z_L) prod p(z_l|z_{l+1}) and top-down posterior, sharing their networks.

  The encoder is a :class:`LadderEncoder` with the same ``latents``; the decoder maps z_1 to
  the likelihood's parameters. The latent is the tuple ``(z_1, ..., z_L)``. The top-down
  networks p(z_l|z_{l+1}) (two Dense layers of ``widths[l]``) live in ``params["prior"]``;
  the posterior reads them there, and has no parameters of its own.

  Args:
    latents: d_l, bottom (z_1) first; L = len(latents) >= 1.
    widths: the deterministic width of each layer, bottom first (the top-down network into
      z_l has ``widths[l]``).
    activation: the top-down networks' nonlinearity.
    mean_samples: draws of the layers above for E_q[z_l|x] (active units).

  Returns:
    ``(prior, posterior)`` for :meth:`jaxvae.VAE.from_modules`.

  Example:
    >>> prior, posterior = ladder.ladder((64, 32, 16, 8, 4), (512, 256, 128, 64, 32))
    >>> vae = VAE.from_modules(ladder.LadderEncoder((512, 256, 128, 64, 32), (64, 32, 16, 8, 4)),
    ...                        MLPDecoder((512, 512), (28, 28, 1)), data_shape=(28, 28, 1),
    ...                        latent_dim=64, prior=prior, posterior=posterior)
  """
  latents, widths = tuple(latents), tuple(widths)
  n = len(latents)
  top_down = [
    GaussianMLP(hidden=(widths[l], widths[l]), out_dim=latents[l], activation=activation) for l in range(n - 1)
  ]

  def p_given_above(params, l, z_above):
    """p_theta(z_l | z_{l+1}) for l = 0..L-2 (0-based)."""
    return top_down[l].apply({"params": params["prior"][f"layer_{l + 1}"]}, z_above)

  def init(key, data=None):
    del data
    return {
      f"layer_{l + 1}": m.init(jax.random.fold_in(key, l), jnp.zeros((1, latents[l + 1])))["params"]
      for l, m in enumerate(top_down)
    }

  def log_prob(params, z):
    total = D.standard_normal_log_prob(z[-1])
    for l in range(n - 1):
      total = total + D.gaussian_log_prob(p_given_above(params, l, z[l + 1]), z[l])
    return total

  def sample_prior(params, key, count):
    keys = jax.random.split(key, n)
    z = [None] * n
    z[-1] = jax.random.normal(keys[-1], (count, latents[-1]))
    for l in reversed(range(n - 1)):
      z[l] = D.gaussian_sample(keys[l], p_given_above(params, l, z[l + 1]))
    return tuple(z)

  def top_down_pass(params, h, key, sample_shape, z_given=None):
    """Draws (or takes) z_L, ..., z_1; returns z, log q per layer and the layer KLs per dimension."""
    keys = jax.random.split(key, n)
    s = len(sample_shape) if z_given is None else z_given[-1].ndim - h[-1].mean.ndim
    z, log_q, kl, q_means = [None] * n, [None] * n, [None] * n, [None] * n
    q = expand(h[-1], s)
    q_means[-1] = h[-1].mean
    z[-1] = D.gaussian_sample(keys[-1], h[-1], sample_shape) if z_given is None else z_given[-1]
    log_q[-1] = D.gaussian_log_prob(q, z[-1])
    kl[-1] = jnp.broadcast_to(D.gaussian_kl_to_standard_normal_per_dim(q), z[-1].shape)
    for l in reversed(range(n - 1)):
      p = p_given_above(params, l, z[l + 1])
      q = merge(expand(h[l], s), p)
      z[l] = (
        jnp.broadcast_to(q.mean, p.mean.shape) + jnp.exp(q.log_scale) * jax.random.normal(keys[l], p.mean.shape)
        if z_given is None
        else z_given[l]
      )
      log_q[l] = D.gaussian_log_prob(q, z[l])
      kl[l] = D.gaussian_kl_per_dim(q, p)
      q_means[l] = jnp.broadcast_to(q.mean, p.mean.shape)
    return tuple(z), sum(log_q), tuple(kl), tuple(q_means)

  def sample(params, h, key, sample_shape=()):
    z, log_q, _, _ = top_down_pass(params, h, key, sample_shape)
    return z, log_q

  def sample_kl(params, h, key, sample_shape=()):
    z, _, kl, _ = top_down_pass(params, h, key, sample_shape)
    return z, kl

  def log_q(params, h, z):
    return top_down_pass(params, h, jax.random.key(0), (), z_given=z)[1]

  def means(params, h, key):
    """E_q[z_L|x] = mu^_L exactly; E_q[z_l|x] = E[ mean of q(z_l|z_{l+1}, x) ] over draws of the layers above."""
    _, _, _, q_means = top_down_pass(params, h, key, (mean_samples,))
    return tuple(m if m.ndim == h[-1].mean.ndim else jnp.mean(m, axis=0) for m in q_means)

  prior = Prior(f"ladder{n}", init, log_prob, sample_prior, None)
  posterior = Posterior(
    name=f"ladder{n}",
    init=lambda key: {},
    gaussian=lambda params, h: h[0],
    sample=sample,
    log_prob=log_q,
    means=means,
    sample_kl=sample_kl,
  )
  return prior, posterior


# ---------------------------------------------------------------------------
# ``--model ladder``.
# ---------------------------------------------------------------------------


def ladder_vae(config: Any, data_shape: tuple[int, ...], dtype=np.uint8) -> VAE:
  """``ladder``, Sønderby et al. (2016): ``ladder_layers`` stochastic layers, top-down inference.

  The bottom-up pass is an MLP (or, with ``--net conv``, strided convolutions then the MLP
  layers); the decoder p_theta(x|z_1) is an MLP of ``hidden`` (or the conv decoder).
  """
  likelihood = likelihood_of(config, data_shape, dtype)
  if config.net == "conv":
    check_conv(config, data_shape)
  conv = config.conv_channels if config.net == "conv" else None
  encoder = LadderEncoder(config.ladder_widths, config.ladder_layers, config.activation, conv)
  prior, posterior = ladder(config.ladder_layers, config.ladder_widths, config.activation)
  return VAE.from_modules(
    encoder,
    decoder_of(config, likelihood),
    data_shape=data_shape,
    latent_dim=config.latent_dim,
    likelihood=likelihood,
    prior=prior,
    posterior=posterior,
    host_loop_on_cpu=config.net == "conv",
  )


def _defaults(config: Any) -> dict[str, Any]:
  """Sønderby et al. (2016), MNIST: five stochastic layers 64-32-16-8-4, deterministic widths
  512-256-128-64-32 (two Dense layers each), a 512-512 decoder; ELU (they use leaky ReLU and batch
  normalization). ``latent_dim`` is the first layer's size."""
  layers = config.ladder_layers or (64, 32, 16, 8, 4)
  return dict(
    hidden=(512, 512),
    activation="elu",
    ladder_layers=layers,
    ladder_widths=(512, 256, 128, 64, 32),
    latent_dim=layers[0],
  )


def _problem(config: Any) -> str | None:
  if problem := architecture_problem(config):
    return problem
  layers, widths = config.ladder_layers, config.ladder_widths
  if layers is None or widths is None or len(layers) != len(widths):
    return (
      f"--ladder-layers {layers} and --ladder-widths {widths} need one width per stochastic layer: give as many of each"
    )
  if config.latent_dim != layers[0]:
    return (
      f"latent_dim={config.latent_dim} is the ladder's first layer, --ladder-layers {','.join(map(str, layers))}: "
      "leave --latent-dim unset"
    )
  if config.prior != "normal" or config.posterior != "gaussian":
    return (
      "the ladder model has its own top-down prior and posterior: use --prior normal and --posterior gaussian with it"
    )
  return FREE_BITS_RULE if config.free_bits > 0 and config.kl != "analytic" else None


MODELS.register("ladder", ladder_vae, defaults=_defaults, check=_problem)
