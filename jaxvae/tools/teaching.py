"""p and q, seen: what the decoder does with codes, what the encoder does with images, and how
the Gaussian q_phi(z|x) sits on the true posterior p_theta(z|x) (see docs/guides/notation.md).

The functions compute; :mod:`jaxvae.watch.plots` draws; :func:`plot_run` does both for a run folder
(``jaxvae plot --workdir W``).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from jaxvae.core.distributions import Gaussian
from jaxvae.core.model import VAE, Params
from jaxvae.errors import JaxvaeError
from jaxvae.runs.evaluate import load_run
from jaxvae.watch import plots

# The rule of posterior_grid: a coarse pass over [-GRID_EXTENT, GRID_EXTENT]^2 keeps the points
# above GRID_THRESHOLD of the posterior's maximum. The explorer page applies the same rule.
GRID_EXTENT = 4.0
GRID_THRESHOLD = 1e-4
# The grids of bounds_on_grid (and of the explorer page): fine size x size, coarse x coarse.
BOUNDS_SIZE, BOUNDS_COARSE = 50, 25


def decoder_manifold(vae: VAE, params: Params, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
  """Decoder means E[x|z] on an n x n grid of 2-D codes placed at the quantiles of p(z) = N(0, I).

  As in Kingma & Welling (2014), Fig. 4: z_i = Phi^-1(u_i), u on an even grid in (0.05, 0.95),
  so each cell covers the same prior mass.

  Returns:
    ``(images [n*n, H, W, C], z values [n])``, rows from high z2 to low, columns low z1 to high.
  """
  values = norm.ppf(jnp.linspace(0.05, 0.95, n))
  z1, z2 = jnp.meshgrid(values, values[::-1])
  z = jnp.stack([z1.ravel(), z2.ravel()], axis=-1)
  return np.asarray(vae.mean_x(vae.p_theta(params, z))), np.asarray(values)


def log_joint_on_grid(vae: VAE, params: Params, x: jax.Array, z1: jax.Array, z2: jax.Array) -> jax.Array:
  """log p_theta(x|z) + log p(z) = log p_theta(z|x) + log p_theta(x) at every grid point ``[G2, G1]``."""
  z = jnp.stack(jnp.meshgrid(z1, z2), axis=-1)  # [G2, G1, 2]
  out = vae.p_theta(params, z)
  return vae.log_p_x_given_z(jnp.broadcast_to(x, z.shape[:-1] + x.shape), out) + vae.log_p_z(params, z)


def posterior_grid(vae: VAE, params: Params, x: jax.Array, q: Gaussian, size: int = 160, coarse: int = 81):
  """The grid that covers the true posterior p_theta(z|x) of one image and q, and log p(x, z) on it.

  A coarse pass (``coarse`` x ``coarse`` points on [-4, 4]^2, spacing h) finds where the
  posterior is above 1e-4 of its maximum; the fine grid (``size`` x ``size`` points) spans
  those points +- h and q's mean +- 4 sigma. The explorer page (:mod:`jaxvae.tools.explorer`) draws
  the same grid by the same rule.

  Returns:
    ``z1 [size]``, ``z2 [size]`` (float64) and ``log_joint [size, size]`` = log p_theta(x, z)
    (float64; rows follow z2).
  """
  c = np.linspace(-GRID_EXTENT, GRID_EXTENT, coarse)
  h = c[1] - c[0]
  lj = np.asarray(log_joint_on_grid(vae, params, x, c, c))
  rows, cols = np.nonzero(lj > lj.max() + np.log(GRID_THRESHOLD))
  mean, scale = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_scale, np.float64))
  lo1, hi1 = min(c[cols.min()] - h, mean[0] - 4 * scale[0]), max(c[cols.max()] + h, mean[0] + 4 * scale[0])
  lo2, hi2 = min(c[rows.min()] - h, mean[1] - 4 * scale[1]), max(c[rows.max()] + h, mean[1] + 4 * scale[1])
  z1, z2 = np.linspace(lo1, hi1, size), np.linspace(lo2, hi2, size)
  return z1, z2, np.asarray(log_joint_on_grid(vae, params, x, z1, z2), np.float64)


def posterior_on_grid(vae: VAE, params: Params, x: jax.Array, q: Gaussian, size: int = 160) -> dict[str, np.ndarray]:
  """The true posterior p_theta(z|x) of one image on the grid of :func:`posterior_grid`.

  The density is normalized on the grid: p(z|x) = exp(log p(x, z)) / sum_grid exp(log p(x, z)) / cell area.

  Args:
    x: ``[H, W, C]`` one image.
    q: its q_phi(z|x), ``[2]`` fields.

  Returns:
    ``z1 [size]``, ``z2 [size]``, ``density [size, size]`` (rows follow z2).
  """
  z1, z2, lj = posterior_grid(vae, params, x, q, size)
  density = np.exp(lj - lj.max())
  cell = float((z1[1] - z1[0]) * (z2[1] - z2[0]))
  return {"z1": z1, "z2": z2, "density": density / (density.sum() * cell)}


def bounds_on_grid(
  vae: VAE,
  params: Params,
  x: jax.Array,
  q: Gaussian,
  size: int = BOUNDS_SIZE,
  coarse: int = BOUNDS_COARSE,
  grid_q: Gaussian | None = None,
) -> dict[str, float]:
  """log p(x), ELBO(q) and KL(q || p_theta(z|x)) of one image of a 2-D model, by quadrature on a grid.

  On the grid of :func:`posterior_grid` (built around ``grid_q``, default ``q``), with cell
  area A and log p(x, z_g) at its points z_g:

    log p(x)     = log sum_g exp(log p(x, z_g)) A
    ELBO(q)      = sum_g w_g [ log p(x, z_g) - log q(z_g) ],   w_g = q(z_g) / sum_g' q(z_g')
    KL(q || p(z|x)) = log p(x) - ELBO(q)   (the identity of docs/guides/notation.md)

  These are the numbers the explorer page shows (``jaxvae explore``).

  Returns:
    ``log_px``, ``elbo``, ``kl`` in nats (float).
  """
  z1, z2, lj = posterior_grid(vae, params, x, grid_q if grid_q is not None else q, size, coarse)
  cell = (z1[1] - z1[0]) * (z2[1] - z2[0])
  log_px = float(np.logaddexp.reduce(lj.ravel()) + np.log(cell))
  z = np.stack(np.meshgrid(z1, z2), axis=-1)
  mean, log_scale = np.asarray(q.mean, np.float64), np.asarray(q.log_scale, np.float64)
  log_q = -0.5 * np.sum(((z - mean) * np.exp(-log_scale)) ** 2 + 2.0 * log_scale + np.log(2 * np.pi), axis=-1)
  w = np.exp(log_q - np.logaddexp.reduce(log_q.ravel()))
  elbo = float(np.sum(w * (lj - log_q)))
  return {"log_px": log_px, "elbo": elbo, "kl": log_px - elbo}


def interpolations(vae: VAE, params: Params, x_a: jax.Array, x_b: jax.Array, steps: int = 10) -> np.ndarray:
  """Decoder means along the straight line between the q-means of image pairs.

  Args:
    x_a, x_b: ``[P, H, W, C]`` pairs.

  Returns:
    ``[P, steps, H, W, C]``.
  """
  za, zb = vae.q_phi(params, x_a).mean, vae.q_phi(params, x_b).mean
  t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
  z = za[:, None] * (1.0 - t) + zb[:, None] * t
  return np.asarray(vae.mean_x(vae.p_theta(params, z)))


def plot_run(
  workdir: str, out: str | None = None, *, n_posteriors: int = 5, seed: int = 0, model=None, data=None
) -> list[str]:
  """Writes the pictures of a run's model into ``out`` (default ``workdir``); returns their paths.

  Any model of images with one Gaussian stochastic layer: ``latent_scatter.png`` (q-means of
  the test set by label; the first two principal axes if d > 2) and ``interpolations.png``.
  A model with a 2-D latent space also gets ``manifold.png`` and ``posterior_vs_q.png``.
  ``model`` and ``data`` are needed again if they were handed over in Python.
  """
  run = load_run(workdir, model=model, data=data)
  vae, params, epoch = run.vae, run.params, run.epoch
  test = run.setup.test_x
  layers = jax.eval_shape(lambda: vae.latent_means(params, jnp.asarray(test[:1]), jax.random.key(0)))
  if len(layers) != 1 or len(vae.data_shape) != 3:
    raise JaxvaeError("jaxvae plot draws image models with one stochastic layer: use a run of --model mlp or burda1")
  if vae.posterior is not None and not vae.posterior.closed_form:
    raise JaxvaeError(
      f"jaxvae plot draws a Gaussian q_phi(z|x) and its ellipses; this run's posterior is "
      f"{vae.posterior.name}: use a run of --posterior gaussian"
    )
  out = out or workdir
  os.makedirs(out, exist_ok=True)
  labels = run.setup.checked.test_labels[: len(test)]
  rng = np.random.default_rng(seed)
  written = []
  title = f"{os.path.basename(os.path.normpath(workdir))}, epoch {epoch}, d = {vae.latent_dim}"

  means = np.concatenate(
    [np.asarray(vae.q_phi(params, jnp.asarray(test[i : i + 2000])).mean) for i in range(0, len(test), 2000)]
  )
  path = os.path.join(out, "latent_scatter.png")
  plots.save_latent_scatter(path, means, labels, title)
  written.append(path)

  pairs = rng.choice(len(test), size=(6, 2), replace=False)
  frames = interpolations(vae, params, jnp.asarray(test[pairs[:, 0]]), jnp.asarray(test[pairs[:, 1]]))
  path = os.path.join(out, "interpolations.png")
  plots.save_interpolations(path, test[pairs[:, 0]], frames, test[pairs[:, 1]], title)
  written.append(path)

  if vae.latent_dim == 2:
    images, values = decoder_manifold(vae, params)
    path = os.path.join(out, "manifold.png")
    plots.save_manifold(path, images, values, title)
    written.append(path)
    chosen = [int(rng.choice(np.flatnonzero(labels == digit))) for digit in rng.choice(10, n_posteriors, replace=False)]
    panels = []
    for i in chosen:
      x = jnp.asarray(test[i])
      q = jax.tree.map(lambda a: a[0], vae.q_phi(params, x[None]))
      panels.append(
        {
          "image": test[i],
          "label": int(labels[i]),
          "q_mean": np.asarray(q.mean),
          "q_scale": np.exp(np.asarray(q.log_scale)),
          **posterior_on_grid(vae, params, x, q),
        }
      )
    path = os.path.join(out, "posterior_vs_q.png")
    plots.save_posterior_vs_q(path, panels, title)
    written.append(path)
  return written
