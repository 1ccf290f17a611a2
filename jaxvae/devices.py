"""Where arrays live: device meshes for sweeps and data parallelism, and multi-process set-up.

* A sweep's models axis is sharded over a 1-D :class:`jax.sharding.Mesh` named ``"models"``
  (:func:`model_mesh`), the data replicated: the same program, placed.
* One big model uses data parallelism (:func:`data_parallel_shardings`): every batch is split
  over a mesh named ``"data"``, the parameters and data replicated; XLA partitions the step
  and sums the gradients.
* Across hosts, :func:`initialize_distributed` calls ``jax.distributed.initialize()`` when it
  finds a cluster environment, and :func:`replicate` builds global arrays from the data every
  process holds.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxvae.errors import JaxvaeError


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


def replicate(tree: Any, replicated: NamedSharding) -> Any:
  """Host arrays that every process holds whole, as global arrays replicated on every device."""
  return jax.tree.map(lambda a: jax.make_array_from_process_local_data(replicated, np.asarray(a)), tree)


def initialize_distributed() -> bool:
  """Calls ``jax.distributed.initialize()`` when a multi-process cluster environment is present.

  Recognised: an explicit coordinator (``JAX_COORDINATOR_ADDRESS``), a SLURM job step with
  more than one task, an Open MPI job with more than one rank, and a multi-host Cloud TPU
  slice; JAX then reads the process count and ids from that environment. Returns whether
  it initialised. Call it before any other JAX call.
  """
  env = os.environ
  multi = (
      "JAX_COORDINATOR_ADDRESS" in env
      or int(env.get("SLURM_NTASKS", "1")) > 1
      or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
      or "," in env.get("TPU_WORKER_HOSTNAMES", "")
  )
  if multi:
    jax.distributed.initialize()
  return multi
