"""Flax Linen networks: the encoder of q_phi(z|x) and the decoder of p_theta(x|z).

The networks only map arrays to distribution parameters; which distribution those
parameters define lives in :mod:`jaxvae.core.likelihoods`, :mod:`jaxvae.core.priors` and
:mod:`jaxvae.core.posteriors`. Each takes one batch axis (``[B, ...]``), as
:meth:`jaxvae.VAE.from_modules` calls them; a network of your own does the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae.core.distributions import Gaussian

#: The activations the built-in networks take by name (``--activation``).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  "relu": nn.relu,
  "tanh": jnp.tanh,
  "elu": nn.elu,
  "softplus": nn.softplus,
}


def _gaussian_mlp(h: jax.Array, hidden: Sequence[int], out_dim: int, activation: str, context_dim: int = 0):
  """Dense layers inside the calling module's ``@nn.compact`` scope: h -> (mu, log sigma)
  (and a context vector from the last hidden layer, if ``context_dim``)."""
  act = ACTIVATIONS[activation]
  for width in hidden:
    h = act(nn.Dense(width)(h))
  return _head(h, out_dim, context_dim)


def _head(h: jax.Array, out_dim: int, context_dim: int):
  mean, log_scale = jnp.split(nn.Dense(2 * out_dim)(h), 2, axis=-1)
  if context_dim:
    return Gaussian(mean, log_scale), nn.Dense(context_dim)(h)
  return Gaussian(mean, log_scale)


class MLPEncoder(nn.Module):
  """x -> (mu, log sigma) of the diagonal Gaussian q_phi(z|x).

  Kingma & Welling (2014), Appendix C.2: h = act(W_h x + b_h);
  mu = W_mu h + b_mu; log sigma = W_sigma h + b_sigma.

  Attributes:
    hidden: widths of the hidden layers.
    latent_dim: d, the size of z.
    activation: a name in :data:`ACTIVATIONS`.
    context_dim: if > 0, also return a context h(x) = W_c h + b_c of this size (for a flow
      posterior, :func:`jaxvae.core.flows.iaf`).
  """

  hidden: Sequence[int]
  latent_dim: int
  activation: str = "relu"
  context_dim: int = 0

  @nn.compact
  def __call__(self, x: jax.Array):
    """Args: x ``[B, ...]`` (images or vectors). Returns: a :class:`Gaussian` with ``[B, d]``
    fields (with ``context_dim``: the pair (Gaussian, context ``[B, context_dim]``))."""
    return _gaussian_mlp(
      x.reshape(x.shape[:1] + (-1,)), self.hidden, self.latent_dim, self.activation, self.context_dim
    )


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
  """z -> the raw parameters of p_theta(x|z), e.g. one Bernoulli logit per pixel.

  Attributes:
    hidden: widths of the hidden layers (from z upwards).
    out_shape: the output per example, the likelihood's ``output_shape`` (e.g. (28, 28, 1)).
    activation: a name in :data:`ACTIVATIONS`.
  """

  hidden: Sequence[int]
  out_shape: tuple[int, ...]
  activation: str = "relu"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Args: z ``[..., d]``. Returns: ``[..., *out_shape]``."""
    act = ACTIVATIONS[self.activation]
    h = z
    for width in self.hidden:
      h = act(nn.Dense(width)(h))
    out = nn.Dense(math.prod(self.out_shape))(h)
    return out.reshape(z.shape[:-1] + tuple(self.out_shape))


class ConvEncoder(nn.Module):
  """x -> (mu, log sigma) of q_phi(z|x) through strided convolutions.

  Each width in ``channels`` is a 4x4 convolution with stride 2 (H and W halve), then
  the features are flattened into a Dense layer to 2d outputs.

  Attributes:
    channels: widths of the convolutions, e.g. (32, 64): 28x28 -> 14x14x32 -> 7x7x64.
    latent_dim: d.
    activation: a name in :data:`ACTIVATIONS`.
    context_dim: if > 0, also return a context h(x) of this size (see :class:`MLPEncoder`).
  """

  channels: Sequence[int]
  latent_dim: int
  activation: str = "relu"
  context_dim: int = 0

  @nn.compact
  def __call__(self, x: jax.Array):
    """Args: x ``[..., H, W, C]``. Returns: a :class:`Gaussian` with ``[..., d]`` fields (and a context)."""
    act = ACTIVATIONS[self.activation]
    lead = x.shape[:-3]
    h = x.reshape((-1,) + x.shape[-3:])
    for width in self.channels:
      h = act(nn.Conv(width, (4, 4), strides=(2, 2), padding="SAME")(h))
    return _head(h.reshape(lead + (-1,)), self.latent_dim, self.context_dim)


class ConvDecoder(nn.Module):
  """z -> per-pixel parameters of p_theta(x|z): upsampling by resize + convolution.

  A Dense layer maps z to an (H / 2^L) x (W / 2^L) x channels[0] grid; each width in
  ``channels`` doubles H and W by nearest-neighbour resizing followed by a 3x3 convolution
  (resize + conv: no checkerboard artefacts, Odena et al. 2016, and on XLA's CPU backend an
  order of magnitude faster to differentiate than a stride-2 transposed convolution); a
  1x1 convolution gives the F output features per pixel.

  Attributes:
    channels: widths, e.g. (64, 32): 7x7x64 -> 14x14x64 -> 28x28x32 -> 28x28xF.
    out_shape: (H, W, F).
    activation: a name in :data:`ACTIVATIONS`.
  """

  channels: Sequence[int]
  out_shape: tuple[int, int, int]
  activation: str = "relu"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Args: z ``[..., d]``. Returns: ``[..., H, W, F]``."""
    act = ACTIVATIONS[self.activation]
    h_out, w_out, features = self.out_shape
    scale = 2 ** len(self.channels)
    lead = z.shape[:-1]
    h = act(nn.Dense((h_out // scale) * (w_out // scale) * self.channels[0])(z.reshape(-1, z.shape[-1])))
    h = h.reshape((-1, h_out // scale, w_out // scale, self.channels[0]))
    for width in self.channels:
      b, hh, ww, c = h.shape
      h = jnp.broadcast_to(h[:, :, None, :, None, :], (b, hh, 2, ww, 2, c)).reshape(b, 2 * hh, 2 * ww, c)
      h = act(nn.Conv(width, (3, 3), padding="SAME")(h))
    out = nn.Dense(features)(h)
    return out.reshape(lead + tuple(self.out_shape))
