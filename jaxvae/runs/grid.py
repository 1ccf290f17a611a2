"""Sweep grids: ``--grid NAME=V1,V2`` axes over any config field, their product, and groups of shared shapes.

The config fields that keep array shapes are vmapped (:data:`jaxvae.runs.config.VMAPPED`: the
seed, beta, warm-up, free bits, the learning rate, the EMA decay, the binarization seed); every
other field defines a group (:func:`group_configs`), compiled once and trained as one program.
"""

from __future__ import annotations

import itertools
from typing import Any

from jaxvae.core.objectives import Objective, vae_or_iwae
from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import SPECS, VMAPPED, Config, parse_value


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
  """``["beta=0.5,1,2", "hidden=400,200/200"]`` -> ``{"beta": [0.5, 1.0, 2.0], "hidden": [(400,), (200, 200)]}``.

  Values are parsed as the config field's kind (:func:`jaxvae.runs.config.parse_value`); in width
  fields ``/`` separates the widths of one value, and ``none`` unsets an optional field.
  Raises :class:`JaxvaeError` for an unknown field or an unparsable value.
  """
  grid: dict[str, list[Any]] = {}
  for item in items:
    name, sep, values = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not values.strip():
      raise JaxvaeError(f"--grid {item!r} is not NAME=V1,V2,...: write e.g. --grid beta=0.5,1,2")
    if name not in SPECS:
      raise JaxvaeError(f"--grid {name!r} is not a config field: use one of {', '.join(sorted(SPECS))}")
    if name in grid:
      raise JaxvaeError(f"--grid {name} is given twice: list all its values in one --grid")
    try:
      grid[name] = [parse_value(name, text) for text in values.split(",")]
    except JaxvaeError as e:
      raise JaxvaeError(f"--grid {e}") from None
  return grid


def expand_grid(base: dict[str, Any], grid: dict[str, list[Any]]) -> list[Config]:
  """The Cartesian product of ``grid`` over the config fields ``base``, row-major, each validated.

  ``base`` holds only the fields set explicitly (not a resolved :class:`Config`), so that a
  ``model`` axis gives each model its own architecture defaults.
  """
  names = list(grid)
  return [
    Config.from_dict({**base, **dict(zip(names, values))}).validate()
    for values in itertools.product(*(grid[n] for n in names))
  ]


def static_part(config: Config) -> Config:
  """The config with its vmapped fields set to their defaults: equal for models of one group.

  Whether a model keeps an EMA of its parameters changes its state's structure, so models with
  ``ema_decay`` > 0 are grouped apart from those without (their decays are then vmapped).
  """
  defaults = Config()
  static = config.replace(**{name: getattr(defaults, name) for name in VMAPPED})
  if switchable(config):  # VAE and IWAE of one k: one group (the KL estimator is irrelevant to IWAE)
    static = static.replace(objective="vae", kl="mc")
  return static.replace(ema_decay=0.5) if config.ema_decay > 0 else static


def switchable(config: Config) -> bool:
  """Whether ``config`` trains Burda et al.'s VAE or IWAE (k samples, Monte-Carlo KL, no KL weighting).

  VAE and IWAE models of the same k then share one program: the objective is the traced switch of
  :func:`jaxvae.core.objectives.vae_or_iwae` (the same values and gradients as the two objectives).
  """
  if config.objective == "iwae":
    return True
  return (
    config.objective == "vae"
    and config.kl == "mc"
    and config.beta == 1
    and config.warmup_epochs == 0
    and config.free_bits == 0
  )


def switch_objective(config: Config) -> Objective:
  """The objective factory of a group of VAE and IWAE models of one k (:func:`switchable`): the traced switch."""
  return vae_or_iwae(config.k, iwae=config.objective == "iwae")


def group_configs(configs: list[Config]) -> list[list[int]]:
  """Indices of ``configs`` grouped by :func:`static_part`, groups in order of first appearance."""
  groups: dict[Config, list[int]] = {}
  for i, c in enumerate(configs):
    groups.setdefault(static_part(c), []).append(i)
  return list(groups.values())


def model_name(config: Config, axes: list[str]) -> str:
  """``"beta=0.5,seed=1"`` from the swept axes of a config."""

  def text(v):
    return "/".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)

  return ",".join(f"{a}={text(getattr(config, a))}" for a in axes) or "model"
