"""Training: the state, the jitted step and epoch, checkpoints, and where arrays live.

``train`` (:class:`TrainState`, the step, the scanned epoch, :class:`Trainer`), ``checkpoint``
(orbax checkpoints of a run), ``devices`` (meshes for sweeps and data parallelism, several
processes as one job). Built on :mod:`jaxvae.core`; nothing here reads a config or writes a run
folder other than its checkpoints.
"""
