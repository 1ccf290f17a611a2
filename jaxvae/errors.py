"""The exceptions that end a command, each with its exit status, and the one-line form of an error.

========================  ======  ====================================================================
exception                 status  what happened
========================  ======  ====================================================================
:class:`JaxvaeError`      2       bad input (a flag, a file, a model): nothing was written
:class:`UserCodeError`    2       the user's own module or function raised (its traceback is printed)
:class:`Diverged`         3       every update of ``max_consecutive_skips`` in a row was skipped
:class:`PeerLost`         4       another process of a multi-process job stopped or died
:class:`WriteFailed`      5       a write to the run folder failed (a full disk): earlier files intact
:class:`Interrupted`      128+N   signal N (SIGTERM 143, SIGINT 130): the epoch in flight was saved
========================  ======  ====================================================================

The ``jaxvae`` command turns each into its message on stderr and its exit status: the status
comes from the exception's type, never from the text of a message.
"""

from __future__ import annotations

import re


def first_line(error: BaseException, limit: int = 200) -> str:
  """The first line of ``error``'s message (its type's name if it has none), cut to ``limit`` characters."""
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def option(flag: str, argument: str) -> str:
  """A choice the user can make, in a message: the ``jaxvae`` command names the flag, Python the argument.

  Example:
    >>> raise JaxvaeError(f"... or {option('--overwrite', 'overwrite=True')} to replace it")
  """
  return f"\x1f{flag}\x1e{argument}\x1f"


_OPTION = re.compile("\x1f([^\x1e]*)\x1e([^\x1f]*)\x1f")


class JaxvaeError(Exception):
  """An error in the user's input: its message is one line naming the problem and the fix.

  The ``jaxvae`` command prints it as ``jaxvae: error: <message>`` (:meth:`for_command_line`:
  the flags) and exits with status 2; in Python its text names the arguments
  (:func:`option`). Whatever raised it has written nothing.
  """

  exit_code = 2

  def __str__(self) -> str:
    return _OPTION.sub(r"\2", super().__str__())

  def for_command_line(self) -> str:
    """The message as the ``jaxvae`` command says it: flags where Python would name arguments."""
    return _OPTION.sub(r"\1", super().__str__())


class UserCodeError(JaxvaeError):
  """The user's own code (a module, a factory, an objective) raised: their bug, so its traceback is kept.

  The original exception is ``__cause__``; the message is one line saying which piece of the
  user's code failed in which call. The ``jaxvae`` command prints the cause's traceback, then
  the line, and exits with status 2, before anything is written.
  """


class RunStopped(Exception):
  """The run stopped before its last epoch; :attr:`exit_code` is the status for the shell.

  Attributes:
    exit_code: the exit status (each subclass has its own).
    everywhere: every process of a multi-process job stops alike (a signal, divergence, a
      checkpoint that does not fit); False where this process alone stopped (a failed write on
      process 0, a lost peer), so that it exits without waiting for the others.
  """

  exit_code = 1

  def __init__(self, message: str, *, everywhere: bool = True):
    super().__init__(message)
    self.everywhere = everywhere


class Diverged(RunStopped):
  """The last ``max_consecutive_skips`` updates were skipped (non-finite, or above ``skip_grad_norm``)."""

  exit_code = 3


class PeerLost(RunStopped):
  """A collective of a multi-process job failed: another process was killed, crashed or ran out of memory."""

  exit_code = 4

  def __init__(self, message: str):
    super().__init__(message, everywhere=False)


class WriteFailed(RunStopped):
  """A write to the run folder failed (a full disk, a quota, a lost mount); what was written before is intact."""

  exit_code = 5


class Interrupted(RunStopped):
  """SIGTERM or SIGINT stopped the run after the epoch in flight; exit status 128 + the signal's number."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum
    self.exit_code = 128 + signum
