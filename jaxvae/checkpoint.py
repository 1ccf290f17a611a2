"""Checkpoints of the training state with orbax-checkpoint, in ``W/checkpoints/<epoch>/``.

Orbax writes each checkpoint to a temporary folder and renames it when complete,
so a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxvae.config import JaxvaeError

CHECKPOINT_DIR = "checkpoints"


def _manager(workdir: str, max_to_keep: int | None = None, read_only: bool = False) -> ocp.CheckpointManager:
  # Reading opens the manager without creating folders (orbax's read_only mode only adds warnings).
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)), options=options)


def save_checkpoint(workdir: str, epoch: int, state: Any, *, max_to_keep: int | None = 3) -> None:
  """Saves ``state`` (any pytree of arrays) as the checkpoint of ``epoch``; keeps the last ``max_to_keep``."""
  with _manager(workdir, max_to_keep) as manager:
    manager.save(epoch, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()


def latest_epoch(workdir: str) -> int | None:
  """The epoch of the newest complete checkpoint in ``workdir``, or None."""
  if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    return None
  with _manager(workdir, read_only=True) as manager:
    return manager.latest_step()


def restore_checkpoint(workdir: str, like: Any, epoch: int | None = None) -> tuple[Any, int]:
  """Restores the checkpoint of ``epoch`` (default: the newest) into the structure of ``like``.

  Args:
    workdir: the run folder.
    like: a pytree with the structure, shapes and dtypes of the saved state
      (e.g. a freshly initialised state; only its metadata is used).
    epoch: which checkpoint; None for the newest.

  Returns:
    ``(state, epoch)``.

  Raises:
    JaxvaeError: no checkpoint, or one that cannot be read or does not match ``like``.
  """
  found = latest_epoch(workdir)
  if found is None:
    raise JaxvaeError(
        f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}: train first with `jaxvae train --workdir {workdir}`"
    )
  epoch = found if epoch is None else epoch
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  try:
    with _manager(workdir, read_only=True) as manager:
      state = manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # orbax/tensorstore raise many types for damaged or mismatched files.
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise JaxvaeError(
        f"checkpoint {epoch} in {workdir} cannot be restored ({type(e).__name__}: {first}): "
        "it is damaged or from another config; retrain into a new --workdir"
    ) from None
  return state, epoch
