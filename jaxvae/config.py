"""Typed run configuration, with defaults and a validation that names the fix.

The defaults are the setting of Kingma & Welling (2014) and pytorch/examples:
an MLP VAE 784-400-20 with ReLU, Adam at lr 1e-3, batch 128, 10 epochs, seed 0,
on dynamically binarized MNIST.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from jaxvae.nets import ACTIVATIONS

BINARIZATIONS = ("dynamic", "static")
KL_ESTIMATORS = ("analytic", "mc")


class JaxvaeError(Exception):
  """An error in the user's input: its message is one line naming the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that defines a run. ``config.json`` in a run folder is this, resolved.

  Attributes:
    dataset: ``"mnist"`` (embedded, offline) or ``"tfds:NAME"`` (any TFDS image dataset).
    tfds_data_dir: folder of prepared TFDS datasets (TFDS's default when None).
    binarization: ``"dynamic"`` draws x ~ Bernoulli(pixel / 255) afresh every time an
      image is used (Burda et al. 2015); ``"static"`` draws the training set once.
    binarization_seed: seed of the draws made once: the test set (always) and the
      training set (when static). Runs with different ``seed`` share the same test set.
    n_train: use only the first ``n_train`` training images (None: all).
    n_test: use only the first ``n_test`` test images (None: all).
    hidden: hidden-layer widths of the encoder; the decoder mirrors them.
    latent_dim: d, the size of z.
    activation: nonlinearity of the hidden layers.
    beta: weight of KL(q_phi(z|x) || p(z)) in the training objective
      E_q[log p_theta(x|z)] - beta * KL; beta = 1 is the ELBO.
    kl: ``"analytic"`` (closed form) or ``"mc"`` (the single-sample estimate
      log q_phi(z|x) - log p(z)).
    batch_size: images per optimizer step.
    epochs: passes over the training set.
    lr: Adam learning rate.
    adam_b1, adam_b2, adam_eps: Adam's other hyperparameters.
    seed: seed of the parameter initialisation, the data order, the binarization
      draws of training and the z samples.
    eval_batch_size: test images per evaluation chunk (bounds memory, not results).
  """

  dataset: str = "mnist"
  tfds_data_dir: str | None = None
  binarization: str = "dynamic"
  binarization_seed: int = 0
  n_train: int | None = None
  n_test: int | None = None
  hidden: tuple[int, ...] = (400,)
  latent_dim: int = 20
  activation: str = "relu"
  beta: float = 1.0
  kl: str = "analytic"
  batch_size: int = 128
  epochs: int = 10
  lr: float = 1e-3
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  seed: int = 0
  eval_batch_size: int = 1000

  def __post_init__(self):
    object.__setattr__(self, "hidden", tuple(self.hidden))

  def replace(self, **changes: Any) -> "Config":
    """A copy with ``changes`` applied (``dataclasses.replace``)."""
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["hidden"] = list(self.hidden)
    return d

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Config":
    """Inverse of :meth:`to_dict`; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise JaxvaeError(f"unknown config keys {unknown}: remove them (known keys: {sorted(names)})")
    return cls(**d)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def validate(self) -> "Config":
    """Checks every value; raises :class:`JaxvaeError` naming the field and the fix."""

    def need(ok: bool, msg: str):
      if not ok:
        raise JaxvaeError(msg)

    def is_int(v):
      return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v):
      return isinstance(v, (int, float)) and not isinstance(v, bool)

    need(isinstance(self.dataset, str) and (self.dataset == "mnist" or self.dataset.startswith("tfds:") and len(self.dataset) > 5),
         f"dataset={self.dataset!r} is unknown: use 'mnist' or 'tfds:NAME' (e.g. tfds:fashion_mnist)")
    need(self.binarization in BINARIZATIONS,
         f"binarization={self.binarization!r} is unknown: use one of {', '.join(BINARIZATIONS)}")
    need(is_int(self.binarization_seed), f"binarization_seed={self.binarization_seed!r} must be an integer")
    for name in ("n_train", "n_test"):
      v = getattr(self, name)
      need(v is None or is_int(v) and v >= 1, f"{name}={v!r} must be a positive integer (or unset for all images)")
    need(len(self.hidden) >= 1 and all(is_int(h) and h >= 1 for h in self.hidden),
         f"hidden={list(self.hidden)!r} must be one or more positive widths, e.g. --hidden 400 or --hidden 200,200")
    need(is_int(self.latent_dim) and self.latent_dim >= 1, f"latent_dim={self.latent_dim!r} must be an integer >= 1")
    need(self.activation in ACTIVATIONS,
         f"activation={self.activation!r} is unknown: use one of {', '.join(ACTIVATIONS)}")
    need(is_num(self.beta) and self.beta >= 0, f"beta={self.beta!r} must be a number >= 0 (beta = 1 is the ELBO)")
    need(self.kl in KL_ESTIMATORS, f"kl={self.kl!r} is unknown: use one of {', '.join(KL_ESTIMATORS)}")
    need(is_int(self.batch_size) and self.batch_size >= 1, f"batch_size={self.batch_size!r} must be an integer >= 1")
    need(is_int(self.epochs) and self.epochs >= 1, f"epochs={self.epochs!r} must be an integer >= 1")
    need(is_num(self.lr) and self.lr > 0, f"lr={self.lr!r} must be a number > 0, e.g. 1e-3")
    need(is_num(self.adam_b1) and 0 <= self.adam_b1 < 1, f"adam_b1={self.adam_b1!r} must be in [0, 1)")
    need(is_num(self.adam_b2) and 0 <= self.adam_b2 < 1, f"adam_b2={self.adam_b2!r} must be in [0, 1)")
    need(is_num(self.adam_eps) and self.adam_eps > 0, f"adam_eps={self.adam_eps!r} must be a number > 0")
    need(is_int(self.seed), f"seed={self.seed!r} must be an integer")
    need(is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
         f"eval_batch_size={self.eval_batch_size!r} must be an integer >= 1")
    return self
