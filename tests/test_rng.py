"""The fused random draws: the same Threefry hash as jax.random, the right distributions."""

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxvae.core import rng
from jaxvae.core.data import dynamic_binarize


def test_bits_are_jax_threefry_of_the_element_index():
  key = jax.random.key(7)
  k0, k1 = jax.random.bits(key, (2,), jnp.uint32)
  n = 1000
  counts = jnp.concatenate([jnp.arange(n, dtype=jnp.uint32), jnp.zeros(n, jnp.uint32)])
  expected = jax.extend.random.threefry_2x32(jnp.stack([k0, k1]), counts)[:n]
  np.testing.assert_array_equal(rng.bits(key, (10, 100)).ravel(), expected)


def test_uniform_and_normal_have_the_right_distributions():
  u = np.asarray(rng.uniform(jax.random.key(0), (200_000,)))
  assert u.min() >= 0.0 and u.max() < 1.0
  assert stats.kstest(u, "uniform").pvalue > 1e-3
  z = np.asarray(rng.normal(jax.random.key(1), (200_000,)))
  assert np.all(np.isfinite(z))
  assert stats.kstest(z, "norm").pvalue > 1e-3
  assert not np.array_equal(rng.normal(jax.random.key(1), (10,)), rng.normal(jax.random.key(2), (10,)))


def test_dynamic_binarization_is_bernoulli_of_intensity_over_255():
  intensities = jnp.arange(256, dtype=jnp.uint8)
  images = jnp.broadcast_to(intensities[:, None, None, None], (256, 50, 40, 1))
  x = np.asarray(dynamic_binarize(jax.random.key(0), images))
  assert x.dtype == np.float32 and set(np.unique(x)) == {0.0, 1.0}
  p_hat = x.reshape(256, -1).mean(1)
  p = np.arange(256) / 255.0
  se = np.sqrt(p * (1 - p) / 2000) + 1e-12
  assert p_hat[0] == 0.0 and p_hat[255] == 1.0
  assert np.max(np.abs(p_hat - p) / se) < 5.0
  # A fresh key gives a fresh draw; the same key the same draw.
  again = np.asarray(dynamic_binarize(jax.random.key(0), images))
  other = np.asarray(dynamic_binarize(jax.random.key(1), images))
  np.testing.assert_array_equal(x, again)
  assert not np.array_equal(x, other)
