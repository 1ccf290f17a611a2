"""What a run trains and evaluates, built and checked before anything is written.

:func:`prepare` turns a config (and the model, objective and data a user hands over in Python)
into a :class:`Setup`: the config naming what it uses, the model, the data as the likelihood
checked them, the training data as the step reads them, the fixed test set, and the trainer.
Every check raises a one-line :class:`jaxvae.JaxvaeError` here, before a run writes its folder.
A sweep prepares its group once and draws the data of each binarization seed with :func:`draw`.

Keys: a run's randomness comes from its seed through :func:`run_keys`; the draws made once for
every seed (the fixed test set, a static training set) from ``binarization_seed``
(:func:`data_key`).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxvae.core.checks import check_model, check_step
from jaxvae.core.data import Dataset, check_shape, static_binarize
from jaxvae.core.likelihoods import LIKELIHOODS
from jaxvae.core.model import VAE
from jaxvae.core.objectives import Objective
from jaxvae.errors import JaxvaeError, option
from jaxvae.runs import build
from jaxvae.runs.config import BUILT_IN_MODEL_FIELDS, BUILT_IN_OBJECTIVE_FIELDS, CUSTOM, Config
from jaxvae.training.train import Trainer

LOADABLE_DATA = ("tfds:", "npz:", "npy:", "folder:")  # besides "mnist": datasets a run folder can load again by name


class RunKeys(NamedTuple):
  """The keys of a run, all from its seed: ``split(key(seed), 4)``.

  Attributes:
    init: the parameter initialisation.
    train: epoch e draws its data order, binarizations and z samples from ``fold_in(train, e)``.
    eval: the test evaluation's z samples (the same every epoch).
    plot: the samples and reconstructions of the pictures.
  """

  init: jax.Array
  train: jax.Array
  eval: jax.Array
  plot: jax.Array


def run_keys(seed: int) -> RunKeys:
  """The :class:`RunKeys` of ``seed``: one layout for runs, sweeps and checkpoints."""
  return RunKeys(*jax.random.split(jax.random.key(seed), 4))


def data_key(config: Config, purpose: int) -> jax.Array:
  """Keys of the draws made once from ``binarization_seed``: 0 a static training set, 1 the test set."""
  return jax.random.fold_in(jax.random.key(config.binarization_seed), purpose)


def fixed_test_set(config: Config, vae: VAE, test: np.ndarray) -> np.ndarray:
  """The test set as evaluation reads it: ``[M, ...]`` floats, the likelihood's preprocessing drawn once.

  One draw from ``binarization_seed`` alone (a Bernoulli draw per pixel, one dequantization,
  or a deterministic scaling), so every run (whatever its ``seed``) and every later
  evaluation see the same test set.
  """
  return np.asarray(jax.jit(vae.likelihood.preprocess)(data_key(config, 1), test))


def draw(config: Config, vae: VAE, checked: Dataset) -> tuple[np.ndarray, np.ndarray]:
  """The draws made once from ``config.binarization_seed``: ``(training data as the step reads them, fixed test set)``.

  The training data are the checked ones, drawn once if ``binarization`` is static; the test set
  is :func:`fixed_test_set`.
  """
  train = checked.train
  if config.binarization == "static" and train.dtype == np.uint8:
    train = static_binarize(train, data_key(config, 0))
  return train, fixed_test_set(config, vae, checked.test)


class Setup(NamedTuple):
  """What one config trains or evaluates, checked: the model, the data, the trainer.

  Attributes:
    config: the config, with ``model``, ``objective`` and ``dataset`` naming what was used
      (a reference, or ``custom`` for a value handed over in Python).
    vae: the model.
    checked: the dataset (its first ``n_train`` / ``n_test`` examples) as the likelihood's
      ``check`` returned it: the stored form that the step preprocesses, with the labels.
    train_data: ``[N, ...]`` the training data as the step reads them (``checked.train``, drawn
      once for static binarization).
    test_x: ``[M, ...]`` floats, the fixed test set x (:func:`fixed_test_set`).
    trainer: the :class:`~jaxvae.training.train.Trainer` of the model, objective and optimizer
      (None from :func:`prepare_model`).
    unused: the config fields that the model and the objective handed over in Python do not
      read, left out of ``config.json`` (:meth:`jaxvae.Config.record`).
  """

  config: Config
  vae: VAE
  checked: Dataset
  train_data: np.ndarray
  test_x: np.ndarray
  trainer: Trainer | None = None
  unused: tuple[str, ...] = ()

  def record(self, config: Config | None = None) -> dict[str, Any]:
    """What ``config.json`` holds for ``config`` (default: this setup's) trained on this setup's data."""
    return (config or self.config).record(self.vae.data_shape, self.unused)


def named(config: Config, *, model: Any = None, objective: Any = None, data: Dataset | None = None) -> Config:
  """``config`` with model, objective and dataset naming what the run uses (references made absolute).

  A value handed over in Python is named ``custom`` (a run folder cannot rebuild it), a factory
  by its reference, and an ``npz:``, ``npy:`` or ``folder:`` path is made absolute, so that
  ``--resume`` and ``jaxvae eval`` find everything from any folder.
  """
  changes: dict[str, Any] = {
    "model": build.absolute_reference(config.model),
    "objective": build.absolute_reference(config.objective),
  }
  for prefix in ("npz:", "npy:", "folder:"):  # a file or folder: its absolute path
    if config.dataset.startswith(prefix):
      changes["dataset"] = prefix + os.path.abspath(os.path.expanduser(config.dataset[len(prefix) :]))
  if model is not None:
    changes["model"] = CUSTOM if isinstance(model, VAE) else build.reference_of(model)
  if objective is not None:
    changes["objective"] = CUSTOM if isinstance(objective, Objective) else build.reference_of(objective)
  if data is not None:
    loadable = data.name == "mnist" or data.name.startswith(LOADABLE_DATA)
    changes["dataset"] = data.name if loadable else f"{CUSTOM}:{data.name}"
  return config.replace(**{k: v for k, v in changes.items() if v != getattr(config, k)})


def prepare_model(config: Config, *, model: Any = None, data: Dataset | None = None) -> Setup:
  """The model and the checked data of ``config`` (a :class:`Setup` without a trainer): what evaluation needs.

  Raises:
    JaxvaeError: the data cannot be loaded or do not fit the model (shape, dtype, range, size), or
      the model's networks do not return what its posterior and likelihood read
      (:func:`jaxvae.core.checks.check_model`, traced abstractly on one batch).
  """
  config = named(config.validate(), model=model, data=data)
  data = data if data is not None else build.load_data(config)
  data = data._replace(
    train=data.train[: config.n_train],
    train_labels=data.train_labels[: config.n_train],
    test=data.test[: config.n_test],
    test_labels=data.test_labels[: config.n_test],
  )
  raw_train, raw_test = check_shape(data.train, "training data"), check_shape(data.test, "test data")
  if raw_test.shape[1:] != raw_train.shape[1:]:
    raise JaxvaeError(
      f"test data have examples of shape {raw_test.shape[1:]} and training data {raw_train.shape[1:]}: "
      "give both splits the same shape"
    )
  vae = build.make_vae(config, raw_train.shape[1:], raw_train.dtype, model)
  checked = data._replace(
    train=vae.likelihood.check(raw_train, "training data"), test=vae.likelihood.check(raw_test, "test data")
  )
  check_shape(checked.train, "training data", vae.data_shape)
  if len(checked.train) < config.batch_size:
    raise JaxvaeError(
      f"batch_size={config.batch_size} is larger than the training set ({len(checked.train)} examples): "
      f"lower {option('--batch-size', 'batch_size')} or use more training data"
    )
  if config.binarization == "static" and not vae.likelihood.binarizes:
    static = option("--binarization static", "binarization='static'")
    raise JaxvaeError(
      f"binarization=static draws binary data for the bernoulli likelihood, not {vae.likelihood.name}: drop {static}"
    )
  batch = checked.train[: config.batch_size]
  check_model(vae, jax.eval_shape(vae.likelihood.preprocess, jax.random.key(0), batch))
  return Setup(config, vae, checked, *draw(config, vae, checked))


def prepare(
  config: Config,
  *,
  model: Any = None,
  objective: Any = None,
  data: Dataset | None = None,
  on_progress=None,
  batch_sharding=None,
) -> Setup:
  """Builds and checks everything a run of ``config`` needs; raises :class:`JaxvaeError` before any write.

  Args:
    config: the run configuration.
    model: a :class:`jaxvae.VAE`, or a factory ``(config, data_shape, dtype) -> VAE`` (it is
      passed the arguments it names); default: the model ``config`` describes.
    objective: a :class:`jaxvae.Objective`, or a factory ``(config, steps_per_epoch) ->
      Objective``; default: ``config.objective``.
    data: a :class:`jaxvae.Dataset`; default: ``config.dataset``, loaded.
    on_progress, batch_sharding: see :func:`jaxvae.training.train.make_train_epoch`.

  Raises:
    JaxvaeError: see :func:`prepare_model`; one training step is traced abstractly too
      (:func:`jaxvae.core.checks.check_step`), so an objective that fails says so here.
  """
  setup = prepare_model(named(config.validate(), objective=objective), model=model, data=data)
  trainer = build.trainer_for(
    setup.config,
    data_shape=setup.vae.data_shape,
    train_size=len(setup.train_data),
    vae=setup.vae,
    objective=objective,
    on_progress=on_progress,
    batch_sharding=batch_sharding,
  )
  check_step(trainer.init, trainer.step, setup.train_data[: setup.config.batch_size], trainer.objective.name)
  config, unused = used(setup.config, setup.vae, trainer.objective, model=model, given_objective=objective)
  return setup._replace(config=config, trainer=trainer, unused=unused)


def used(config: Config, vae: VAE, objective: Objective, *, model: Any = None, given_objective: Any = None):
  """``(config, unused)``: ``config`` with what a user's model and objective say of themselves, and the
  fields they do not read (``model`` and ``given_objective``: what :func:`prepare` was handed).

  A user's model (a value or a factory) records its latent size and its likelihood; a model handed
  over as a value does not read the built-in models' fields (:data:`jaxvae.runs.config.BUILT_IN_MODEL_FIELDS`),
  nor an objective value the built-in objectives' ones, but those it reports (``settings`` such
  as k, hyperparameters such as beta).
  """
  changes: dict[str, Any] = {}
  unused: list[str] = []
  if not config.builtin_model:
    changes["latent_dim"] = vae.latent_dim
    if vae.likelihood.name in LIKELIHOODS:
      changes["likelihood"] = vae.likelihood.name
  if isinstance(model, VAE):
    unused += BUILT_IN_MODEL_FIELDS
  if isinstance(given_objective, Objective):
    hparams = objective.hparams
    scalars = (
      {f: float(v) for f, v in zip(hparams._fields, hparams) if np.ndim(v) == 0} if hasattr(hparams, "_fields") else {}
    )
    reported = {k: v for k, v in {**scalars, **objective.settings}.items() if k in BUILT_IN_OBJECTIVE_FIELDS}
    changes.update(reported)
    unused += [name for name in BUILT_IN_OBJECTIVE_FIELDS if name not in reported]
  return config.replace(**changes), tuple(unused)
