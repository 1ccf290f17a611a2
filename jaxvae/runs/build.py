"""The values a :class:`jaxvae.Config` describes: the model, the objective, the optimizer, the data.

This is the command line's path into the library. A config names a built-in model or
objective (registered in :data:`jaxvae.core.model.MODELS` and
:data:`jaxvae.core.objectives.OBJECTIVES`), or a factory of the user's by reference
(``FILE.py:FUNCTION`` or ``package.module:FUNCTION``); both are called the same way, through the
same public types:

  model factory:      (config, data_shape, dtype) -> jaxvae.VAE
  objective factory:  (config, steps_per_epoch) -> jaxvae.Objective

jaxvae passes a factory the keyword arguments it names among those (so ``def make_vae(config,
data_shape)`` and ``def make_vae()`` both work). The built-in ones build with
:meth:`jaxvae.VAE.from_modules` and the objective factories of :mod:`jaxvae.core.objectives`,
as a user's would. In Python, a model or an objective can be handed over as a value instead:
:func:`make_vae` and :func:`make_objective` take either.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

from jaxvae.core.data import Dataset
from jaxvae.core.model import MODELS, VAE
from jaxvae.core.objectives import OBJECTIVES, Objective
from jaxvae.core.registry import call_with_named, missing_arguments
from jaxvae.errors import JaxvaeError, first_line
from jaxvae.runs.config import CUSTOM, Config, is_reference
from jaxvae.runs.sources import load_dataset
from jaxvae.training.train import Trainer, make_trainer

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
    raise JaxvaeError(
      f"--{flag} {ref}: importing {where} failed ({type(e).__name__}: {first_line(e)}): fix the file"
    ) from None
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
  """Calls a user's ``factory`` with the keyword arguments it names among ``available``.

  Raises:
    JaxvaeError: the factory needs an argument that is not available.
  """
  try:
    unknown = missing_arguments(factory, available)
  except (TypeError, ValueError):  # no signature: call it with everything
    unknown = []
  if unknown:
    raise JaxvaeError(
      f"--{flag} {ref}: the factory takes {', '.join(unknown)}, which jaxvae does not pass: "
      f"name only parameters among {', '.join(available)}"
    )
  return call_with_named(factory, available)


def _referenced(value: str, flag: str) -> Callable[..., Any]:
  """The factory a config's reference names; a one-line error for a value that was handed over in Python."""
  if value == CUSTOM or not is_reference(value):
    raise JaxvaeError(
      f"this run's {flag} ({value!r}) was handed over in Python: pass it again ({flag}=...), "
      f"or train with a factory reference, --{flag} FILE.py:FUNCTION"
    )
  return load_reference(value, flag)


# ---------------------------------------------------------------------------
# The model, the objective, the optimizer, the data.
# ---------------------------------------------------------------------------


def make_vae(config: Config, data_shape: tuple[int, ...], dtype=np.uint8, given: Any = None) -> VAE:
  """The model of a run: ``given`` if it is a :class:`jaxvae.VAE`, else what its factory (or ``config.model``) builds.

  Args:
    config: the run's config; ``config.model`` names a built-in model or a factory reference.
    data_shape: the shape of one example.
    dtype: the dtype of the stored data (a float dtype makes ``--likelihood gaussian`` real-valued).
    given: a :class:`jaxvae.VAE`, or a model factory ``(config, data_shape, dtype) -> VAE``.

  Raises:
    JaxvaeError: a reference that cannot be imported, or a factory that does not return a VAE.
  """
  if isinstance(given, VAE):
    return given
  context = dict(data_shape=tuple(data_shape), dtype=np.dtype(dtype))
  if given is None and config.model in MODELS:
    return MODELS.build(config.model, config, **context)
  vae = call_factory(given or _referenced(config.model, "model"), config.model, "model", config=config, **context)
  if not isinstance(vae, VAE):
    raise JaxvaeError(
      f"--model {config.model}: the factory returned {type(vae).__name__}, not a jaxvae.VAE: "
      "return jaxvae.VAE.from_modules(encoder, decoder, ...)"
    )
  return vae


