"""One protocol for the networks of a model, whatever JAX library wrote them.

A :class:`Network` is two pure functions over pytrees of arrays::

  init(key, x [1, ...]) -> (params, state)
  apply(params, state, x [B, ...], train=False, key=None) -> (out, state)

``params`` are what the optimizer trains; ``state`` is what a network updates itself in training
(BatchNorm's running statistics), ``{}`` for most. :func:`as_network` makes one from what a
researcher brings, as it is:

===========================  ============================================================
Flax Linen module            ``params`` is its ``"params"`` collection, ``state`` its other
                             collections (``"batch_stats"``). It learns whether it is training
                             from a ``train`` argument of ``__call__``, if it has one
                             (``nn.Dropout(deterministic=not train)``,
                             ``nn.BatchNorm(use_running_average=not train)``); dropout draws from
                             the ``"dropout"`` RNG stream.
Flax NNX module              split (``nnx.split``) into its ``nnx.Param`` variables (``params``)
                             and its other variables but RNG streams (``state``: ``nnx.BatchStat``),
                             each a flat dict keyed by path, ``"linear/kernel"``. Its parameters are
                             the module's own (its ``nnx.Rngs`` drew them); ``init`` ignores its key.
                             Training and evaluation call ``module.train()`` and ``module.eval()``
                             (``nnx.Dropout``'s ``deterministic``, ``nnx.BatchNorm``'s
                             ``use_running_average``); its RNG streams are keyed afresh at each call.
Equinox module               its inexact arrays are ``params`` (a flat dict keyed by path); the
                             rest is static. Equinox layers take one example, so it is called on
                             each example (``jax.vmap`` over the batch axis).
a pair ``(init, apply)``     ``init(key, x) -> params``, ``apply(params, x) -> out``, e.g.
                             ``hk.without_apply_rng(hk.transform(f))``. An ``apply`` with an
                             ``rng`` argument (Haiku's ``hk.transform``) is passed a key in
                             training and None otherwise; one with a ``train`` or ``key`` keyword
                             is passed them.
===========================  ============================================================

In training, jaxvae calls ``apply(..., train=True, key=...)`` with a key split from the step's key
(:attr:`jaxvae.VAE.training`); everywhere else (evaluation, importance sampling, the gaps,
pictures) ``train=False``: dropout off, running statistics used and left as they are.

Example:
  >>> net = as_network(MLPEncoder((400,), 20))
  >>> params, state = net.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  >>> q, _ = net.apply(params, state, x)
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae.errors import JaxvaeError


class Network(NamedTuple):
  """A network as pure functions (see the module docstring).

  Attributes:
    kind: what it was made from, for messages: ``"Flax Linen module MLPEncoder"``.
    init: ``(key, x [1, ...]) -> (params, state)``.
    apply: ``(params, state, x [B, ...], train=False, key=None) -> (out, state)``; the state
      returned is the input's unless ``train``.
    modal: it behaves differently in training (dropout, batch statistics, a ``train`` argument).
  """

  kind: str
  init: Callable[[jax.Array, jax.Array], tuple[Any, Any]]
  apply: Callable[..., tuple[Any, Any]]
  modal: bool = False


def as_network(value: Any, role: str = "network") -> Network:
  """The :class:`Network` of a Linen or NNX module, an Equinox module, a pair ``(init, apply)`` or a Network.

  Args:
    value: what a user hands over as an encoder or a decoder.
    role: ``"encoder"`` or ``"decoder"``, for the error message.

  Raises:
    JaxvaeError: ``value`` is none of these.
  """
  if isinstance(value, Network):
    return value
  if isinstance(value, nn.Module):
    return _linen(value)
  nnx = sys.modules.get("flax.nnx")  # imported by whoever built an NNX module
  if nnx is not None and isinstance(value, nnx.Module):
    return _nnx(value)
  eqx = sys.modules.get("equinox")
  if eqx is not None and isinstance(value, eqx.Module):
    return _equinox(value, eqx)
  pair = (value.init, value.apply) if hasattr(value, "init") and hasattr(value, "apply") else value
  if isinstance(pair, tuple) and len(pair) == 2 and all(callable(f) for f in pair):
    return _functions(*pair)
  raise JaxvaeError(
    f"the {role} is a {type(value).__name__}, which jaxvae cannot call: pass a Flax Linen or NNX module, "
    "an Equinox module, or a pair of pure functions (init(key, x) -> params, apply(params, x) -> out)"
  )


def _takes(fn: Callable[..., Any], name: str) -> bool:
  try:
    return name in inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False


def _linen(module: nn.Module) -> Network:
  train_arg = _takes(type(module).__call__, "train")
  kw = {"train": False} if train_arg else {}
  init_variables = jax.jit(lambda key, x: module.init(key, x, **kw))  # one compiled program

  def init(key, x):
    variables = dict(init_variables(key, x))
    params = variables.pop("params", {})
    return params, variables

  def apply(params, state, x, train=False, key=None):
    kw = {"train": train} if train_arg else {}
    rngs = {"dropout": key} if train and key is not None else None
    variables = {"params": params, **state}
    if train and state:
      out, updated = module.apply(variables, x, rngs=rngs, mutable=list(state), **kw)
      return out, {**state, **updated}
    return module.apply(variables, x, rngs=rngs, **kw), state

  return Network(f"Flax Linen module {type(module).__name__}", init, apply, modal=train_arg)


def _path(path: tuple[Any, ...]) -> str:
  return "/".join(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path)


def _nnx(module: Any) -> Network:
  from flax import nnx

  graphdef, params, rngs, rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
  templates = [list(nnx.to_flat_state(s)) for s in (params, rngs, rest)]

  def flat(state) -> dict[str, Any]:
    return {_path(p): v.get_value() for p, v in nnx.to_flat_state(state)}

  def rebuild(template, values):
    return nnx.from_flat_state([(p, v.replace(values[_path(p)])) for p, v in template])

  def rng_values(key):
    key = jax.random.key(0) if key is None else key
    return {
      _path(p): jax.random.fold_in(key, i) if isinstance(v, nnx.RngKey) else jnp.zeros_like(v.get_value())
      for i, (p, v) in enumerate(templates[1])
    }

  def init(key, x):
    del key, x  # the module's own Rngs drew its parameters
    return flat(params), flat(rest)

  def apply(params, state, x, train=False, key=None):
    model = nnx.merge(
      graphdef, rebuild(templates[0], params), rebuild(templates[1], rng_values(key)), rebuild(templates[2], state)
    )
    model.train() if train else model.eval()
    out = model(x)
    return out, (flat(nnx.split(model, nnx.Param, nnx.RngState, ...)[3]) if train else state)

  return Network(f"Flax NNX module {type(module).__name__}", init, apply, modal=True)


def _equinox(module: Any, eqx: Any) -> Network:
  params, static = eqx.partition(module, eqx.is_inexact_array)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  names = [_path(p) for p, _ in leaves]

  def init(key, x):
    del key, x  # the module's own key drew its parameters
    return {n: leaf for n, (_, leaf) in zip(names, leaves, strict=True)}, {}

  def apply(params, state, x, train=False, key=None):
    model = eqx.combine(jax.tree_util.tree_unflatten(treedef, [params[n] for n in names]), static)
    return jax.vmap(model)(x), state

  return Network(f"Equinox module {type(module).__name__}", init, apply)


def _functions(init_fn: Callable[..., Any], apply_fn: Callable[..., Any]) -> Network:
  train_arg, key_arg, rng_arg = (_takes(apply_fn, name) for name in ("train", "key", "rng"))

  def init(key, x):
    return init_fn(key, x), {}

  def apply(params, state, x, train=False, key=None):
    kw = {"train": train} if train_arg else {}
    if key_arg:
      kw["key"] = key
    if rng_arg:  # Haiku's apply(params, rng, x): a key in training (hk.dropout), None otherwise
      return apply_fn(params, key if train else None, x, **kw), state
    return apply_fn(params, x, **kw), state

  name = getattr(init_fn, "__qualname__", type(init_fn).__name__)
  return Network(f"pair of functions ({name}, ...)", init, apply, modal=train_arg or key_arg or rng_arg)
