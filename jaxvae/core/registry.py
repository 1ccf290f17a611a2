"""Named built-in components, one :class:`Registry` per kind: likelihoods, priors, posteriors, models, objectives.

A built-in component is registered in its own file, beside its factory: its name (what
``--likelihood``, ``--prior``, ``--posterior``, ``--model`` and ``--objective`` accept), the
factory that builds it, a phrase for the flag's help, the config rules it brings, and the
defaults it gives the config fields left unset. The config (:mod:`jaxvae.runs.config`) takes
its choices, help text and validation from the registries; the drivers never branch on a
component's name, they ask the component.

A factory receives the keyword arguments it names: the context of the call (``data_shape``,
``latent_dim``, ...), the config fields of the same names, and ``config`` itself. So
``def build(data_shape, gaussian_sigma=0.1)`` reads ``--gaussian-sigma`` from a config, and
without a config (:meth:`jaxvae.VAE.from_modules` given a name) it takes its default.

Example:
  >>> LIKELIHOODS = Registry("likelihood")
  >>> @LIKELIHOODS.register("laplace", help="(real-valued data, heavy tails)")
  ... def _laplace(data_shape, dtype=np.float32): ...
  >>> LIKELIHOODS.build("laplace", config, data_shape=(2,))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from jaxvae.errors import JaxvaeError


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
  return [
    p
    for p in inspect.signature(fn).parameters.values()
    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.VAR_KEYWORD)
  ]


def missing_arguments(fn: Callable[..., Any], available: dict[str, Any]) -> list[str]:
  """The parameters of ``fn`` without a default that ``available`` does not give."""
  return [
    p.name for p in _parameters(fn) if p.kind is not p.VAR_KEYWORD and p.default is p.empty and p.name not in available
  ]


def call_with_named(fn: Callable[..., Any], available: dict[str, Any]) -> Any:
  """Calls ``fn`` with the keyword arguments it names among ``available`` (all of them if it takes ``**kwargs``)."""
  try:
    parameters = _parameters(fn)
  except (TypeError, ValueError):  # a callable without a signature (a builtin)
    return fn(**available)
  if any(p.kind is p.VAR_KEYWORD for p in parameters):
    return fn(**available)
  return fn(**{p.name: available[p.name] for p in parameters if p.name in available})


class Entry(NamedTuple):
  """One registered component.

  Attributes:
    name: the name a config gives (``--likelihood gaussian``).
    factory: builds the component from the keyword arguments it names (see the module docstring).
    help: a phrase for the flag's help after the name, e.g. ``"(binarized data)"``.
    check: ``config -> message or None``: the rules this choice brings (one line naming the fix).
    defaults: ``config -> {field: value}`` for the config fields left unset (None) when this is
      chosen; by default the factory's keyword defaults of the fields it reads.
  """

  name: str
  factory: Callable[..., Any]
  help: str = ""
  check: Callable[[Any], str | None] | None = None
  defaults: Callable[[Any], dict[str, Any]] | None = None

  def build(self, config: Any = None, **context: Any) -> Any:
    """The component: the factory called with ``context``, the config fields it names and ``config``."""
    available = dict(context)
    if config is not None:
      available.setdefault("config", config)
      for p in _parameters(self.factory):
        if p.name not in available and hasattr(config, p.name):
          available[p.name] = getattr(config, p.name)
    return call_with_named(self.factory, available)

  def defaults_for(self, config: Any) -> dict[str, Any]:
    """The values this choice gives the config fields left unset."""
    if self.defaults is not None:
      return self.defaults(config)
    return {p.name: p.default for p in _parameters(self.factory) if p.default is not p.empty}


class Registry:
  """The built-in components of one kind, by name, in the order they were registered.

  Args:
    kind: what they are (``"likelihood"``), for messages.
  """

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, Entry] = {}

  def register(
    self,
    name: str,
    factory: Callable[..., Any] | None = None,
    *,
    help: str = "",
    check: Callable[[Any], str | None] | None = None,
    defaults: Callable[[Any], dict[str, Any]] | None = None,
  ) -> Any:
    """Registers ``factory`` under ``name``; without it, a decorator that registers the function it decorates."""
    if factory is None:

      def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        self.register(name, fn, help=help, check=check, defaults=defaults)
        return fn

      return decorate
    if name in self._entries:
      raise ValueError(f"the {self.kind} {name!r} is registered twice")
    entry = Entry(name, factory, help, check, defaults)
    self._entries[name] = entry
    return entry

  def __getitem__(self, name: str) -> Entry:
    if name not in self._entries:
      raise JaxvaeError(f"{self.kind} {name!r} is unknown: use one of {', '.join(self)}")
    return self._entries[name]

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)

  def get(self, name: str) -> Entry | None:
    """The entry of ``name``, or None."""
    return self._entries.get(name)

  def build(self, name: str, config: Any = None, **context: Any) -> Any:
    """The component registered as ``name`` (:meth:`Entry.build`); a one-line error for an unknown name."""
    return self[name].build(config, **context)

  def phrases(self) -> list[str]:
    """Each name with its help: ``["a (help)", "b", ...]``."""
    return [f"{e.name} {e.help}".strip() for e in self._entries.values()]

  def describe(self) -> str:
    """The names and their help as a phrase: ``"a (help), b (help) or c (help)"``."""
    items = self.phrases()
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
