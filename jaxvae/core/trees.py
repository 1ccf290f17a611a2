"""Pytrees of arrays: a stack of them along a new leading axis, one entry of a stack, a map over batches.

A sweep stacks its models' states along a "models" axis (:func:`stack`) and takes one model back
out (:func:`take`); an evaluation maps a function over a large array in chunks of a fixed size
(:func:`map_batches`), so that memory is bounded by one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def stack(trees: Sequence[Any], xp: Any = jnp) -> Any:
  """The trees (of one structure) stacked leaf by leaf along a new leading axis: ``[len(trees), ...]``.

  Args:
    trees: pytrees with the same structure and leaf shapes.
    xp: ``jax.numpy`` (device arrays) or ``numpy`` (host arrays).
  """
  return jax.tree.map(lambda *leaves: xp.stack(leaves), *trees)


def take(tree: Any, i: int) -> Any:
  """Entry ``i`` of a stacked tree: ``leaf[i]`` of every leaf."""
  return jax.tree.map(lambda leaf: leaf[i], tree)


def concat(trees: Sequence[Any], xp: Any = jnp) -> Any:
  """The trees concatenated leaf by leaf along their leading axes."""
  return jax.tree.map(lambda *leaves: xp.concatenate(leaves), *trees)


def map_batches(fn: Callable[[jax.Array, jax.Array], Any], x: jax.Array, batch_size: int) -> Any:
  """Applies ``fn(x_chunk, chunk_index)`` to consecutive chunks of ``x`` and concatenates.

  Full chunks go through one ``lax.map`` (so memory is bounded by one chunk);
  a remainder chunk, if any, is one more call. Shapes are static.

  Args:
    fn: maps ``[b, ...]`` inputs and an int32 chunk index to a pytree of ``[b, ...]`` outputs.
    x: ``[n, ...]`` inputs.
    batch_size: chunk size.

  Returns:
    The pytree of ``[n, ...]`` outputs.

  Example:
    >>> means = map_batches(lambda xb, i: vae.q_phi(params, xb).mean, test_x, 1000)   # [n, d]
  """
  n = x.shape[0]
  full, rest = divmod(n, batch_size)
  parts = []
  if full:
    chunks = x[: full * batch_size].reshape((full, batch_size) + x.shape[1:])
    out = jax.lax.map(lambda a: fn(*a), (chunks, jnp.arange(full, dtype=jnp.int32)))
    parts.append(jax.tree.map(lambda o: o.reshape((full * batch_size,) + o.shape[2:]), out))
  if rest:
    parts.append(fn(x[full * batch_size :], jnp.int32(full)))
  return concat(parts)


def describe(tree: Any) -> str:
  """A short text of a pytree's types and shapes, for messages: ``Gaussian(f32[128,20], f32[128,20])``.

  Leaves are arrays or ``jax.ShapeDtypeStruct`` (what ``jax.eval_shape`` returns); a container
  is named by its type (a NamedTuple, a tuple, a dict with its keys).
  """
  if hasattr(tree, "shape") and hasattr(tree, "dtype"):
    name = jnp.dtype(tree.dtype).name
    for long, short in (("bfloat", "bf"), ("float", "f"), ("uint", "u"), ("int", "i")):
      if name.startswith(long) and name[len(long) :].isdigit():
        name = short + name[len(long) :]
        break
    return f"{name}[{','.join(str(s) for s in tree.shape)}]"
  if isinstance(tree, dict):
    return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in tree.items()) + "}"
  if isinstance(tree, (tuple, list)):
    inner = ", ".join(describe(v) for v in tree)
    name = type(tree).__name__
    return f"{name}({inner})" if name not in ("tuple", "list") else f"{name} ({inner})"
  return type(tree).__name__
