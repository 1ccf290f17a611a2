"""The built-in VAEs of one and two stochastic layers: ``mlp``, ``burda1`` and ``burda2``.

Each is a factory ``(config, data_shape, dtype) -> VAE`` registered in
:data:`jaxvae.core.model.MODELS` under the name ``--model`` accepts, with the architecture
defaults it gives the config fields left unset and the rules it brings. They are built as a
user's model is: Linen networks (:mod:`jaxvae.core.nets`), and the likelihood, prior and
posterior registered under the config's names, handed to :meth:`jaxvae.VAE.from_modules`.

References:
  Kingma & Welling (2014), "Auto-Encoding Variational Bayes" (``mlp``: 784-400-20, ReLU).
  Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders" (``burda1``:
  784-200-200-50, tanh; ``burda2``: 784-200-200-100-100-100-50, two stochastic layers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvae.core.likelihoods import LIKELIHOODS, Likelihood
from jaxvae.core.model import MODELS, VAE
from jaxvae.core.nets import ConvDecoder, ConvEncoder, GaussianMLP, MLPDecoder, MLPEncoder
from jaxvae.core.posteriors import POSTERIORS, bottom_up_gaussian
from jaxvae.core.priors import PRIORS, top_down_gaussian
from jaxvae.errors import JaxvaeError

FREE_BITS_RULE = (
  "free_bits needs the closed-form per-dimension KL: use one stochastic layer with --prior normal and "
  "--posterior gaussian, or --model ladder, and --kl analytic"
)


# ---------------------------------------------------------------------------
# Pieces every built-in model uses (the ladder's too).
# ---------------------------------------------------------------------------


def likelihood_of(config: Any, data_shape: tuple[int, ...], dtype=np.uint8) -> Likelihood:
  """The likelihood ``config.likelihood`` names, for examples of ``data_shape`` stored as ``dtype``."""
  return LIKELIHOODS.build(config.likelihood, config, data_shape=data_shape, dtype=dtype)


def check_conv(config: Any, data_shape: tuple[int, ...]) -> None:
  """Raises a one-line :class:`JaxvaeError` unless images of ``data_shape`` halve ``len(conv_channels)`` times."""
  factor = 2 ** len(config.conv_channels)
  if len(data_shape) != 3 or data_shape[0] % factor or data_shape[1] % factor:
    raise JaxvaeError(
      f"--net conv needs images [H, W, C] whose H and W halve {len(config.conv_channels)} times, not {data_shape}: "
      f"use --image-size with a multiple of {factor}, or fewer --conv-channels"
    )


def decoder_of(config: Any, likelihood: Likelihood) -> Any:
  """p_theta(x|z)'s network: the MLP of ``hidden`` reversed, or with ``--net conv`` the conv decoder."""
  if config.net == "conv":
    return ConvDecoder(
      channels=config.conv_channels[::-1], out_shape=likelihood.output_shape, activation=config.activation
    )
  return MLPDecoder(hidden=config.hidden[::-1], out_shape=likelihood.output_shape, activation=config.activation)


def activation_of(config: Any, own: str) -> str:
  """A built-in model's nonlinearity: ``own``, or ELU with ``--net conv``.

  ELU in conv nets: after 5 epochs on 8-bit MNIST with the logistic mixture, ELU gave a test
  ELBO of -723.8 against ReLU's -754.0, and prior samples that are digits where ReLU's were
  mostly strokes (experiments/likelihoods/README.md).
  """
  return "elu" if config.net == "conv" else own


def architecture_problem(config: Any) -> str | None:
  """The rules of every built-in model: its architecture fields set, and no other model's fields given."""
  for name in ("hidden", "latent_dim", "activation"):
    if getattr(config, name) is None:
      return f"{name} is unset: the built-in model {config.model} needs it"
  if config.model != "burda2" and (config.hidden2 is not None or config.latent_dim2 is not None):
    return f"hidden2/latent_dim2 describe a second stochastic layer: use them with --model burda2, not {config.model}"
  if config.model != "ladder" and (config.ladder_layers is not None or config.ladder_widths is not None):
    return (
      f"--ladder-layers/--ladder-widths describe the ladder model: use them with --model ladder, not {config.model}"
    )
  if config.model != "vdvae" and any(getattr(config, f"vdvae_{name}") is not None for name in _VDVAE_FIELDS):
    return f"the --vdvae-* flags describe the vdvae model: use them with --model vdvae, not {config.model}"
  return None


_VDVAE_FIELDS = ("width", "widths", "zdim", "bottleneck", "encoder", "decoder")


# ---------------------------------------------------------------------------
# One stochastic layer: mlp, burda1.
# ---------------------------------------------------------------------------


