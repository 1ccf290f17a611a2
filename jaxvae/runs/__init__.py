"""Runs: from a config (or values handed over in Python) to a run folder, for one model or a sweep.

``config`` (the fields and their descriptions), ``presets`` (the papers' configurations by name),
``build`` (the built-in values a config names,
and references to a user's factories), ``sources`` (datasets by name), ``setup`` (the checked
model, data and trainer of a run), ``folder`` (the run folder's files), ``records`` (metrics
rows and the summary), ``loop`` (the epoch loop of every run and sweep), ``pictures``, ``run``
(:func:`train_and_evaluate`), ``grid`` and ``sweep`` (:func:`run_sweep`), ``evaluate``
(``jaxvae eval``, ``jaxvae gaps``).
"""
