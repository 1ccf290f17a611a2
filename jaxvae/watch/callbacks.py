"""Callbacks: what a run or a sweep calls on the host as it goes.

A callback is a value, like a model or an objective: a :class:`Callback` of up to three
functions, each optional. :func:`jaxvae.train_and_evaluate` and :func:`jaxvae.run_sweep` take a
list of them (``callbacks=[...]``) and call, on process 0 only, after the epoch's one host sync:

* ``start(run)`` once a run folder is ready (for a sweep: once per model, before its first epoch);
* ``epoch(run, row)`` after each epoch, with the row that ``metrics.jsonl`` just received;
* ``end(run, summary)`` with the summary that ``summary.json`` just received (also when a
  signal or divergence stopped the run: ``summary["completed"]`` says which).

``run`` is a :class:`Run`: the folder, the config, the model's name in a sweep, and the epoch
the run resumed after (a resumed run's first ``epoch`` call is for the epoch after that one,
so a callback that appends sees every epoch once). A callback that raises stops the run; the
run's files up to that epoch are written.

Example:
  >>> seen = []
  >>> log = jaxvae.Callback(epoch=lambda run, row: seen.append(row["test_elbo"]))
  >>> jaxvae.train_and_evaluate(jaxvae.Config(epochs=3), "runs/cb", callbacks=[log])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


class Run(NamedTuple):
  """The run a callback is called for.

  Attributes:
    workdir: its folder (a sweep's model: ``W/models/<name>``).
    config: its :class:`jaxvae.Config`.
    name: the model's name in a sweep (its swept values), or None for a single run.
    resumed_after: the epoch of the checkpoint it resumed from (0 for a new run).
    pictures: ``() -> {name: [N, H, W, C] array in [0, 1]}``, the current model's ``samples``,
      ``test_images`` and their ``reconstructions``, computed when called (from ``epoch``);
      None where the run has none (data that are not images; a sweep's models in a job of
      several processes).
    record: what its ``config.json`` holds (:meth:`jaxvae.Config.record`: the values used,
      the data shape), or None: the config's fields.
  """

  workdir: str
  config: Any
  name: str | None = None
  resumed_after: int = 0
  pictures: Callable[[], dict[str, Any] | None] | None = None
  record: dict[str, Any] | None = None


class Callback(NamedTuple):
  """Functions called on the host by a run (see the module docstring); each may be None."""

  start: Callable[[Run], Any] | None = None
  epoch: Callable[[Run, dict[str, Any]], Any] | None = None
  end: Callable[[Run, dict[str, Any]], Any] | None = None


def call(callbacks: Sequence[Callback], hook: str, *args) -> None:
  """Calls ``hook`` (``"start"``, ``"epoch"`` or ``"end"``) of every callback that has it, in order."""
  for callback in callbacks:
    fn = getattr(callback, hook)
    if fn is not None:
      fn(*args)
