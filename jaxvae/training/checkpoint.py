"""Checkpoints of a run with orbax-checkpoint, in ``W/checkpoints/<epoch>/``.

A checkpoint holds everything that continues a run exactly: the :class:`TrainState`
(parameters, optimizer state, step, hyperparameters, skip counter) and the run's training
key; the data order of epoch e is drawn from ``fold_in(train_key, e)``, so the epoch
number is the position in the data. Orbax writes each checkpoint to a temporary folder
and renames it when complete, so a run killed mid-save keeps its previous checkpoints.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sys
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxvae.errors import JaxvaeError, first_line
from jaxvae.training.devices import all_processes_max

CHECKPOINT_DIR = "checkpoints"


def _ocp():
  """orbax-checkpoint, imported when a checkpoint is first read or written (``import jaxvae`` does not load it)."""
  import orbax.checkpoint as ocp

  return ocp


# tensorstore reports a failed file write as an error whose message names the errno.
_OS_ERROR_CODE = re.compile(r"os_error_code='(\d+)'")


def _as_os_error(error: BaseException | None) -> OSError | None:
  """A failed write of orbax/tensorstore as the :class:`OSError` it reports (None for any other error)."""
  while error is not None:
    if isinstance(error, OSError) and error.errno is not None:
      return error
    code = _OS_ERROR_CODE.search(str(error))
    if code:
      return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
    error = error.__cause__ or error.__context__
  return None


@contextlib.contextmanager
def _writes():
  """Raises a failed checkpoint write as an :class:`OSError` with its errno, whatever type orbax gave it."""
  try:
    yield
  except OSError:
    raise
  except Exception as e:
    os_error = _as_os_error(e)
    if os_error is None:
      raise
    raise os_error from e


class _MuteFailedWrites(logging.Filter):
  """Drops orbax's log records of a failed background write: the next save raises it as an OSError."""

  def filter(self, record):
    if record.exc_info and _as_os_error(record.exc_info[1]) is not None:
      return False
    return "os_error_code=" not in record.getMessage()


def _directory(workdir: str) -> str:
  return os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))


class Checkpointer:
  """Saves the checkpoints of one run, keeping the newest ``keep``; saves run in the background.

  A write that fails (a full disk, a quota) raises an :class:`OSError` naming the reason: before
  anything is written when the checkpoint does not fit, else from the next save or from
  :meth:`close`. The earlier checkpoints stay intact (orbax renames a checkpoint into place once
  it is complete).

  Example:
    >>> ckpt = Checkpointer(workdir, keep=3)
    >>> ckpt.save(epoch, state, train_key)   # returns once the arrays are copied to the host
    >>> ckpt.close()                         # waits for the writes
  """

  def __init__(self, workdir: str, keep: int = 3):
    options = _ocp().CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
    self._directory = _directory(workdir)
    self._manager = _ocp().CheckpointManager(self._directory, options=options)
    self._muted = _MuteFailedWrites()
    logging.getLogger("absl").addFilter(self._muted)

  def save(self, epoch: int, state: Any, train_key: jax.Array) -> None:
    """Starts writing checkpoint ``epoch``.

    Raises:
      OSError: ``ENOSPC`` before anything is written when the disk has less room than the
        checkpoint's arrays (a write that fails later, in the background, raises at the next
        save or at :meth:`close`).
    """
    # Host copies: the device buffers are donated to the next epoch while orbax writes.
    payload = {"state": jax.device_get(state), "train_key": np.asarray(jax.random.key_data(train_key))}
    needed = sum(np.asarray(a).nbytes for a in jax.tree.leaves(payload)) + (1 << 20)
    free = _free_bytes(self._directory) if jax.process_index() == 0 else needed  # process 0 writes the arrays
    if all_processes_max(int(free < needed)):  # every process of a job stops, not process 0 alone
      error = OSError(
        errno.ENOSPC,
        f"No space left on device: checkpoint {epoch} needs {needed / 2**20:.1f} MB, {free / 2**20:.1f} MB free",
      )
      error.everywhere = True
      raise error
    with _writes():
      self._manager.save(epoch, args=_ocp().args.StandardSave(payload))

  def wait(self) -> None:
    with _writes():
      self._manager.wait_until_finished()

  def close(self) -> None:
    try:
      with _writes():
        self._manager.wait_until_finished()
        self._manager.close()
    finally:
      logging.getLogger("absl").removeFilter(self._muted)


def _free_bytes(path: str) -> int:
  """Free bytes on the filesystem that holds ``path`` (or would hold it: its nearest existing parent)."""
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return shutil.disk_usage(path).free


def save_checkpoint(workdir: str, epoch: int, state: Any, train_key: jax.Array | None = None, *, keep: int = 3) -> None:
  """Saves one checkpoint and waits for it (``train_key`` defaults to the key of seed 0)."""
  ckpt = Checkpointer(workdir, keep)
  ckpt.save(epoch, state, train_key if train_key is not None else jax.random.key(0))
  ckpt.close()


def latest_epoch(workdir: str) -> int | None:
  """The epoch of the newest complete checkpoint in ``workdir``, or None."""
  if not os.path.isdir(_directory(workdir)):
    return None
  options = _ocp().CheckpointManagerOptions(create=False)
  with _ocp().CheckpointManager(_directory(workdir), options=options) as manager:
    return manager.latest_step()


