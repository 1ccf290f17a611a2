"""``jaxvae launch -n N COMMAND ...``: N jaxvae processes on this machine as one JAX job.

Each process runs ``jaxvae COMMAND ...`` with the variables that
:func:`jaxvae.training.devices.initialize_distributed` reads: ``JAX_COORDINATOR_ADDRESS`` (127.0.0.1 and a
free port; process 0 hosts the coordination service, bound to 127.0.0.1 only),
``JAXVAE_NUM_PROCESSES`` and ``JAXVAE_PROCESS_ID``. On CPUs the processes exchange gradients
through JAX's gloo collectives. This is the local stand-in for a cluster manager (``srun``, a TPU
slice's workers), and what the tests run: the same code paths as a multi-host job, on one machine.

The launcher forwards SIGTERM and SIGINT to every process, waits for all of them, and exits
with the first non-zero status (0 if all succeed). A process that outlives a failed one by
more than the heartbeat timeout plus a grace period is killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from jaxvae.errors import JaxvaeError
from jaxvae.training.devices import HEARTBEAT_SECONDS, NUM_PROCESSES, PROCESS_ID

GRACE_SECONDS = HEARTBEAT_SECONDS + 30


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def job_env(processes: int, process_id: int, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
  """The environment of process ``process_id`` of a local job of ``processes`` processes."""
  env = dict(os.environ if base is None else base)
  env.update(
    {
      "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}",
      NUM_PROCESSES: str(processes),
      PROCESS_ID: str(process_id),
    }
  )
  return env


def launch(processes: int, argv: list[str], port: int | None = None) -> int:
  """Runs ``jaxvae *argv`` as ``processes`` processes of one job; returns the job's exit status.

  Args:
    processes: how many processes (each sees its own devices: one CPU device each on a CPU).
    argv: the jaxvae command and its flags, e.g. ``["train", "--data-parallel", "--workdir", "W"]``.
    port: the coordinator's port on 127.0.0.1 (default: a free one).

  Returns:
    0 if every process succeeded, else the first non-zero status (128 + N for a process killed by signal N).
  """
  if processes < 1:
    raise JaxvaeError(f"--processes {processes} must be an integer >= 1")
  if not argv or argv[0] not in ("train", "sweep"):
    raise JaxvaeError(
      "give the command to run after the launcher's flags, e.g. `jaxvae launch -n 2 train --data-parallel --workdir W`"
    )
  port = port or free_port()
  # Each process in a session of its own: a Ctrl-C at the terminal reaches the launcher alone, which
  # forwards it once (a second SIGINT would interrupt a process at once, without its checkpoint).
  procs = [
    subprocess.Popen([sys.executable, "-m", "jaxvae", *argv], env=job_env(processes, i, port), start_new_session=True)
    for i in range(processes)
  ]

  def forward(signum, frame):
    for p in procs:
      if p.poll() is None:
        p.send_signal(signum)

  previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
  first_failure, failed_at = None, None
  try:
    while any(p.poll() is None for p in procs):
      for i, p in enumerate(procs):
        if p.returncode not in (None, 0) and first_failure is None:
          first_failure, failed_at = (i, p.returncode), time.monotonic()
      if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
        for i, p in enumerate(procs):
          if p.poll() is None:
            print(
              f"jaxvae launch: process {i} still running {GRACE_SECONDS} s after process {first_failure[0]} "
              "failed: killed",
              file=sys.stderr,
              flush=True,
            )
            p.kill()
      time.sleep(0.05)
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
  for i, p in enumerate(procs):
    if p.returncode != 0 and first_failure is None:
      first_failure = (i, p.returncode)
  if first_failure is None:
    return 0
  code = first_failure[1]
  return 128 - code if code < 0 else code
