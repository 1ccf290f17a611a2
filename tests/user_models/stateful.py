"""An MLP VAE whose encoder has batch normalization and dropout, in Flax Linen and in Flax NNX.

784 -> 128 -> BatchNorm -> ReLU -> Dropout(0.2) -> (mean, log sigma) of 4 latents; the decoder a
plain MLP 4 -> 128 -> 784. The Linen encoder learns whether it is training from its ``train``
argument; the NNX encoder from ``module.train()`` / ``module.eval()``, which jaxvae calls. Used by
tests/test_networks.py as ``--model tests/user_models/stateful.py:linen`` (or ``:nnx``).
"""

from __future__ import annotations

import flax.linen as nn
from flax import nnx as fnnx

import jaxvae

HIDDEN, LATENT, DROPOUT = 128, 4, 0.2


class LinenEncoder(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Dense(HIDDEN)(x.reshape(x.shape[0], -1))
    h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h))
    h = nn.Dropout(DROPOUT, deterministic=not train)(h)
    return jaxvae.Gaussian(nn.Dense(LATENT)(h), nn.Dense(LATENT)(h))


class LinenDecoder(nn.Module):
  shape: tuple[int, ...]

  @nn.compact
  def __call__(self, z):
    return nn.Dense(784)(nn.relu(nn.Dense(HIDDEN)(z))).reshape((z.shape[0],) + self.shape)


class NNXEncoder(fnnx.Module):
  def __init__(self, rngs: fnnx.Rngs):
    self.hidden = fnnx.Linear(784, HIDDEN, rngs=rngs)
    self.norm = fnnx.BatchNorm(HIDDEN, momentum=0.9, rngs=rngs)
    self.dropout = fnnx.Dropout(DROPOUT, rngs=rngs)
    self.mean = fnnx.Linear(HIDDEN, LATENT, rngs=rngs)
    self.log_sigma = fnnx.Linear(HIDDEN, LATENT, rngs=rngs)

  def __call__(self, x):
    h = self.dropout(fnnx.relu(self.norm(self.hidden(x.reshape(x.shape[0], -1)))))
    return jaxvae.Gaussian(self.mean(h), self.log_sigma(h))


class NNXDecoder(fnnx.Module):
  def __init__(self, shape: tuple[int, ...], rngs: fnnx.Rngs):
    self.shape = shape
    self.hidden = fnnx.Linear(LATENT, HIDDEN, rngs=rngs)
    self.out = fnnx.Linear(HIDDEN, 784, rngs=rngs)

  def __call__(self, z):
    return self.out(fnnx.relu(self.hidden(z))).reshape((z.shape[0],) + self.shape)


def linen(config, data_shape):
  return jaxvae.VAE.from_modules(
    LinenEncoder(), LinenDecoder(tuple(data_shape)), data_shape=data_shape, latent_dim=LATENT
  )


def nnx(config, data_shape):
  rngs = fnnx.Rngs(config.seed)
  encoder, decoder = NNXEncoder(rngs), NNXDecoder(tuple(data_shape), rngs)
  return jaxvae.VAE.from_modules(encoder, decoder, data_shape=data_shape, latent_dim=LATENT)
