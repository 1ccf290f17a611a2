"""A Sphinx directive that writes the command line's reference from the code that makes it.

``{jaxvae-cli}`` in a MyST page expands to one section per subcommand of ``jaxvae`` (its
description, usage and flags, read from :func:`jaxvae.tools.cli.build_parser`), and the config
fields' flags as tables from their one description (:data:`jaxvae.runs.config.SPECS`: default,
whether a sweep vmaps the field, whether ``--resume`` may change it, its meaning), grouped as
``--help`` groups them. Nothing is copied, so the page cannot go stale.
"""

from __future__ import annotations

import argparse

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from jaxvae.runs.config import SPECS, Config
from jaxvae.tools.cli import build_parser


def _cell(text: str) -> str:
  return " ".join(str(text).split()).replace("|", "\\|")


def _default(value) -> str:
  if isinstance(value, tuple):
    return ",".join(map(str, value))
  return "unset" if value is None else str(value)


def config_tables() -> list[str]:
  """The config fields' flags as markdown, one table per group."""
  defaults = Config()
  groups: dict[str, list[str]] = {}
  for name, spec in SPECS.items():
    rows = groups.setdefault(spec.group, ["| flag | default | sweep | resume | meaning |", "|---|---|---|---|---|"])
    choices = f" (one of: {', '.join(spec.choices)})" if spec.choices is not None else ""
    rows.append(
      f"| `--{name.replace('_', '-')} {spec.kind.upper()}` | {_cell(_default(getattr(defaults, name)))} | "
      f"{'vmapped' if spec.vmapped else 'grouped'} | {'may change' if spec.resumable else 'fixed'} | "
      f"{_cell(spec.help + choices)} |"
    )
  lines = []
  for group, rows in groups.items():
    lines += [f"### Config fields: {group}", "", *rows, ""]
  return lines


def _config_actions(parser: argparse.ArgumentParser) -> set[int]:
  """The ids of the actions :func:`jaxvae.runs.config.add_flags` added: those in the config fields' groups."""
  titles = {spec.group for spec in SPECS.values()}
  return {id(a) for g in parser._action_groups if g.title in titles for a in g._group_actions}


def _own_flags(parser: argparse.ArgumentParser) -> list[str]:
  """The flags of a subcommand that are not config fields, as a markdown table."""
  rows = []
  for action in parser._actions:
    if isinstance(action, argparse._HelpAction) or id(action) in _config_actions(parser):
      continue
    names = ", ".join(action.option_strings) or action.dest
    metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
    if not action.option_strings:
      metavar = ""
    help = action.help or ""
    if action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in help:
      help += f" (default {action.default})"
    rows.append(f"| `{names}{metavar}` | {_cell(help)} |")
  return ["| flag | meaning |", "|---|---|", *rows] if rows else []


def _usage(name: str, parser: argparse.ArgumentParser, takes_config: bool) -> str:
  """``jaxvae NAME [config flags] [--own FLAG] ...``: the config fields' flags stand as one item."""
  items = ["[CONFIG FLAGS]"] if takes_config else []
  for action in parser._actions:
    if isinstance(action, argparse._HelpAction) or id(action) in _config_actions(parser):
      continue
    if not action.option_strings:
      items.append(f"{action.dest.upper()} ...")
      continue
    metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
    items.append(
      f"{action.option_strings[0]}{metavar}" if action.required else f"[{action.option_strings[0]}{metavar}]"
    )
  return f"jaxvae {name} " + " ".join(items)


def cli_reference() -> str:
  """The whole reference as MyST markdown."""
  parser = build_parser()
  sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
  lines = []
  for name, command in sub.choices.items():
    takes_config = bool(_config_actions(command))
    lines += [f"## `jaxvae {name}`", "", _cell(command.description or ""), ""]
    lines += ["```text", _usage(name, command, takes_config), "```", ""]
    lines += _own_flags(command) + [""]
    if takes_config:
      lines += [
        f"`jaxvae {name}` also takes every config field as a flag: see [the config fields](#config-fields).",
        "",
      ]
  lines += ["## Config fields", ""]
  lines += [
    "One description per field (`jaxvae.runs.config.FieldSpec`) makes these flags of `jaxvae train` and "
    "`jaxvae sweep`, their `--grid` parsing, their validation and their resume rule. *vmapped* fields vary "
    "inside one compiled sweep program; *grouped* ones make a program per value. `--resume` may change only "
    "the fields marked *may change*. `jaxvae flags` prints the same in one table.",
    "",
  ]
  lines += config_tables()
  return "\n".join(lines)


class CliReference(SphinxDirective):
  """``{jaxvae-cli}``: the generated reference of the ``jaxvae`` command."""

  has_content = False

  def run(self) -> list[nodes.Node]:
    container = nodes.section()
    self.state.nested_parse(
      StringList(cli_reference().splitlines(), source="jaxvae-cli"), 0, container, match_titles=True
    )
    return container.children


def setup(app):
  app.add_directive("jaxvae-cli", CliReference)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
