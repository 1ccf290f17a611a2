"""Pictures of a model: samples from p, test images and their reconstructions through q and p.

For image data ``[H, W, C]``: ``samples.png`` (E[x|z] of z ~ p(z)) and ``reconstructions.png``
(test images beside E[x|z] at z = the mean of q_phi(z|x)); for two-dimensional vectors, the test
data beside the model's samples. :func:`images` gives the same pictures as arrays, for the
callbacks (TensorBoard, W&B).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxvae.core.model import VAE, Params


def images(vae: VAE, params: Params, test_x: jax.Array, key: jax.Array, n: int = 64) -> dict[str, np.ndarray] | None:
  """A model's pictures as ``[n, H, W, C]`` arrays in [0, 1], or None for data that are not images.

  ``samples``: E[x|z] of z ~ p(z); ``test_images``: the first ``n`` test images as the model sees
  them; ``reconstructions``: E[x|z] at z = the mean of q_phi(z|x) of each of them (for a latent
  that is more than its layers' values, such as the VDVAE's, at one draw z ~ q_phi(z|x)).
  """
  if len(vae.data_shape) != 3:
    return None
  k_z, k_means = jax.random.split(key)
  samples = vae.mean_x(vae.p_theta(params, vae.sample_p_z(params, k_z, n)))
  x = test_x[:n]
  means = vae.latent_means(params, x, k_means)  # E_q[z_l|x] of each stochastic layer
  latent = jax.eval_shape(lambda: vae.sample_q(params, x, k_means)[0])
  if len(means) == 1 or len(jax.tree.leaves(latent)) == len(means):
    z = means[0] if len(means) == 1 else means
  else:  # a latent that carries more than its layers' values (the VDVAE's top-down state): one draw of q
    z = vae.sample_q(params, x, k_means)[0]
  shown = vae.mean_x(vae.p_theta(params, z))
  # mean_x shows E[x|z] in [0, 1] already; the test images are in the model's data range.
  return {
    name: np.clip(np.asarray(a), 0.0, 1.0)
    for name, a in (("samples", samples), ("test_images", _display(x, vae)), ("reconstructions", shown))
  }


def save_figures(vae: VAE, params: Params, test_x: jax.Array, key: jax.Array, workdir: str, n: int = 64) -> list[str]:
  """The pictures of a model that apply to its data; returns their paths.

  Images ``[H, W, C]``: ``samples.png`` (x ~ p_theta(x|z), z ~ p(z), shown as E[x|z]) and
  ``reconstructions.png`` (test images beside E[x|z] at z = the mean of q_phi(z|x)).
  Two-dimensional vectors: ``samples.png``, the test data and the model's samples in the plane.
  """
  from jaxvae.watch import plots

  k_z, _ = jax.random.split(key)  # images() splits the key the same way
  shape = vae.data_shape
  if len(shape) == 3:
    pictures = images(vae, params, test_x, key, n)
    paths = [os.path.join(workdir, "samples.png"), os.path.join(workdir, "reconstructions.png")]
    plots.save_samples(
      paths[0], pictures["samples"], f"{n} samples x ~ p_theta(x|z), z ~ p(z), shown as the means E[x|z]"
    )
    plots.save_reconstructions(
      paths[1],
      pictures["test_images"],
      pictures["reconstructions"],
      "test images (as the model sees them) and their reconstructions E[x|z] at z = mean of q_phi(z|x)",
    )
    return paths
  if shape == (2,):
    samples = vae.mean_x(vae.p_theta(params, vae.sample_p_z(params, k_z, 2000)))
    path = os.path.join(workdir, "samples.png")
    plots.save_points(
      path, np.asarray(test_x[:2000]), np.asarray(samples), "test data x and the means E[x|z] of 2,000 draws z ~ p(z)"
    )
    return [path]
  return []


def _display(x: jax.Array, vae: VAE) -> jax.Array:
  """The model's view of an image mapped to [0, 1] for a picture (discretized-logistic data live in [-1, 1])."""
  lo, hi = vae.likelihood.data_range or (0.0, 1.0)
  return (x - lo) / (hi - lo)
