"""Strict numerics for every test (implicit rank promotion is an error, as in Equinox's suite), one XLA cache
per session."""

import atexit
import hashlib
import os
import shutil
import subprocess
import tempfile

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

# One XLA compilation cache for the session, shared with the jaxvae processes the tests start
# (they inherit the environment): the same small programs are compiled once, not in every process.
_CACHE = tempfile.mkdtemp(prefix="jaxvae-tests-xla-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.update(
  JAX_COMPILATION_CACHE_DIR=_CACHE,
  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def mnist():
  """The embedded MNIST, loaded once per session."""
  from jaxvae.runs.sources import load_mnist

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


@pytest.fixture(autouse=True)
def _fast_tier_stays_in_process(request, monkeypatch):
  """The fast tier (``pytest -m "not slow"``) runs in this process: a test that starts one belongs to the slow tier."""
  if request.node.get_closest_marker("slow") is not None:
    return

  def refuse(*args, **kwargs):
    raise AssertionError(f"{request.node.nodeid} starts a process: mark it @pytest.mark.slow (the slow tier)")

  monkeypatch.setattr(subprocess, "Popen", refuse)
