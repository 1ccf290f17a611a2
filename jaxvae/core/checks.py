"""Checks of a model against its data before anything runs: each network traced abstractly, no FLOPs.

A user's model can be wrong in ways that XLA reports deep inside a traceback, or not at all
until an epoch has trained and a checkpoint has been written. :func:`check_model` traces the
encoder and the decoder with ``jax.eval_shape`` (shapes only: nothing is computed or compiled)
on one batch and compares what they return with what the posterior and the likelihood read;
:func:`check_step` traces one whole training step (the objective, its gradient, the optimizer).
Each mismatch is one :class:`jaxvae.JaxvaeError` line naming the network and the expected and
actual types or shapes; an exception raised inside the user's own code becomes a
:class:`jaxvae.errors.UserCodeError` that keeps its traceback and says which network and which call.

Example:
  >>> check_model(vae, x)  # x: one batch [B, *data_shape] as the model reads it
  jaxvae.errors.JaxvaeError: the decoder (Flax Linen module Decoder) returns f32[128,784]; ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxvae.core.model import VAE
from jaxvae.core.networks import Network
from jaxvae.core.trees import describe
from jaxvae.errors import JaxvaeError, UserCodeError, first_line

_TRAIN_HINT = (
  "give its __call__ a `train: bool` argument and build nn.Dropout(deterministic=not train) and "
  "nn.BatchNorm(use_running_average=not train) with it (jaxvae passes train=True in training only)"
)


def _hint(error: Exception) -> str:
  """A fix for the errors a Linen module gives when it does not know whether it is training."""
  text = f"{type(error).__name__} {error}"
  if "dropout" in text and ("Rng" in text or "rng" in text):
    return _TRAIN_HINT
  if "batch_stats" in text:
    return _TRAIN_HINT
  return "its traceback is above"


def _traced(fn: Callable[..., Any], *args: Any, who: str, call: str) -> Any:
  """``jax.eval_shape(fn, *args)``; an exception from the user's code becomes one line over its traceback."""
  try:
    return jax.eval_shape(fn, *args)
  except JaxvaeError:
    raise
  except Exception as e:
    raise UserCodeError(f"{who} raised {type(e).__name__} in {call}: {first_line(e, 160)}; {_hint(e)}") from e


def _network(net: Network, role: str, x: jax.ShapeDtypeStruct) -> Any:
  """The output shapes of ``net`` at init and in evaluation (and in training, if it has a training mode)."""
  who = f"the {role} ({net.kind})"
  x1 = jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype)
  params, state = _traced(net.init, jax.random.key(0), x1, who=who, call=f"init(key, {describe(x1)})")
  out = _traced(lambda p, s, v: net.apply(p, s, v)[0], params, state, x, who=who, call=f"apply on {describe(x)}")
  if net.modal:
    _traced(
      lambda p, s, v: net.apply(p, s, v, train=True, key=jax.random.key(0)),
      params,
      state,
      x,
      who=who,
      call=f"apply on {describe(x)} in training",
    )
  return out


def check_model(vae: VAE, x: Any) -> None:
  """Traces the encoder and the decoder of ``vae`` on one batch and checks what they return.

  Args:
    vae: a model made by :meth:`jaxvae.VAE.from_modules` (others have no networks to check).
    x: one batch ``[B, *data_shape]`` as the model reads it (an array or its ``jax.ShapeDtypeStruct``).

  Raises:
    JaxvaeError: the encoder's output is not what the posterior reads (type, latent size), or
      the decoder's array is not of the likelihood's ``output_shape``.
    UserCodeError: a network raised (its traceback is kept).
  """
  if vae.networks is None:
    return
  x = jax.ShapeDtypeStruct(x.shape, jnp.float32)
  encoder, decoder = vae.networks["encoder"], vae.networks["decoder"]
  h = _network(encoder, "encoder", x)
  if vae.posterior is not None and vae.posterior.expects is not None:
    problem = vae.posterior.expects(h, vae.latent_dim)
    if problem:
      raise JaxvaeError(f"the encoder ({encoder.kind}) {problem}")
  z = jax.ShapeDtypeStruct((x.shape[0], vae.latent_dim), jnp.float32)
  raw = _network(decoder, "decoder", z)
  likelihood = vae.likelihood
  wanted = (x.shape[0],) + tuple(likelihood.output_shape)
  # A likelihood of one's own may read a pytree (its ``outputs`` says how); an array has its output_shape.
  if hasattr(raw, "shape") and tuple(raw.shape) != wanted:
    shape = ", ".join(str(s) for s in likelihood.output_shape)
    reads = describe(jax.ShapeDtypeStruct(wanted, raw.dtype))
    raise JaxvaeError(
      f"the decoder ({decoder.kind}) returns {describe(raw)} for z {describe(z)}; the {likelihood.name} "
      f"likelihood of data shaped {tuple(vae.data_shape)} reads {reads}: reshape its output, e.g. "
      f"out.reshape(-1, {shape})"
    )


def check_step(init: Callable[..., Any], step: Callable[..., Any], batch: Any, objective_name: str) -> None:
  """Traces one training step abstractly (the objective, its gradient and the update) on ``batch``.

  Args:
    init: ``key -> state`` (:attr:`jaxvae.training.train.Trainer.init`).
    step: ``(state, batch, key) -> (state, metrics)``, the pure step.
    batch: one batch ``[B, ...]`` of the stored training data (or its ``jax.ShapeDtypeStruct``).
    objective_name: for the message.

  Raises:
    UserCodeError: the step raised (its traceback is kept).
  """
  key = jax.random.key(0)
  batch = jax.ShapeDtypeStruct(batch.shape, batch.dtype)
  state = _traced(init, key, who="the model", call="init(key)")
  _traced(step, state, batch, key, who=f"one training step with the objective {objective_name}", call=describe(batch))