def make_objective(config: Config, steps_per_epoch: int = 1, given: Any = None) -> Objective:
  """The objective of a run: ``given`` if it is a :class:`jaxvae.Objective`, else what its factory (or
  ``config.objective``) builds for ``steps_per_epoch``."""
  if isinstance(given, Objective):
    return given
  if given is None and config.objective in OBJECTIVES:
    return OBJECTIVES.build(config.objective, config, steps_per_epoch=steps_per_epoch)
  factory = given or _referenced(config.objective, "objective")
  objective = call_factory(factory, config.objective, "objective", config=config, steps_per_epoch=steps_per_epoch)
  if not isinstance(objective, Objective):
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
  """Adam (or Adamax, AdamW) with its learning rate injected as a state array, times the configured schedule.

  ``optax.inject_hyperparams(optax.adam)`` keeps the learning rate in the optimizer
  state, so a sweep can give each model its own without recompiling; the ``burda``
  schedule multiplies the updates by :func:`burda_lr_factor` (``optax.scale_by_schedule``).
  """
  moments = dict(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
  if config.optimizer == "adamw":
    moments["weight_decay"] = config.weight_decay
  rule = {"adam": optax.adam, "adamax": optax.adamax, "adamw": optax.adamw}[config.optimizer]
  parts = [optax.inject_hyperparams(rule)(learning_rate=config.lr, **moments)]
  if config.clip_grad_norm is not None:
    parts.insert(0, optax.clip_by_global_norm(config.clip_grad_norm))
  if config.lr_schedule == "burda":
    parts.append(optax.scale_by_schedule(burda_lr_factor(steps_per_epoch)))
  if config.lr_schedule == "cosine":
    parts.append(
      optax.scale_by_schedule(
        cosine_lr_factor(config.lr_warmup_steps, config.lr_decay_epochs * steps_per_epoch, config.lr_final)
      )
    )
  return parts[0] if len(parts) == 1 else optax.chain(*parts)


def cosine_lr_factor(warmup_steps: int, decay_steps: int, final: float) -> optax.Schedule:
  """The learning-rate factor of Efficient-VDVAE's schedule: a linear warm-up, then a half cosine.

  factor(t) = t / T_w for t < T_w;  final + (1 - final) (1 + cos(pi (t - T_w) / (T - T_w))) / 2 up to T,
  then ``final`` (T_w = ``warmup_steps``, T = ``decay_steps``): ``optax.warmup_cosine_decay_schedule``
  with peak 1, multiplying the updates of the optimizer whose learning rate sits in its state.
  """
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0 if warmup_steps else 1.0,
    peak_value=1.0,
    warmup_steps=warmup_steps,
    decay_steps=max(decay_steps, warmup_steps + 1),
    end_value=final,
  )


def load_data(config: Config) -> Dataset:
  """The dataset of ``config.dataset``, only its first ``n_train`` / ``n_test`` examples read."""
  if config.dataset.startswith(CUSTOM):
    raise JaxvaeError(
      f"this run's data ({config.dataset!r}) were handed over in Python: pass them again (data=...), "
      "or save them with np.savez and use --dataset npz:PATH"
    )
  return load_dataset(config.dataset, config.tfds_data_dir, config.image_size, config.n_train, config.n_test)


def trainer_for(
  config: Config,
  *,
  data_shape: tuple[int, ...],
  train_size: int,
  dtype=np.uint8,
  vae: VAE | None = None,
  objective: Objective | None = None,
  on_progress=None,
  batch_sharding=None,
) -> Trainer:
  """The :class:`~jaxvae.training.train.Trainer` a config describes (its model and objective unless given).

  :func:`jaxvae.make_trainer` of the config's model, objective and optimizer, for ``train_size``
  stored examples of ``data_shape``; its ``train_epoch`` consumes its input state (``donate=True``),
  as runs and sweeps train.

  Example:
    >>> trainer = trainer_for(jaxvae.Config(latent_dim=2), data_shape=(28, 28, 1), train_size=60_000)
    >>> state = trainer.init(jax.random.key(0))
  """
  steps_per_epoch = train_size // config.batch_size
  return make_trainer(
    make_vae(config, data_shape, dtype, vae),
    make_objective(config, steps_per_epoch, objective),
    make_optimizer(config, steps_per_epoch),
    batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size,
    analytic_kl=config.kl == "analytic",
    skip_grad_norm=config.skip_grad_norm,
    ema_decay=config.ema_decay or None,
    on_progress=on_progress,
    batch_sharding=batch_sharding,
    donate=True,
  )
