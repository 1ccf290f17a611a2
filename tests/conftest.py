"""Strict numerics for every test: implicit rank promotion is an error (as in Equinox's suite)."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def mnist():
  """The embedded MNIST, loaded once per session."""
  from jaxvae.data import load_mnist

  return load_mnist()
