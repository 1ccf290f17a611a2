"""The folders are layers and imports only go down; the registries drive the config; names are one per thing."""

import ast
import dataclasses
import inspect
import pathlib

import pytest

import jaxvae
from jaxvae.core import likelihoods, objectives, posteriors, priors
from jaxvae.core.model import MODELS
from jaxvae.errors import JaxvaeError
from jaxvae.runs.config import CHOICES, SPECS, Config

PACKAGE = pathlib.Path(jaxvae.__file__).parent
# Each folder may import the ones before it (jaxvae.errors is below all of them).
LAYERS = ["errors", "core", "training", "watch", "runs", "tools"]


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
  """The jaxvae modules a file imports, at module level or inside functions alike, with their lines."""
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found += [(a.name, node.lineno) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      found.append((node.module, node.lineno))
  return [(name, line) for name, line in found if name.startswith("jaxvae.")]


def _layer(module: str) -> int | None:
  parts = module.split(".")
  return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_lives_in_a_layer_folder_and_imports_only_the_layers_below():
  modules = [p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem not in ("__init__", "__main__")]
  upward = []
  for path in modules:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    mine = _layer(module)
    assert mine is not None, f"{module} is not in a layer folder ({', '.join(LAYERS[1:])})"
    upward += [f"{module}:{line} imports {name}" for name, line in _imports(path) if (_layer(name) or 0) > mine]
  assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_each_folder_init_says_what_lives_there_and_imports_nothing():
  for folder in LAYERS[1:]:
    init = PACKAGE / folder / "__init__.py"
    tree = ast.parse(init.read_text())
    assert ast.get_docstring(tree), f"{init} has no docstring"
    assert all(isinstance(node, ast.Expr) for node in tree.body), f"{init} should hold its docstring only"
    for path in (PACKAGE / folder).glob("*.py"):
      if path.stem != "__init__":
        assert f"``{path.stem}``" in ast.get_docstring(tree), f"{init} does not name {path.stem}"


def test_the_configs_choices_help_and_rules_come_from_the_registries():
  assert dict(CHOICES) == {
    "model": MODELS,
    "likelihood": likelihoods.LIKELIHOODS,
    "prior": priors.PRIORS,
    "posterior": posteriors.POSTERIORS,
    "objective": objectives.OBJECTIVES,
  }
  for field, registry in CHOICES.items():
    assert len(registry) >= 2
    for name in registry:
      assert name in SPECS[field].help, f"--{field} {name} is missing from the flag's help"
  with pytest.raises(JaxvaeError, match="likelihood 'poisson' is unknown: use one of bernoulli, gaussian"):
    likelihoods.LIKELIHOODS["poisson"]
  # A registered component's rule is the config's: the ladder's first layer is its latent_dim.
  with pytest.raises(JaxvaeError, match="latent_dim=7 is the ladder's first layer"):
    Config(model="ladder", latent_dim=7).validate()


def test_a_factorys_keyword_defaults_are_the_configs_defaults():
  """A registered factory reads config fields by its parameter names; without a config (``VAE.from_modules``
  given a name) it takes its own defaults, which must be the config's."""
  defaults = Config()
  for field, registry in CHOICES.items():
    for name in registry:
      for parameter in inspect.signature(registry[name].factory).parameters.values():
        if parameter.name in SPECS and parameter.default is not parameter.empty:
          configured = getattr(dataclasses.replace(defaults), parameter.name)
          if configured is not None:
            assert parameter.default == configured, f"{field} {name}: {parameter.name}={parameter.default!r}"


def test_one_name_per_thing():
  """A component factory's name says what it builds: no two of likelihoods, priors and posteriors define one name."""
  defined = {
    module: {n for n, v in vars(module).items() if callable(v) and getattr(v, "__module__", None) == module.__name__}
    for module in (likelihoods, priors, posteriors)
  }
  for a, b in ((likelihoods, priors), (likelihoods, posteriors), (priors, posteriors)):
    assert not defined[a] & defined[b], f"{a.__name__} and {b.__name__} both define {defined[a] & defined[b]}"
  assert {"top_down_gaussian"} <= defined[priors] and {"diagonal_gaussian", "bottom_up_gaussian"} <= defined[posteriors]
