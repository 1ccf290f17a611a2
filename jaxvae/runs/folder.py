"""The run folder: its claim, its files, and what happens when a write to it fails.

``W/config.json`` (the resolved config), ``W/metrics.jsonl`` (one row per epoch),
``W/summary.json`` and ``W/checkpoints/<epoch>/`` (:mod:`jaxvae.training.checkpoint`). The JSON
files are replaced atomically (a temporary file, then a rename), and a ``metrics.jsonl`` line cut
off by a kill or a full disk is dropped when the folder is read back, so a run killed at any
moment leaves a folder that resumes. A new folder is claimed atomically (:func:`prepare_workdir`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from typing import Any

from jaxvae.errors import JaxvaeError, WriteFailed, option
from jaxvae.runs.config import RESUMABLE, Config
from jaxvae.training.checkpoint import latest_epoch

#: The file that claims a run or sweep folder, naming the process that created it (host, pid, time).
CLAIM = ".claimed"


def prepare_workdir(workdir: str, overwrite: bool = False) -> None:
  """Creates and claims the run folder; refuses (changing nothing) if it exists and is not empty.

  The claim is the file :data:`CLAIM`, created with ``O_EXCL``: two processes that both found
  the folder empty cannot both claim it.

  Raises:
    JaxvaeError: the folder is not empty and ``overwrite`` is False, or it cannot be written.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise JaxvaeError(f"run folder {workdir} is a file: choose another {option('--workdir', 'workdir')}")
  if _abandoned_claim(workdir):  # claimed by a process of this host that died before writing its config
    for name in os.listdir(workdir):  # the claim, and a config.json.tmp it may have been writing
      os.remove(os.path.join(workdir, name))
  if os.path.isdir(workdir) and os.listdir(workdir):
    if not overwrite:
      raise JaxvaeError(
        f"run folder {workdir} exists and is not empty: choose a new {option('--workdir', 'workdir')}, pass "
        f"{option(f'--resume {workdir}', 'resume=True')} to continue it, or "
        f"{option('--overwrite', 'overwrite=True')} to replace it"
      )
    shutil.rmtree(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    # The claim: creating a file that must not exist is atomic, so of two processes started
    # into the same new folder at the same moment exactly one goes on (check-then-create is not).
    fd = os.open(os.path.join(workdir, CLAIM), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    raise JaxvaeError(
      f"run folder {workdir} was just claimed by another jaxvae process: choose a new {option('--workdir', 'workdir')}"
    ) from None
  except OSError as e:
    raise JaxvaeError(
      f"cannot write run folder {workdir} ({e.strerror}): choose a writable {option('--workdir', 'workdir')}"
    ) from None
  with os.fdopen(fd, "w") as f:
    f.write(f"{socket.gethostname()} pid {os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")


def _abandoned_claim(workdir: str) -> bool:
  """Whether ``workdir`` holds nothing but the claim of a process of this host that no longer runs."""
  try:
    if {n for n in os.listdir(workdir) if not n.endswith(".tmp")} != {CLAIM}:
      return False
    with open(os.path.join(workdir, CLAIM)) as f:
      host, _, pid = f.read().split()[:3]
    if host != socket.gethostname():
      return False
    os.kill(int(pid), 0)  # raises if no such process
  except ProcessLookupError:
    return True
  except (OSError, ValueError):
    return False
  return False


def write_json(path: str, obj: Any) -> None:
  """Writes JSON atomically (a temporary file, then a rename)."""
  _write_atomically(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The rows of ``metrics.jsonl`` (none if the file does not exist).

  A last line cut off by a kill or a full disk in the middle of its write is dropped: its
  epoch comes after the newest checkpoint, so a resumed run writes it again.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  rows = []
  for i, line in enumerate(lines):
    try:
      rows.append(json.loads(line))
    except ValueError:
      if i < len(lines) - 1 or line.endswith("\n"):
        raise JaxvaeError(
          f"{path} line {i + 1} cannot be read: the run folder is damaged; start a new --workdir"
        ) from None
  return rows


def read_config(workdir: str, missing: str) -> Config:
  """The validated config of the run folder ``workdir``.

  Raises:
    JaxvaeError: ``missing`` when the folder has no ``config.json``; a one-line error
      naming the file when it cannot be read.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise JaxvaeError(missing)
  try:
    with open(path) as f:
      return Config.from_dict(json.load(f)).validate()
  except (ValueError, TypeError, JaxvaeError) as e:
    raise JaxvaeError(f"{path} cannot be read ({e}): the run folder is damaged; start a new --workdir") from None


def write_run_files(folder: str, config: Config | dict[str, Any], rows: list[dict[str, Any]]) -> None:
  """``config.json`` (a config, or its :meth:`~jaxvae.Config.record`) and ``metrics.jsonl`` (one row per
  epoch) of a run folder, each replaced atomically."""
  os.makedirs(folder, exist_ok=True)
  record = config if isinstance(config, dict) else config.to_dict()
  _write_atomically(os.path.join(folder, "config.json"), json.dumps(record, indent=2, sort_keys=True) + "\n")
  _write_atomically(os.path.join(folder, "metrics.jsonl"), "".join(json.dumps(row) + "\n" for row in rows))


def _write_atomically(path: str, text: str) -> None:
  """A kill or a full disk in the middle leaves the old file whole (a temporary file, then a rename)."""
  tmp = path + ".tmp"
  try:
    with open(tmp, "w") as f:
      f.write(text)
  except OSError:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  os.replace(tmp, path)


def append_row(folder: str, row: dict[str, Any]) -> None:
  """Appends one epoch's row to ``folder/metrics.jsonl``."""
  with open(os.path.join(folder, "metrics.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")


def resume_config(workdir: str, overrides: dict[str, Any]) -> Config:
  """The config of the run in ``workdir``, with the allowed ``overrides`` applied.

  Raises:
    JaxvaeError: no run there, an unreadable config, or an override that would change
      what the run trains (only :data:`jaxvae.runs.config.RESUMABLE` fields may differ).
  """
  saved = read_config(
    workdir, f"nothing to resume in {workdir} (no config.json): start it with `jaxvae train --workdir {workdir}`"
  )
  changed = {k: v for k, v in overrides.items() if getattr(saved, k) != v}
  fixed = sorted(k for k in changed if k not in RESUMABLE)
  if fixed:
    diffs = ", ".join(f"{k}={changed[k]!r} (saved {getattr(saved, k)!r})" for k in fixed)
    raise JaxvaeError(
      f"the config does not match the run in {workdir}: {diffs}; drop those flags to resume, or start a new --workdir"
    )
  return saved.replace(**changed).validate()


@contextlib.contextmanager
def stop_on_write_errors(workdir: str):
  """Turns a failed write to the run folder (an :class:`OSError`: a full disk, a quota, a lost mount) into
  :class:`jaxvae.errors.WriteFailed`, exit status 5, with one line saying what is intact.

  What was written before stays intact: checkpoints are written to a temporary folder and renamed
  when complete (a failed background write is reported by the checkpointer as an OSError at its
  next save), JSON files are replaced atomically, and a ``metrics.jsonl`` line cut off in its write
  is dropped on resume. A checkpoint that does not fit is refused by every process of a job (the
  error's ``everywhere``); another failed write stops process 0 alone, and the others exit when
  they miss it (status 4).
  """
  try:
    yield
  except OSError as e:
    if e.errno is None:
      raise
    last = latest_epoch(workdir)
    kept = f"checkpoint {last} and the metrics up to it are intact" if last is not None else "no checkpoint was saved"
    raise WriteFailed(
      f"jaxvae: cannot write to {workdir} ({e.strerror or os.strerror(e.errno)}): the run stopped; {kept}; "
      f"make room and resume with: jaxvae train --resume {workdir}",
      everywhere=getattr(e, "everywhere", False),
    ) from None


def open_run_folder(
  workdir: str, config: Config | dict[str, Any], rows: list[dict[str, Any]], *, resume: bool, overwrite: bool
) -> None:
  """Claims a new run folder and writes its config, or rewrites a resumed one's with the rows up to its checkpoint.

  A resumed run's rows after its checkpoint are dropped: they are recomputed identically.
  """
  if not resume:
    prepare_workdir(workdir, overwrite)
  write_run_files(workdir, config, rows)


def summarized(workdir: str, epoch: int) -> bool:
  """Whether the run folder's ``summary.json`` is that of a run completed at ``epoch``."""
  try:
    with open(os.path.join(workdir, "summary.json")) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return False
  return bool(summary.get("completed")) and summary.get("epochs") == epoch
