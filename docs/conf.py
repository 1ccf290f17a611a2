"""Sphinx configuration of jaxvae's documentation site.

Build it (warnings are errors, references to jaxvae's own API are checked, every tutorial executes):

    pip install -e '.[docs]' && sphinx-build -W --keep-going -n -b html docs docs/_build/html

The tutorials are MyST notebooks (``tutorials/*.md``, paired with ``.ipynb`` by jupytext), run by
myst-nb at build time; ``docs/check_site.py`` then checks the built pages in headless Chromium.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "jaxvae"
author = "the jaxvae authors"
copyright = "2026, the jaxvae authors"
REPOSITORY = "https://github.com/jaxvae/jaxvae"

extensions = [
  "myst_nb",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx_copybutton",
  "cli_reference",
  "sphinx-mathjax-offline",
]

exclude_patterns = ["_build", "jupyter_execute", "**/*.ipynb", "**.ipynb_checkpoints", "execute.py", "check_site.py"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
root_doc = "index"

# The tutorials run when the site is built; a cell that raises fails the build. The cache under
# docs/_build/.jupyter_cache skips an unchanged notebook in the next build (a clean clone runs them all).
nb_execution_mode = "cache"
nb_execution_cache_path = os.path.join(os.path.dirname(__file__), "_build", ".jupyter_cache")
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# Tutorials link each other's .md files; the same files are the notebooks' sources.
myst_url_schemes = ["http", "https", "mailto"]

templates_path = ["_templates"]
autosummary_generate = True
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# References to jaxvae's own API must resolve (-n); the names of other libraries have no inventory
# offline (no intersphinx), so they are left as text.
nitpicky = True
nitpick_ignore_regex = [
  (
    r"py:.*",
    r"(jax|jaxlib|jnp|numpy|np|flax|nn|nnx|optax|chex|orbax|ocp|equinox|eqx|haiku|hk|tensorboardX|wandb|typing|"
    r"collections|os|pathlib|concurrent|enum|dataclasses|types|argparse|threading|signal|subprocess|array|"
    r"matplotlib|PIL|tfds|tensorflow_datasets)(\..*)?",
  ),
  (
    r"py:.*",
    r"(int|float|str|bool|bytes|dict|list|tuple|set|object|None|NoneType|callable|Callable|Any|Sequence|Mapping|"
    r"Iterable|Iterator|Optional|Union|NamedTuple|Exception|BaseException|ValueError|TypeError|RuntimeError|"
    r"OSError|KeyboardInterrupt|type|function|module|Path|PathLike|Array|ArrayLike|PRNGKey|PyTree|Shape|DType|"
    r"Params|Latent|Metrics|ndarray|Literal|Protocol|TextIO|IO|Generator|Hashable|Self|ParamSpec|TypeVar|T|P|R)",
  ),
]

html_theme = "sphinx_book_theme"
html_title = "jaxvae"
html_static_path = ["_static"]
html_css_files = ["jaxvae.css"]
html_favicon = "_static/favicon.png"
# The theme reads its light or dark mode from here when the reader has not chosen one.
html_context = {"default_mode": "light"}
html_theme_options = {
  "repository_url": REPOSITORY,
  "repository_branch": "main",
  "path_to_docs": "docs",
  "use_repository_button": True,
  "use_source_button": True,
  "show_toc_level": 2,
  "navigation_with_keys": False,
}
html_last_updated_fmt = None
# Search runs from the built files (searchindex.js); nothing is fetched from the network.
html_show_sourcelink = False


def _public_name(obj) -> str | None:
  """``jaxvae.X`` where ``obj`` is the object ``import jaxvae`` exports as ``X`` (documented under that name)."""
  import jaxvae

  if obj is None or isinstance(obj, type(jaxvae)):
    return None
  for name, value in vars(jaxvae).items():
    if value is obj and not name.startswith("_"):
      return f"jaxvae.{name}"
  return None


def _skip_member(app, what, name, obj, skip, options):
  """Each object is documented once: a name ``import jaxvae`` exports has its page as ``jaxvae.X``, not again in
  its module's page; a NamedTuple's fields are documented by its ``Attributes`` section, not as boilerplate."""
  if what == "module" and _public_name(obj) is not None:
    return True
  if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
    return True
  return skip


def _public_target(target: str) -> str | None:
  """``jaxvae.core.model.VAE.sample_p_z`` as ``jaxvae.VAE.sample_p_z``: the name its page documents it under."""
  import importlib

  parts = target.split(".")
  for cut in range(len(parts) - 1, 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:cut]))
    except ImportError:
      continue
    for i in range(cut, len(parts)):
      obj = getattr(obj, parts[i], None)
      public = _public_name(obj) if obj is not None else None
      if public is not None:
        return ".".join([public, *parts[i + 1 :]])
    return None
  return None


def _resolve_missing(app, env, node, contnode):
  """A reference written with the defining module's path (``jaxvae.core.model.VAE``) or a short name (``VAE``,
  ``Epoch``) resolves to the one object of that name the site documents; an ambiguous or unknown one stays an
  error."""
  if node.get("refdomain") != "py":
    return None
  domain = env.get_domain("py")
  target = node["reftarget"]
  public = _public_target(target) if target.startswith("jaxvae.") else None
  candidates = (
    [public]
    if public
    else sorted({name for name, entry in domain.objects.items() if name.endswith("." + target) and not entry.aliased})
  )
  if len(candidates) != 1 or candidates[0] not in domain.objects:
    return None
  return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], candidates[0], node, contnode)


def setup(app):
  app.connect("autodoc-skip-member", _skip_member)
  app.connect("missing-reference", _resolve_missing)
