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


def _gaussian_mlp(h: jax.Array, hidden: Sequence[int], out_dim: int, activation: str) -> Gaussian:
  """Dense layers inside the calling module's ``@nn.compact`` scope: h -> (mu, log sigma)."""
  act = ACTIVATIONS[activation]
  for width in hidden:
    h = act(nn.Dense(width)(h))
  mean, log_scale = jnp.split(nn.Dense(2 * out_dim)(h), 2, axis=-1)
  return Gaussian(mean, log_scale)


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
    return _gaussian_mlp(x.reshape(x.shape[:-3] + (-1,)), self.hidden, self.latent_dim, self.activation)


class GaussianMLP(nn.Module):
  """u -> (mu, log sigma) of a diagonal Gaussian over v: a conditional Gaussian layer p(v|u) or q(v|u).

  Burda et al. (2016) use it between stochastic layers: q(z2|z1) and p(z1|z2).

  Attributes:
    hidden: widths of the hidden layers.
    out_dim: the size of v.
    activation: a name in :data:`ACTIVATIONS`.
  """

  hidden: Sequence[int]
  out_dim: int
  activation: str = "tanh"

  @nn.compact
  def __call__(self, u: jax.Array) -> Gaussian:
    """Args: u ``[..., d_in]``. Returns: a :class:`Gaussian` with ``[..., out_dim]`` fields."""
    return _gaussian_mlp(u, self.hidden, self.out_dim, self.activation)


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