def one_stochastic_layer(config: Any, data_shape: tuple[int, ...], dtype=np.uint8) -> VAE:
  """``mlp`` and ``burda1``: q_phi(z|x) from an MLP or conv encoder; the configured likelihood, prior and posterior.

  q_phi(z|x) is the posterior ``config.posterior`` names: N(mu, sigma^2), or with ``--posterior
  iaf`` that Gaussian followed by ``flow_steps`` IAF steps (:func:`jaxvae.core.flows.iaf`), the
  encoder also giving the flow's context h(x) (of the size the posterior asks for).
  """
  likelihood = likelihood_of(config, data_shape, dtype)
  d, act = config.latent_dim, config.activation
  posterior = POSTERIORS.build(config.posterior, config, latent_dim=d)
  if config.net == "conv":
    check_conv(config, data_shape)
    encoder = ConvEncoder(
      channels=config.conv_channels, latent_dim=d, activation=act, context_dim=posterior.context_dim
    )
  else:
    encoder = MLPEncoder(hidden=config.hidden, latent_dim=d, activation=act, context_dim=posterior.context_dim)
  prior = PRIORS.build(
    config.prior, config, latent_dim=d, encoder=encoder, data_shape=data_shape, likelihood=likelihood
  )
  return VAE.from_modules(
    encoder,
    decoder_of(config, likelihood),
    data_shape=data_shape,
    latent_dim=d,
    likelihood=likelihood,
    prior=prior,
    posterior=posterior,
    host_loop_on_cpu=config.net == "conv",
  )


def _one_layer_problem(config: Any) -> str | None:
  if problem := architecture_problem(config):
    return problem
  closed_form = config.prior == "normal" and config.posterior == "gaussian" and config.kl == "analytic"
  return FREE_BITS_RULE if config.free_bits > 0 and not closed_form else None


# Kingma & Welling (2014) / pytorch-examples: 784-400-20, ReLU, one stochastic layer.
MODELS.register(
  "mlp",
  one_stochastic_layer,
  defaults=lambda config: dict(hidden=(400,), latent_dim=20, activation=activation_of(config, "relu")),
  check=_one_layer_problem,
)
# Burda et al. (2016), one stochastic layer: 784-200-200-50, tanh.
MODELS.register(
  "burda1",
  one_stochastic_layer,
  defaults=lambda config: dict(hidden=(200, 200), latent_dim=50, activation=activation_of(config, "tanh")),
  check=_one_layer_problem,
)


# ---------------------------------------------------------------------------
# Two stochastic layers: burda2.
# ---------------------------------------------------------------------------


def two_stochastic_layers(config: Any, data_shape: tuple[int, ...], dtype=np.uint8) -> VAE:
  """``burda2``, Burda et al. (2016): two stochastic layers, every conditional a diagonal Gaussian MLP.

  Inference (:func:`~jaxvae.core.posteriors.bottom_up_gaussian`) and generative model
  (:func:`~jaxvae.core.priors.top_down_gaussian`)::

    q_phi(z1, z2 | x) = q_phi(z1|x) q_phi(z2|z1)
    p_theta(x, z1, z2) = p(z2) p_theta(z1|z2) p_theta(x|z1),  p(z2) = N(0, I)

  ``hidden`` lies between x and z1, ``hidden2`` between z1 and z2; the likelihood is configured.
  """
  likelihood = likelihood_of(config, data_shape, dtype)
  d1, d2, act = config.latent_dim, config.latent_dim2, config.activation
  return VAE.from_modules(
    MLPEncoder(hidden=config.hidden, latent_dim=d1, activation=act),
    MLPDecoder(hidden=config.hidden[::-1], out_shape=likelihood.output_shape, activation=act),
    data_shape=data_shape,
    latent_dim=d1,
    likelihood=likelihood,
    prior=top_down_gaussian(GaussianMLP(hidden=config.hidden2[::-1], out_dim=d1, activation=act), d2),
    posterior=bottom_up_gaussian(GaussianMLP(hidden=config.hidden2, out_dim=d2, activation=act), d1),
  )


def _burda2_problem(config: Any) -> str | None:
  if problem := architecture_problem(config):
    return problem
  if config.hidden2 is None or config.latent_dim2 is None:
    return "burda2 needs hidden2 and latent_dim2"
  if config.net != "mlp" or config.prior != "normal" or config.posterior != "gaussian":
    return (
      "burda2 is an MLP with its own hierarchical prior and posterior: use --net mlp, --prior normal and "
      "--posterior gaussian with it"
    )
  return FREE_BITS_RULE if config.free_bits > 0 else None


# Burda et al. (2016), two stochastic layers: 784-200-200-100 (z1) -100-100-50 (z2), tanh.
MODELS.register(
  "burda2",
  two_stochastic_layers,
  defaults=lambda config: dict(
    hidden=(200, 200), latent_dim=100, activation=activation_of(config, "tanh"), hidden2=(100, 100), latent_dim2=50
  ),
  check=_burda2_problem,
)
