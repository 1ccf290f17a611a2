"""The documentation's sources against the code: the API reference lists every public name, the
tutorials' notebooks are their MyST sources, ``help(jaxvae)`` leads with the map of the API."""

import os
import pydoc
import re
import types

import pytest

import jaxvae

# Imported here: its import starts a process (the fast tier's tests may not).
jupytext = pytest.importorskip("jupytext")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def test_every_public_name_has_a_page_in_the_api_reference():
  with open(os.path.join(DOCS, "api", "index.md")) as f:
    listed = set(re.findall(r"^\s+jaxvae\.(\w+)$", f.read(), flags=re.MULTILINE))
  public = {
    name
    for name, value in vars(jaxvae).items()
    if not name.startswith("_") and not isinstance(value, types.ModuleType) and callable(value)
  }
  assert public - listed == set(), "add these to docs/api/index.md's autosummary"
  assert listed - public == set(), "docs/api/index.md lists names jaxvae does not export"


def test_help_of_the_package_is_its_map_not_every_class():
  text = pydoc.render_doc(jaxvae, renderer=pydoc.plaintext)
  assert len(text.splitlines()) < 100
  description = text.split("DESCRIPTION", 1)[1]
  for name in ("train_and_evaluate", "VAE.from_modules", "Objective", "Dataset.from_arrays", "elbo"):
    assert name in description, name
  assert "Alias for field number" not in text


def test_the_tutorial_notebooks_are_their_myst_sources():
  folder = os.path.join(DOCS, "tutorials")
  sources = sorted(f for f in os.listdir(folder) if f.endswith(".md") and f != "index.md")
  assert sources, "no tutorials"
  for name in sources:
    paired = os.path.join(folder, name[:-3] + ".ipynb")
    assert os.path.exists(paired), f"{name} has no .ipynb: jupytext --sync docs/tutorials/{name}"
    md, nb = jupytext.read(os.path.join(folder, name)), jupytext.read(paired)
    cells = [(c.cell_type, c.source) for c in md.cells]
    assert cells == [(c.cell_type, c.source) for c in nb.cells], f"{name} and its .ipynb differ: jupytext --sync"
    assert all(not c.get("outputs") for c in nb.cells), f"{name[:-3]}.ipynb holds outputs: the site makes them"
