"""The explorer: p and q of a trained model in one self-contained HTML page (``jaxvae explore``).

``write_explorer(workdir)`` writes ``W/explorer.html``: the model's weights, a few thousand test
codes and a hundred test images embedded in the page, and the encoder q_phi(z|x) and decoder
p_theta(x|z) evaluated in the page in plain JavaScript (no server, no network). The page shows

* the latent plane: the q means of the test images by label; pointing at z decodes E[x|z],
  two clicks draw the interpolation between them (d > 2: a plane of two coordinates or of the
  top two principal directions of the codes, the other coordinates held at a chosen code);
* an image to explain (a test image, or one drawn on a 28 x 28 canvas): q_phi(z|x) as its 1 and
  2 sigma ellipses over the true posterior p_theta(z|x) on a grid, and log p(x), ELBO(q) and
  KL(q || p_theta(z|x)) with their identity; sliders move q by hand. For d = 2 the numbers are
  quadratures on the grid of :func:`jaxvae.tools.teaching.bounds_on_grid`, the same numbers in Python;
  for d > 2, Monte Carlo estimates from q (the ELBO) and importance sampling (log p(x)).

Models: the built-in MLP (``--model mlp``) with a Bernoulli or Gaussian likelihood, the normal
prior and the Gaussian posterior; others are refused with a one-line message.
"""

from __future__ import annotations

import base64
import json
import os
from importlib import resources
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxvae.errors import JaxvaeError
from jaxvae.runs.evaluate import load_run
from jaxvae.runs.folder import read_config
from jaxvae.tools.teaching import BOUNDS_COARSE, BOUNDS_SIZE, GRID_EXTENT, GRID_THRESHOLD

# The page's grid: the rule and sizes of teaching.posterior_grid and teaching.bounds_on_grid.
GRID = {"coarse": BOUNDS_COARSE, "size": BOUNDS_SIZE, "extent": GRID_EXTENT, "threshold": GRID_THRESHOLD}


def _gaussian_page(vae: Any, params: Any) -> dict[str, Any]:
  """A Gaussian likelihood's scale per pixel (fixed or learned, as its ``outputs`` gives it) and its bins."""
  raw = jnp.zeros((1, *vae.likelihood.output_shape))
  log_scale = vae.likelihood.outputs(params.get("likelihood", {}), raw).log_scale
  return {"log_scale": _floats(np.asarray(log_scale).reshape(-1)), "bins": 256 if vae.likelihood.eight_bit else None}


# The likelihoods explorer.js evaluates, by their names, and what the page needs of each besides the decoder.
PAGE_LIKELIHOODS = {"bernoulli": lambda vae, params: {}, "gaussian": _gaussian_page}


def check_explorable(config) -> None:
  """Raises a one-line :class:`JaxvaeError` unless the page can evaluate this run's model."""
  problems = []
  if config.model != "mlp":
    problems.append(f"the model is {config.model} (the page runs --model mlp --net mlp)")
  elif config.net != "mlp":
    problems.append(f"the networks are {config.net} (the page runs --model mlp --net mlp)")
  if config.likelihood not in PAGE_LIKELIHOODS:
    problems.append(f"the likelihood is {config.likelihood} (the page has {' and '.join(PAGE_LIKELIHOODS)})")
  if config.prior != "normal":
    problems.append(f"the prior is {config.prior} (the page has the normal prior)")
  if config.posterior != "gaussian":
    problems.append(f"the posterior is {config.posterior} (the page has the Gaussian q_phi)")
  if problems:
    raise JaxvaeError(f"jaxvae explore cannot draw this run: {'; '.join(problems)}: train one with those settings")


def _floats(a) -> str:
  """A float32 array as base64 of its little-endian bytes."""
  return base64.b64encode(np.ascontiguousarray(np.asarray(a, "<f4")).tobytes()).decode("ascii")


def _layers(tree: dict[str, Any]) -> list[dict[str, Any]]:
  """A Linen MLP's Dense layers in order: weights transposed to ``[out, in]`` (rows contiguous), biases."""
  names = sorted(tree, key=lambda n: int(n.split("_")[1]))
  return [
    {
      "in": int(tree[n]["kernel"].shape[0]),
      "out": int(tree[n]["kernel"].shape[1]),
      "w": _floats(np.asarray(tree[n]["kernel"]).T),
      "b": _floats(tree[n]["bias"]),
    }
    for n in names
  ]


def page_data(workdir: str, *, n_points: int = 2000, n_images: int = 100, model=None, data=None) -> dict[str, Any]:
  """What the page embeds: the weights, the likelihood's parameters, test codes, labels and images.

  Args:
    workdir: a `jaxvae train` run folder.
    n_points: test images whose q means are drawn on the latent plane.
    n_images: test images that can be explained (the model's view of them: binarized, or
      dequantized once, as ``jaxvae eval`` sees them).
  """
  check_explorable(
    read_config(workdir, f"{workdir} is not a run folder (no config.json): pass the --workdir of a `jaxvae train` run")
  )
  run = load_run(workdir, model=model, data=data)
  config, vae, params = run.config, run.vae, run.params
  test, labels = run.setup.test_x, run.setup.checked.test_labels
  if tuple(vae.data_shape) != (28, 28, 1):
    raise JaxvaeError(f"jaxvae explore draws 28x28 grey images; this run's data are {vae.data_shape}")
  n_points, n_images = min(n_points, len(test)), min(n_images, len(test))
  means = np.concatenate(
    [
      np.asarray(vae.q_phi(params, jnp.asarray(test[i : min(i + 1000, n_points)])).mean)
      for i in range(0, n_points, 1000)
    ]
  )
  centre = means.mean(axis=0)
  directions = np.linalg.svd(means - centre, full_matrices=False)[2][:2]  # top two principal directions
  likelihood = {"name": vae.likelihood.name, **PAGE_LIKELIHOODS[vae.likelihood.name](vae, params)}
  x = np.asarray(test[:n_images], np.float32).reshape(n_images, 784)
  return {
    "name": os.path.basename(os.path.normpath(workdir)),
    "epoch": int(run.epoch),
    "latent_dim": int(vae.latent_dim),
    "activation": config.activation,
    "encoder": _layers(params["encoder"]),
    "decoder": _layers(params["decoder"]),
    "likelihood": likelihood,
    "points": _floats(means),
    "labels": base64.b64encode(np.asarray(labels[:n_points], np.uint8).tobytes()).decode("ascii"),
    "centre": centre.tolist(),
    "directions": directions.tolist(),
    "images": _floats(x),
    "n_points": n_points,
    "n_images": n_images,
    "grid": GRID,
  }


def write_explorer(workdir: str, out: str | None = None, **kwargs) -> str:
  """Writes the explorer page of a run (default ``W/explorer.html``); returns its path.

  Args:
    workdir: a `jaxvae train` run folder of a model the page runs (see the module docstring).
    out: the page's path.
    **kwargs: :func:`page_data`'s (``n_points``, ``n_images``, ``model``, ``data``).
  """
  data = page_data(workdir, **kwargs)
  web = resources.files("jaxvae") / "tools" / "web"
  page = (web / "explorer.html").read_text()
  script = (web / "explorer.js").read_text()
  page = page.replace("/*DATA*/", json.dumps(data, separators=(",", ":"))).replace("/*SCRIPT*/", script)
  path = out or os.path.join(workdir, "explorer.html")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    f.write(page)
  os.replace(path + ".tmp", path)
  return path
