"""The values a :class:`jaxvae.Config` describes: the model, the objective, the optimizer, the data.

This is the command line's path into the library. A config names a built-in model or
objective, or a factory of the user's by reference (``FILE.py:FUNCTION`` or
``package.module:FUNCTION``); both are called the same way, through the same public types:

  model factory:      (config, data_shape, dtype) -> jaxvae.VAE
  objective factory:  (config, steps_per_epoch) -> jaxvae.Objective

jaxvae passes a factory the keyword arguments it names among those (so ``def make_vae(config,
data_shape)`` and ``def make_vae()`` both work). The built-in factories (:data:`MODELS`,
:data:`OBJECTIVES`) build with :meth:`jaxvae.VAE.from_modules` and the objective factories of
:mod:`jaxvae.core.objectives`, as a user's would.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

from jaxvae.core import flows, ladder, objectives, posteriors
from jaxvae.core import priors as P
from jaxvae.core.data import Dataset, load_dataset
from jaxvae.core.likelihoods import Likelihood, bernoulli, discretized_logistic, gaussian
from jaxvae.core.model import VAE
from jaxvae.core.nets import ConvDecoder, ConvEncoder, GaussianMLP, MLPDecoder, MLPEncoder
from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import CUSTOM, Config, is_reference
from jaxvae.training.train import Trainer
from jaxvae.training.train import make_trainer as make_values_trainer

# ---------------------------------------------------------------------------
# References to factories.
# ---------------------------------------------------------------------------

_MODULES: dict[str, Any] = {}


def absolute_reference(ref: str) -> str:
  """``FILE.py:FUNCTION`` with FILE made absolute (so ``--resume`` works from any folder); others unchanged."""
  if is_reference(ref):
    where, name = ref.rsplit(":", 1)
    if where.endswith(".py"):
      return f"{os.path.abspath(where)}:{name}"
  return ref


def load_reference(ref: str, flag: str) -> Callable[..., Any]:
  """The function named by ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``.

  Raises:
    JaxvaeError: the file or module cannot be imported, or has no such callable.
  """
  where, name = ref.rsplit(":", 1)
  try:
    if where.endswith(".py"):
      path = os.path.abspath(where)
      if not os.path.isfile(path):
        raise JaxvaeError(f"--{flag} {ref}: there is no file {path}: give FILE.py:FUNCTION with an existing file")
      if path not in _MODULES:
        module_name = "jaxvae_user_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        sys.path.insert(0, os.path.dirname(path))  # the file may import its neighbours
        try:
          spec.loader.exec_module(module)
        except BaseException:
          del sys.modules[module_name]
          raise
        finally:
          sys.path.remove(os.path.dirname(path))
        _MODULES[path] = module
      module = _MODULES[path]
    else:
      module = importlib.import_module(where)
  except JaxvaeError:
    raise
  except Exception as e:  # the user's code failed to import: say which and why, in one line
    first = (str(e).strip().splitlines() or [""])[0][:200]
    raise JaxvaeError(f"--{flag} {ref}: importing {where} failed ({type(e).__name__}: {first}): fix the file") from None
  obj: Any = module
  for part in name.split("."):
    obj = getattr(obj, part, None)
  if not callable(obj):
    raise JaxvaeError(
      f"--{flag} {ref}: {where} has no function {name!r}: give FILE.py:FUNCTION naming a function in it"
    )
  return obj


def reference_of(factory: Callable[..., Any]) -> str:
  """The reference that :func:`load_reference` resolves to ``factory``, or ``"custom"`` if there is none."""
  module = sys.modules.get(getattr(factory, "__module__", None) or "")
  qualname = getattr(factory, "__qualname__", "")
  if module is None or "<" in qualname:
    return CUSTOM
  path = getattr(module, "__file__", None)
  if module.__name__ == "__main__" or module.__name__.startswith("jaxvae_user_"):
    return f"{os.path.abspath(path)}:{qualname}" if path else CUSTOM
  return f"{module.__name__}:{qualname}"


def call_factory(factory: Callable[..., Any], ref: str, flag: str, **available: Any) -> Any:
  """Calls ``factory`` with the keyword arguments it names among ``available``."""
  try:
    parameters = inspect.signature(factory).parameters.values()
  except (TypeError, ValueError):
    return factory(**available)
  if any(p.kind is p.VAR_KEYWORD for p in parameters):
    return factory(**available)
  unknown = [
    p.name
    for p in parameters
    if p.name not in available and p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
  ]
  if unknown:
    raise JaxvaeError(
      f"--{flag} {ref}: the factory takes {', '.join(unknown)}, which jaxvae does not pass: "
      f"name only parameters among {', '.join(available)}"
    )
  return factory(**{p.name: available[p.name] for p in parameters if p.name in available})


# ---------------------------------------------------------------------------
# Models.
# ---------------------------------------------------------------------------


def make_likelihood(config: Config, data_shape: tuple[int, ...], dtype=np.uint8) -> Likelihood:
  """The likelihood of ``config.likelihood``; a gaussian one models 8-bit data unless ``dtype`` is a float."""
  if config.likelihood == "gaussian":
    eight_bit = not np.issubdtype(np.dtype(dtype), np.floating)
    return gaussian(data_shape, config.gaussian_scale, config.gaussian_sigma, eight_bit=eight_bit)
  if config.likelihood == "discretized-logistic":
    return discretized_logistic(data_shape, config.mixtures)
  return bernoulli(data_shape)


def make_prior(config: Config, encoder: Any, data_shape: tuple[int, ...], likelihood: Likelihood) -> P.Prior:
  """The prior of ``config.prior`` over z of ``config.latent_dim`` dimensions."""
  if config.prior == "mog":
    return P.mixture_of_gaussians(config.latent_dim, config.prior_components)
  if config.prior == "vamp":
    return P.vamp_prior(encoder, data_shape, config.prior_components, likelihood.data_range)
  return P.standard_normal(config.latent_dim)


def _check_conv(config: Config, data_shape: tuple[int, ...]) -> None:
  factor = 2 ** len(config.conv_channels)
  if len(data_shape) != 3 or data_shape[0] % factor or data_shape[1] % factor:
    raise JaxvaeError(
      f"--net conv needs images [H, W, C] whose H and W halve {len(config.conv_channels)} times, not {data_shape}: "
      f"use --image-size with a multiple of {factor}, or fewer --conv-channels"
    )


def _decoder(config: Config, likelihood: Likelihood) -> Any:
  act = config.activation
  if config.net == "conv":
    return ConvDecoder(channels=config.conv_channels[::-1], out_shape=likelihood.output_shape, activation=act)
  return MLPDecoder(hidden=config.hidden[::-1], out_shape=likelihood.output_shape, activation=act)


def one_stochastic_layer(config: Config, data_shape: tuple[int, ...], dtype=np.uint8) -> VAE:
  """``mlp`` and ``burda1``: q_phi(z|x) from an MLP or conv encoder; the configured likelihood, prior and posterior.

  q_phi(z|x) is N(mu, sigma^2), or with ``--posterior iaf`` that Gaussian followed by
  ``flow_steps`` IAF steps (:func:`jaxvae.core.flows.iaf`), the encoder also giving the flow's
  context h(x) (of the MADE's first width).
  """
  likelihood = make_likelihood(config, data_shape, dtype)
  d, act = config.latent_dim, config.activation
  context = config.flow_hidden[0] if config.posterior == "iaf" else 0
  if config.net == "conv":
    _check_conv(config, data_shape)
    encoder = ConvEncoder(channels=config.conv_channels, latent_dim=d, activation=act, context_dim=context)
  else:
    encoder = MLPEncoder(hidden=config.hidden, latent_dim=d, activation=act, context_dim=context)
  posterior = flows.iaf(d, config.flow_steps, config.flow_hidden, context) if config.posterior == "iaf" else None
  prior = make_prior(config, encoder, data_shape, likelihood)
  return VAE.from_modules(
    encoder,
    _decoder(config, likelihood),
    data_shape=data_shape,
    latent_dim=d,
    likelihood=likelihood,
    prior=prior,
    posterior=posterior,
  )


def two_stochastic_layers(config: Config, data_shape: tuple[int, ...], dtype=np.uint8) -> VAE:
  """``burda2``, Burda et al. (2016): two stochastic layers, every conditional a diagonal Gaussian MLP.

  Inference:  q_phi(z1, z2 | x) = q_phi(z1|x) q_phi(z2|z1)
  Generative: p_theta(x, z1, z2) = p(z2) p_theta(z1|z2) p_theta(x|z1),  p(z2) = N(0, I)
  ``hidden`` lies between x and z1, ``hidden2`` between z1 and z2; the likelihood is configured.
  """
  likelihood = make_likelihood(config, data_shape, dtype)
  d1, d2, act = config.latent_dim, config.latent_dim2, config.activation
  return VAE.from_modules(
    MLPEncoder(hidden=config.hidden, latent_dim=d1, activation=act),
    MLPDecoder(hidden=config.hidden[::-1], out_shape=likelihood.output_shape, activation=act),
    data_shape=data_shape,
    latent_dim=d1,
    likelihood=likelihood,
    prior=P.hierarchical_gaussian(GaussianMLP(hidden=config.hidden2[::-1], out_dim=d1, activation=act), d2),
    posterior=posteriors.hierarchical_gaussian(GaussianMLP(hidden=config.hidden2, out_dim=d2, activation=act), d1),
  )


def ladder_vae(config: Config, data_shape: tuple[int, ...], dtype=np.uint8) -> VAE:
  """``ladder``, Sønderby et al. (2016): ``ladder_layers`` stochastic layers, top-down inference (:mod:`.ladder`).

  The bottom-up pass is an MLP (or, with ``--net conv``, strided convolutions then the MLP
  layers); the decoder p_theta(x|z_1) is an MLP of ``hidden`` (or the conv decoder).
  """
  likelihood = make_likelihood(config, data_shape, dtype)
  if config.net == "conv":
    _check_conv(config, data_shape)
  conv = config.conv_channels if config.net == "conv" else None
  encoder = ladder.LadderEncoder(config.ladder_widths, config.ladder_layers, config.activation, conv)
  prior, posterior = ladder.ladder(config.ladder_layers, config.ladder_widths, config.activation)
  return VAE.from_modules(
    encoder,
    _decoder(config, likelihood),
    data_shape=data_shape,
    latent_dim=config.latent_dim,
    likelihood=likelihood,
    prior=prior,
    posterior=posterior,
  )


MODELS: dict[str, Callable[..., VAE]] = {
  "mlp": one_stochastic_layer,
  "burda1": one_stochastic_layer,
  "burda2": two_stochastic_layers,
  "ladder": ladder_vae,
}


def _factory(value: str, builtins: dict[str, Callable[..., Any]], flag: str) -> Callable[..., Any]:
  """A built-in factory by name, or the function a reference names."""
  if value in builtins:
    return builtins[value]
  if value == CUSTOM or not is_reference(value):
    raise JaxvaeError(
      f"this run's {flag} ({value!r}) was handed over in Python: pass it again ({flag}=...), "
      f"or train with a factory reference, --{flag} FILE.py:FUNCTION"
    )
  return load_reference(value, flag)


def model_factory(config: Config) -> Callable[..., VAE]:
  """The factory of ``config.model``: a built-in one of :data:`MODELS`, or the referenced function."""
  return _factory(config.model, MODELS, "model")


def make_vae(config: Config, data_shape: tuple[int, ...], dtype=np.uint8, factory=None) -> VAE:
  """The model of ``config`` (or of ``factory``, a model factory), for examples of ``data_shape`` and ``dtype``.

  Raises:
    JaxvaeError: a reference that cannot be imported, or a factory that does not return a VAE.
  """
  vae = call_factory(
    factory or model_factory(config),
    config.model,
    "model",
    config=config,
    data_shape=tuple(data_shape),
    dtype=np.dtype(dtype),
  )
  if not isinstance(vae, VAE):
    raise JaxvaeError(
      f"--model {config.model}: the factory returned {type(vae).__name__}, not a jaxvae.VAE: "
      "return jaxvae.VAE.from_modules(encoder, decoder, ...)"
    )
  return vae


# ---------------------------------------------------------------------------
# Objectives and the optimizer.
# ---------------------------------------------------------------------------


def beta_elbo_objective(config: Config, steps_per_epoch: int) -> objectives.Objective:
  """``vae``: the beta-ELBO with ``k`` samples, KL warm-up over ``warmup_epochs`` and free bits."""
  return objectives.beta_elbo(
    k=config.k,
    analytic_kl=config.kl == "analytic",
    beta=config.beta,
    warmup_steps=config.warmup_epochs * steps_per_epoch,
    free_bits=config.free_bits,
  )


OBJECTIVES: dict[str, Callable[..., objectives.Objective]] = {
  "vae": beta_elbo_objective,
  "iwae": lambda config: objectives.iwae(config.k),
  "iwae-dreg": lambda config: objectives.iwae_dreg(config.k),
}


def objective_factory(config: Config) -> Callable[..., objectives.Objective]:
  """The factory of ``config.objective``: a built-in one of :data:`OBJECTIVES`, or the referenced function."""
  return _factory(config.objective, OBJECTIVES, "objective")


def make_objective(config: Config, steps_per_epoch: int, factory=None) -> objectives.Objective:
  """The objective of ``config.objective`` (or of ``factory``, an objective factory), for ``steps_per_epoch``."""
  objective = call_factory(
    factory or objective_factory(config), config.objective, "objective", config=config, steps_per_epoch=steps_per_epoch
  )
  if not isinstance(objective, objectives.Objective):
    raise JaxvaeError(
      f"--objective {config.objective}: the factory returned {type(objective).__name__}, not a jaxvae.Objective: "
      "return jaxvae.Objective(name, loss, hparams)"
    )
  return objective


def burda_lr_factor(steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate factor of Burda et al. (2016): 10^(-i/7) for 3^i epochs, i = 0..7.

  Stage i starts at epoch (3^i - 1) / 2 (the sum of the earlier stages); after the
  3280 epochs of the eight stages the factor stays at 10^-1.
  """
  return optax.piecewise_constant_schedule(
    1.0, {steps_per_epoch * (3**i - 1) // 2: 10.0 ** (-1.0 / 7.0) for i in range(1, 8)}
  )


def make_optimizer(config: Config, steps_per_epoch: int = 1) -> optax.GradientTransformation:
  """Adam with its learning rate injected as a state array, times the configured schedule.

  ``optax.inject_hyperparams(optax.adam)`` keeps the learning rate in the optimizer
  state, so a sweep can give each model its own without recompiling; the ``burda``
  schedule multiplies the updates by :func:`burda_lr_factor` (``optax.scale_by_schedule``).
  """
  adam = optax.inject_hyperparams(optax.adam)(
    learning_rate=config.lr, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps
  )
  parts = [adam]
  if config.clip_grad_norm is not None:
    parts.insert(0, optax.clip_by_global_norm(config.clip_grad_norm))
  if config.lr_schedule == "burda":
    parts.append(optax.scale_by_schedule(burda_lr_factor(steps_per_epoch)))
  return parts[0] if len(parts) == 1 else optax.chain(*parts)


# ---------------------------------------------------------------------------
# Data and a whole trainer.
# ---------------------------------------------------------------------------


def load_data(config: Config) -> Dataset:
  """The dataset of ``config.dataset``, only its first ``n_train`` / ``n_test`` examples read."""
  if config.dataset.startswith(CUSTOM):
    raise JaxvaeError(
      f"this run's data ({config.dataset!r}) were handed over in Python: pass them again (data=...), "
      "or save them with np.savez and use --dataset npz:PATH"
    )
  return load_dataset(config.dataset, config.tfds_data_dir, config.image_size, config.n_train, config.n_test)


def make_trainer(
  config: Config,
  *,
  data_shape: tuple[int, ...],
  train_size: int,
  dtype=np.uint8,
  vae: VAE | None = None,
  objective: objectives.Objective | None = None,
  on_progress=None,
  batch_sharding=None,
) -> Trainer:
  """The :class:`~jaxvae.training.train.Trainer` of ``config`` (its model and objective unless given)."""
  steps_per_epoch = train_size // config.batch_size
  vae = vae if vae is not None else make_vae(config, data_shape, dtype)
  objective = objective if objective is not None else make_objective(config, steps_per_epoch)
  return make_values_trainer(
    vae,
    objective,
    make_optimizer(config, steps_per_epoch),
    batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size,
    analytic_kl=config.kl == "analytic",
    skip_grad_norm=config.skip_grad_norm,
    ema_decay=config.ema_decay or None,
    on_progress=on_progress,
    batch_sharding=batch_sharding,
  )
