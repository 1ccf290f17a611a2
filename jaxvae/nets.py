"""Flax Linen networks: the encoder of q_phi(z|x) and the decoder of p_theta(x|z).

The networks only map arrays to distribution parameters; which distribution
those parameters define lives in :mod:`jaxvae.distributions` and
:mod:`jaxvae.model`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae.distributions import Gaussian

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
    "softplus": nn.softplus,
}


class MLPEncoder(nn.Module):
  """x -> (mu, log sigma) of the diagonal Gaussian q_phi(z|x).

  Kingma & Welling (2014), Appendix C.2: h = act(W_h x + b_h);
  mu = W_mu h + b_mu; log sigma = W_sigma h + b_sigma.

  Attributes:
    hidden: widths of the hidden layers.
    latent_dim: d, the size of z.
    activation: a name in :data:`ACTIVATIONS`.
  """

  hidden: Sequence[int]
  latent_dim: int
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array) -> Gaussian:
    """Args: x ``[..., H, W, C]``. Returns: a :class:`Gaussian` with ``[..., d]`` fields."""
    act = ACTIVATIONS[self.activation]
    h = x.reshape(x.shape[:-3] + (-1,))
    for width in self.hidden:
      h = act(nn.Dense(width)(h))
    out = nn.Dense(2 * self.latent_dim)(h)
    mean, log_scale = jnp.split(out, 2, axis=-1)
    return Gaussian(mean, log_scale)


class MLPDecoder(nn.Module):
  """z -> the parameters of p_theta(x|z), one value per pixel (e.g. Bernoulli logits).

  Attributes:
    hidden: widths of the hidden layers (from z upwards).
    image_shape: (H, W, C) of x.
    activation: a name in :data:`ACTIVATIONS`.
  """

  hidden: Sequence[int]
  image_shape: tuple[int, int, int]
  activation: str = "relu"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Args: z ``[..., d]``. Returns: ``[..., H, W, C]`` per-pixel parameters."""
    act = ACTIVATIONS[self.activation]
    h = z
    for width in self.hidden:
      h = act(nn.Dense(width)(h))
    out = nn.Dense(math.prod(self.image_shape))(h)
    return out.reshape(z.shape[:-1] + tuple(self.image_shape))
