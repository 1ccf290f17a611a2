"""My own VAE: q_phi(z|x) and p_theta(x|z) as two small Linen modules, trained by jaxvae as it is.

  jaxvae train --model examples/own_model/my_models.py:make_vae --epochs 10 --workdir runs/mine

jaxvae imports this file, calls ``make_vae`` with the run's config and the shape of one
example, and trains, checkpoints, resumes, evaluates and sweeps the VAE it returns. The
reference goes into ``runs/mine/config.json``, so ``--resume`` and ``jaxvae eval`` rebuild it.
"""

import math

import flax.linen as nn

import jaxvae


class Encoder(nn.Module):
  """q_phi(z|x) = N(mu_phi(x), diag sigma_phi(x)^2): a residual MLP with layer norm."""

  latent_dim: int
  width: int = 256

  @nn.compact
  def __call__(self, x):  # x: [B, 28, 28, 1], binarized pixels
    h = nn.gelu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))
    h = h + nn.gelu(nn.Dense(self.width)(nn.LayerNorm()(h)))
    return jaxvae.Gaussian(mean=nn.Dense(self.latent_dim)(h), log_scale=nn.Dense(self.latent_dim)(h))


class Decoder(nn.Module):
  """p_theta(x|z): a Bernoulli logit for every pixel, from the same kind of network."""

  out_shape: tuple
  width: int = 256

  @nn.compact
  def __call__(self, z):  # z: [B, d]
    h = nn.gelu(nn.Dense(self.width)(z))
    h = h + nn.gelu(nn.Dense(self.width)(nn.LayerNorm()(h)))
    return nn.Dense(math.prod(self.out_shape))(h).reshape((z.shape[0], *self.out_shape))


def make_vae(config, data_shape):
  """The factory jaxvae calls: ``--latent-dim`` (default 16 here) sets d."""
  latent_dim = config.latent_dim or 16
  return jaxvae.VAE.from_modules(
    Encoder(latent_dim),
    Decoder(tuple(data_shape)),
    data_shape=data_shape,
    latent_dim=latent_dim,
    likelihood="bernoulli",
    prior="normal",
  )
