"""The same MLP VAE written five ways: Flax Linen, Flax NNX, Equinox, a pair of pure functions, Haiku.

784 -> 64 (ReLU) -> (mean, log sigma) of 2 latents; 2 -> 64 (ReLU) -> 784 Bernoulli logits. Every
way starts from the parameters Linen draws from the run's keys (``VAE.init(key)`` gives the encoder
``split(key, 3)[0]`` and the decoder ``split(key, 3)[1]``; a run's ``key`` is ``split(key(seed), 4)[0]``),
copied into the other libraries' layouts, so the five runs train the same model. Used by
tests/test_networks.py as ``--model tests/user_models/five_ways.py:linen`` (and ``nnx``, ``equinox``,
``functions``, ``haiku``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxvae

HIDDEN, LATENT = 64, 2


class LinenEncoder(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(HIDDEN, name="hidden")(x.reshape(x.shape[0], -1)))
    return jaxvae.Gaussian(nn.Dense(LATENT, name="mean")(h), nn.Dense(LATENT, name="log_sigma")(h))


class LinenDecoder(nn.Module):
  shape: tuple[int, ...]

  @nn.compact
  def __call__(self, z):
    h = nn.relu(nn.Dense(HIDDEN, name="hidden")(z))
    return nn.Dense(784, name="out")(h).reshape((z.shape[0],) + self.shape)


def linen_params(seed: int, data_shape: tuple[int, ...]):
  """The encoder's and the decoder's Linen parameters a run of ``seed`` draws."""
  k_enc, k_dec, _ = jax.random.split(jax.random.split(jax.random.key(seed), 4)[0], 3)
  enc = LinenEncoder().init(k_enc, jnp.zeros((1,) + data_shape))["params"]
  dec = LinenDecoder(data_shape).init(k_dec, jnp.zeros((1, LATENT)))["params"]
  return enc, dec


def _vae(encoder, decoder, data_shape):
  return jaxvae.VAE.from_modules(encoder, decoder, data_shape=data_shape, latent_dim=LATENT)


def linen(config, data_shape):
  return _vae(LinenEncoder(), LinenDecoder(tuple(data_shape)), data_shape)


def nnx(config, data_shape):
  from flax import nnx as fnnx

  enc_p, dec_p = linen_params(config.seed, tuple(data_shape))

  def dense(p):
    layer = fnnx.Linear(*p["kernel"].shape, rngs=fnnx.Rngs(0))
    layer.kernel[...], layer.bias[...] = p["kernel"], p["bias"]
    return layer

  class Encoder(fnnx.Module):
    def __init__(self):
      self.hidden, self.mean, self.log_sigma = (dense(enc_p[n]) for n in ("hidden", "mean", "log_sigma"))

    def __call__(self, x):
      h = fnnx.relu(self.hidden(x.reshape(x.shape[0], -1)))
      return jaxvae.Gaussian(self.mean(h), self.log_sigma(h))

  class Decoder(fnnx.Module):
    def __init__(self):
      self.hidden, self.out = dense(dec_p["hidden"]), dense(dec_p["out"])

    def __call__(self, z):
      return self.out(fnnx.relu(self.hidden(z))).reshape((z.shape[0],) + tuple(data_shape))

  return _vae(Encoder(), Decoder(), data_shape)


def equinox(config, data_shape):
  import equinox as eqx

  enc_p, dec_p = linen_params(config.seed, tuple(data_shape))

  def dense(p):
    n_in, n_out = p["kernel"].shape
    layer = eqx.nn.Linear(n_in, n_out, key=jax.random.key(0))
    return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (p["kernel"].T, p["bias"]))

  class Encoder(eqx.Module):  # one example at a time, as Equinox layers are written
    hidden: eqx.nn.Linear
    mean: eqx.nn.Linear
    log_sigma: eqx.nn.Linear

    def __call__(self, x):
      h = jax.nn.relu(self.hidden(x.reshape(-1)))
      return jaxvae.Gaussian(self.mean(h), self.log_sigma(h))

  class Decoder(eqx.Module):
    hidden: eqx.nn.Linear
    out: eqx.nn.Linear

    def __call__(self, z):
      return self.out(jax.nn.relu(self.hidden(z))).reshape(tuple(data_shape))

  encoder = Encoder(*(dense(enc_p[n]) for n in ("hidden", "mean", "log_sigma")))
  return _vae(encoder, Decoder(dense(dec_p["hidden"]), dense(dec_p["out"])), data_shape)


def functions(config, data_shape):
  def dense(p, x):
    return x @ p["kernel"] + p["bias"][None]

  def encoder_apply(p, x):
    h = jax.nn.relu(dense(p["hidden"], x.reshape(x.shape[0], -1)))
    return jaxvae.Gaussian(dense(p["mean"], h), dense(p["log_sigma"], h))

  def decoder_apply(p, z):
    return dense(p["out"], jax.nn.relu(dense(p["hidden"], z))).reshape((z.shape[0],) + tuple(data_shape))

  def encoder_init(key, x):
    return LinenEncoder().init(key, x)["params"]

  def decoder_init(key, z):
    return LinenDecoder(tuple(data_shape)).init(key, z)["params"]

  return _vae((encoder_init, encoder_apply), (decoder_init, decoder_apply), data_shape)


def haiku(config, data_shape):
  import haiku as hk

  enc_p, dec_p = linen_params(config.seed, tuple(data_shape))

  def encoder(x):
    h = jax.nn.relu(hk.Linear(HIDDEN, name="hidden")(x.reshape(x.shape[0], -1)))
    return jaxvae.Gaussian(hk.Linear(LATENT, name="mean")(h), hk.Linear(LATENT, name="log_sigma")(h))

  def decoder(z):
    h = jax.nn.relu(hk.Linear(HIDDEN, name="hidden")(z))
    return hk.Linear(784, name="out")(h).reshape((z.shape[0],) + tuple(data_shape))

  def copied(transformed, linen_p):  # Haiku's init, with Linen's values in Haiku's names
    def init(key, x):
      del key, x
      return {name: {"w": p["kernel"], "b": p["bias"]} for name, p in linen_p.items()}

    return init, transformed.apply

  enc, dec = hk.without_apply_rng(hk.transform(encoder)), hk.without_apply_rng(hk.transform(decoder))
  return _vae(copied(enc, enc_p), copied(dec, dec_p), data_shape)


WAYS = ("linen", "nnx", "equinox", "functions", "haiku")
