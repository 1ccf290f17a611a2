"""Strict numerics for every test: implicit rank promotion is an error (as in Equinox's suite)."""

import hashlib
import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def mnist():
  """The embedded MNIST, loaded once per session."""
  from jaxvae.data import load_mnist

  return load_mnist()


def _snapshot(folder):
  """{relative path: (sha256, mtime_ns)} of every file under ``folder``."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns)
  return out


@pytest.fixture
def snapshot():
  """The contents of a folder, to check that a refused command left it untouched."""
  return _snapshot
