"""Where arrays live: device meshes for sweeps and data parallelism, and multi-process set-up.

* A sweep's models axis is sharded over a 1-D :class:`jax.sharding.Mesh` named ``"models"``
  (:func:`model_mesh`), the data replicated: the same program, placed.
* One big model uses data parallelism (:func:`data_parallel_shardings`): every batch is split
  over a mesh named ``"data"``, the parameters and data replicated; XLA partitions the step
  and sums the gradients.
* Across processes (hosts, or ``jaxvae launch`` on one machine), :func:`initialize_distributed`
  calls ``jax.distributed.initialize()`` when it finds a job environment, :func:`place` builds
  global arrays from the data every process holds, :func:`to_host` brings them back, and
  :func:`on_process_0` and :func:`all_processes_max` keep the processes in step.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxvae.errors import JaxvaeError, PeerLost, first_line


def model_mesh(devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all) whose axis is named ``"models"``."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("models",))


def model_shardings(devices=None) -> tuple[NamedSharding, NamedSharding]:
  """``(stacked, replicated)``: the models axis over ``devices``, and a copy on every device."""
  mesh = model_mesh(devices)
  return NamedSharding(mesh, P("models")), NamedSharding(mesh, P())


def data_parallel_shardings(batch_size: int, devices=None) -> tuple[NamedSharding, NamedSharding]:
  """``(batch_sharding, replicated)`` for data parallelism over all devices.

  Batches are split along their first axis over a 1-D mesh named ``"data"``; the
  parameters, optimizer state and dataset are replicated. Under ``jit`` XLA partitions
  the step and all-reduces the gradients: the update is the single-device update up to
  the order of the floating-point sums.
  """
  devices = np.asarray(devices if devices is not None else jax.devices())
  if batch_size % devices.size:
    raise JaxvaeError(
      f"batch_size={batch_size} does not split over {devices.size} devices: use a multiple of {devices.size}"
    )
  mesh = Mesh(devices, ("data",))
  return NamedSharding(mesh, P("data")), NamedSharding(mesh, P())


def place(tree: Any, sharding: NamedSharding) -> Any:
  """Host values that every process holds whole, as global arrays laid out by ``sharding``.

  One process: ``jax.device_put``. Several: each process builds its own shards from its
  copy (``jax.make_array_from_callback``), which works for any sharding; PRNG keys go as their data.
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def one(a):
    if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(a)), impl=jax.random.key_impl(a))
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

  return jax.tree.map(one, tree)


# How long the JAX coordination service waits for a silent process before it declares it dead
# (JAX's default is 100 s). A process killed outright is noticed at once by the collective
# it leaves hanging (:class:`jaxvae.errors.PeerLost`); this bounds the other cases.
HEARTBEAT_SECONDS = 30
# The variables of a job started by hand or by ``jaxvae launch`` (JAX reads the coordinator
# address itself; the process count and index have no JAX variable outside a cluster manager).
NUM_PROCESSES, PROCESS_ID = "JAXVAE_NUM_PROCESSES", "JAXVAE_PROCESS_ID"


def initialize_distributed() -> bool:
  """Calls ``jax.distributed.initialize()`` when a multi-process job environment is present.

  Recognised: ``jaxvae launch`` (or by hand: ``JAX_COORDINATOR_ADDRESS``,
  ``JAXVAE_NUM_PROCESSES``, ``JAXVAE_PROCESS_ID``), a SLURM job step with more than one task,
  an Open MPI job with more than one rank, and a multi-host Cloud TPU slice (JAX reads those
  environments itself). CPU devices talk through gloo collectives. Returns whether it
  initialised. Call it before any other JAX call.

  Raises:
    JaxvaeError: a coordinator address without the process count and index.
  """
  env = os.environ
  explicit = {}
  if NUM_PROCESSES in env or PROCESS_ID in env:
    try:
      explicit = dict(num_processes=int(env[NUM_PROCESSES]), process_id=int(env[PROCESS_ID]))
    except (KeyError, ValueError):
      raise JaxvaeError(
        f"set both {NUM_PROCESSES} and {PROCESS_ID} to integers (or start the job with `jaxvae launch`)"
      ) from None
    if "JAX_COORDINATOR_ADDRESS" not in env:
      raise JaxvaeError(f"{NUM_PROCESSES} is set but not JAX_COORDINATOR_ADDRESS: set it to HOST:PORT of process 0")
    if explicit["num_processes"] < 2:
      return False
  elif "JAX_COORDINATOR_ADDRESS" in env and not _cluster(env):
    raise JaxvaeError(f"JAX_COORDINATOR_ADDRESS is set without {NUM_PROCESSES} and {PROCESS_ID}: set them too")
  elif not _cluster(env):
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.config.update("jax_enable_preemption_service", False)
  jax.distributed.initialize(**explicit, heartbeat_timeout_seconds=HEARTBEAT_SECONDS)
  return True


def _cluster(env) -> bool:
  return (
    int(env.get("SLURM_NTASKS", "1")) > 1
    or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    or "," in env.get("TPU_WORKER_HOSTNAMES", "")
  )


def all_processes_max(value: int) -> int:
  """The largest of ``value`` over all processes (each passes its own; one tiny collective)."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils

  return int(np.max(multihost_utils.process_allgather(np.int32(value))))


def on_process_0(fn):
  """Runs ``fn()`` on process 0 only; every process then returns or raises as process 0 did.

  The run folder is written by process 0 alone; when it refuses one (a :class:`JaxvaeError`),
  the other processes must not wait for it in the next collective.
  """
  if jax.process_count() == 1:
    return fn()
  from jax.experimental import multihost_utils

  error = None
  if jax.process_index() == 0:
    try:
      fn()
    except JaxvaeError as e:
      error = e
  ok = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
  if error is not None:
    raise error
  if not ok:
    raise JaxvaeError("process 0 refused the run folder (its error names the fix)")


def to_host(tree: Any) -> Any:
  """``jax.device_get``, for arrays spread over several processes too (then a collective: call it on every process)."""
  leaves = jax.tree.leaves(tree)
  if all(not isinstance(a, jax.Array) or a.is_fully_addressable or a.is_fully_replicated for a in leaves):
    return jax.device_get(tree)
  from jax.experimental import multihost_utils

  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


@contextlib.contextmanager
def watch_peers():
  """In a job of several processes, raises :class:`jaxvae.errors.PeerLost` (exit status 4) when a collective fails.

  Every collective of a run (the all-reduce in a data-parallel step, the gathers of
  :func:`to_host`, the barriers of checkpoints and of :func:`on_process_0`) fails with JAX's
  runtime error when another process of the job was killed, crashed or ran out of memory: this
  process then stops at once, with one line, rather than wait for a process that is gone.
  """
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if not jax.distributed.is_initialized() or jax.process_count() == 1:
      raise
    raise PeerLost(
      f"jaxvae: error: process {jax.process_index()} of {jax.process_count()} lost the job ({type(e).__name__}: "
      f"{first_line(e)}): another process stopped or died, see its output; restart the job with --resume"
    ) from e
