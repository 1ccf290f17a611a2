"""Progress of a long loop (an epoch's steps, an evaluation's batches), readable on a terminal and in a file.

On a terminal, a tqdm bar redrawn in place. Elsewhere (a file, a CI log, ``nohup``) a redrawn bar
is carriage returns that pile up on one line, so there the loop gets plain lines instead, one
every ``JAXVAE_PROGRESS_SECONDS`` seconds (default 30) and none for a loop shorter than that::

  epoch 3/50: 120/300 steps (40%), 31.0 s, about 46 s left

Example:
  >>> bar = Progress(enabled=True)
  >>> bar.start("eval k=5000", total=100, unit="batch")
  >>> for i in range(100):
  ...   bar.update_to(i + 1)
  >>> bar.close()
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO


def _seconds_between_lines() -> float:
  return float(os.environ.get("JAXVAE_PROGRESS_SECONDS", "30"))


class Progress:
  """One loop's progress at a time: :meth:`start`, :meth:`update_to` (from any thread), :meth:`close`.

  Args:
    enabled: False shows nothing.
    stream: where it is shown (default ``sys.stderr``); a terminal gets a bar, anything else lines.
  """

  def __init__(self, enabled: bool = True, stream: TextIO | None = None):
    self.enabled = enabled
    self.stream = stream
    self._bar: Any = None  # the tqdm bar, on a terminal
    self._line: dict[str, Any] | None = None  # the loop in flight, elsewhere

  def start(self, desc: str, total: int, unit: str = "step") -> None:
    """Starts showing a loop of ``total`` units (closing the previous one)."""
    self.close()
    if not self.enabled:
      return
    stream = self.stream or sys.stderr
    if stream.isatty():
      import tqdm

      self._bar = tqdm.tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=stream)
    else:
      now = time.monotonic()
      self._line = {"desc": desc, "total": total, "unit": unit, "t0": now, "last": now, "stream": stream}

  def update_to(self, done: int) -> None:
    """``done`` units of the loop are done."""
    if self._bar is not None:
      self._bar.update(done - self._bar.n)
    line = self._line
    if line is None:
      return
    now = time.monotonic()
    if now - line["last"] < _seconds_between_lines() or done >= line["total"]:
      return
    line["last"] = now
    elapsed, total = now - line["t0"], line["total"]
    left = f", about {elapsed * (total - done) / done:.0f} s left" if done else ""
    units = line["unit"] + ("es" if line["unit"].endswith(("ch", "s")) else "s")
    line["stream"].write(f"{line['desc']}: {done}/{total} {units} ({100 * done / total:.0f}%), {elapsed:.1f} s{left}\n")
    line["stream"].flush()

  def close(self) -> None:
    """Ends the loop's display (a terminal's bar is removed)."""
    if self._bar is not None:
      self._bar.close()
    self._bar = self._line = None