class Restored(NamedTuple):
  """A restored checkpoint: the state, its epoch and the run's training key."""

  state: Any
  epoch: int
  train_key: jax.Array


def _restore(workdir: str, epoch: int | None, abstract: Any, check=lambda payload: None) -> tuple[Any, int]:
  """The payload of checkpoint ``epoch`` (default: the newest), restored into ``abstract`` (None: as saved)."""
  found = latest_epoch(workdir)
  if found is None:
    raise JaxvaeError(
      f"no checkpoint in {_directory(workdir)}: the run saved none yet; "
      f"`jaxvae train --resume {workdir}` trains it from its first epoch"
    )
  epoch = found if epoch is None else epoch
  try:
    ocp = _ocp()
    with ocp.CheckpointManager(_directory(workdir), options=ocp.CheckpointManagerOptions(create=False)) as manager:
      payload = manager.restore(epoch, args=_ocp().args.StandardRestore(abstract))
    check(payload)
  except Exception as e:  # orbax/tensorstore raise many types for damaged or mismatched files.
    raise JaxvaeError(
      f"checkpoint {epoch} in {workdir} cannot be restored ({type(e).__name__}: {first_line(e, 160)}): "
      "it is damaged or from another model or config; retrain into a new --workdir"
    ) from None
  return payload, int(epoch)


def restore_checkpoint(workdir: str, like: Any, epoch: int | None = None) -> Restored:
  """Restores the checkpoint of ``epoch`` (default: the newest) into the structure of ``like``.

  Args:
    workdir: the run folder.
    like: a state with the structure, shapes and dtypes of the saved one (e.g. a
      freshly initialised state; only its metadata is used).
    epoch: which checkpoint; None for the newest.

  Returns:
    :class:`Restored`.

  Raises:
    JaxvaeError: no checkpoint, or one that cannot be read or does not match ``like``.
  """
  key_like = np.asarray(jax.random.key_data(jax.random.key(0)))
  abstract = jax.tree.map(_ocp().utils.to_shape_dtype_struct, {"state": like, "train_key": key_like})
  if epoch is None:
    payload, epoch = _newest_intact(workdir, abstract)
  else:
    payload, epoch = _restore(workdir, epoch, abstract)
  return Restored(payload["state"], epoch, jax.random.wrap_key_data(payload["train_key"]))


DAMAGED_DIR = "damaged-checkpoints"


def _newest_intact(workdir: str, abstract: Any) -> tuple[Any, int]:
  """The newest checkpoint that restores; newer damaged ones are moved to ``W/damaged-checkpoints``.

  A checkpoint cut off half-written (truncated or missing files) is skipped with one line on
  stderr naming it, for the previous intact one; it is moved aside, not deleted, so that the
  resumed run can write its epoch again. If none restores, the newest one's error is raised
  (a checkpoint of another model or config fails every time: nothing is moved then).
  """
  with _ocp().CheckpointManager(_directory(workdir), options=_ocp().CheckpointManagerOptions(create=False)) as manager:
    steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    _restore(workdir, None, abstract)  # raises the "no checkpoint" error
  damaged, first_error = [], None
  for step in steps:
    try:
      payload, epoch = _restore(workdir, step, abstract)
    except JaxvaeError as e:
      damaged.append(step)
      first_error = first_error or e
      continue
    if damaged:
      os.makedirs(os.path.join(workdir, DAMAGED_DIR), exist_ok=True)
      for bad in damaged:
        os.replace(os.path.join(_directory(workdir), str(bad)), os.path.join(workdir, DAMAGED_DIR, str(bad)))
      print(
        f"jaxvae: checkpoint {', '.join(map(str, damaged))} in {workdir} cannot be restored (moved to "
        f"{DAMAGED_DIR}/): resuming from checkpoint {epoch}",
        file=sys.stderr,
        flush=True,
      )
    return payload, epoch
  raise first_error


def restore_params(workdir: str, like: Any, epoch: int | None = None) -> tuple[Any, int]:
  """The model parameters of a checkpoint (default: the newest), whatever objective and optimizer trained them.

  Reads the checkpoint without a target and takes its ``state.params`` (the EMA's,
  ``state.ema.params``, where the run kept one: those are the ones a run evaluates), which must have the
  structure and shapes of ``like`` (e.g. ``vae.init(key)``); evaluation needs nothing else.

  Returns:
    ``(params, epoch)``, the parameters in the dtypes of ``like``.

  Raises:
    JaxvaeError: no checkpoint, or one that cannot be read or holds other parameters.
  """

  def evaluated(state):  # the EMA's parameters where the run kept an average (TrainState.ema)
    ema = state.get("ema") if isinstance(state, dict) else None
    return ema["params"] if isinstance(ema, dict) and "params" in ema else state["params"]

  def check(payload):
    params = evaluated(payload["state"])
    if jax.tree.structure(params) != jax.tree.structure(like):
      raise ValueError(f"parameters {jax.tree.structure(params)} where the model has {jax.tree.structure(like)}")
    shapes = [(np.shape(a), np.shape(b)) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(like))]
    if any(a != b for a, b in shapes):
      raise ValueError(f"parameter shapes {[a for a, _ in shapes]} where the model has {[b for _, b in shapes]}")

  payload, epoch = _restore(workdir, epoch, None, check)
  return jax.tree.map(lambda a, b: np.asarray(a, np.asarray(b).dtype), evaluated(payload["state"]), like), epoch
