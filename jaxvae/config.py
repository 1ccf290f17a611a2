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
OBJECTIVES = ("vae", "iwae")
LR_SCHEDULES = ("constant", "burda")
LIKELIHOODS = ("bernoulli", "gaussian", "discretized-logistic")
GAUSSIAN_SCALES = ("fixed", "global", "per-pixel")
PRIORS = ("normal", "mog", "vamp")
PRIOR_COMPONENTS = {"normal": None, "mog": 10, "vamp": 500}
NETS = ("mlp", "conv")

# Architecture defaults of each model (applied to the fields left unset).
MODEL_DEFAULTS = {
    # Kingma & Welling (2014) / pytorch-examples: 784-400-20, ReLU, one stochastic layer.
    "mlp": dict(hidden=(400,), latent_dim=20, activation="relu", hidden2=None, latent_dim2=None),
    # Burda et al. (2016), one stochastic layer: 784-200-200-50, tanh.
    "burda1": dict(hidden=(200, 200), latent_dim=50, activation="tanh", hidden2=None, latent_dim2=None),
    # Burda et al. (2016), two stochastic layers: 784-200-200-100 (z1) -100-100-50 (z2), tanh.
    "burda2": dict(hidden=(200, 200), latent_dim=100, activation="tanh", hidden2=(100, 100), latent_dim2=50),
}


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
    image_size: resize TFDS images to ``image_size`` x ``image_size`` (centre crop to a
      square first), e.g. 64 for celeb_a (None: as stored).
    model: ``"mlp"`` (one stochastic layer, any widths), ``"burda1"`` (its preset
      784-200-200-50 tanh) or ``"burda2"`` (two stochastic layers, Burda et al. 2016).
      The architecture fields left unset (None) take the model's defaults
      (:data:`MODEL_DEFAULTS`), so a constructed config is always resolved.
    hidden: hidden-layer widths between x and z (z1); the decoder mirrors them.
    latent_dim: d, the size of z (z1 for burda2).
    activation: nonlinearity of the hidden layers (None: the model's, ELU for ``net="conv"``).
    hidden2: burda2 only: hidden widths between z1 and z2.
    latent_dim2: burda2 only: the size of z2.
    net: ``"mlp"`` or ``"conv"`` (strided convolutions down, resize + convolution up).
    conv_channels: widths of the convolutions (``net="conv"``); H and W must divide by 2^len.
    likelihood: p_theta(x|z): ``"bernoulli"`` (binarized data), ``"gaussian"`` or
      ``"discretized-logistic"`` (8-bit data; see :mod:`jaxvae.likelihoods`).
    gaussian_scale: ``"fixed"`` (``gaussian_sigma``), ``"global"`` or ``"per-pixel"`` (learned).
    gaussian_sigma: the fixed scale, and the learned scales' initial value.
    mixtures: components of the discretized logistic mixture per pixel.
    prior: p(z): ``"normal"`` N(0, I), ``"mog"`` (a learned mixture of Gaussians) or
      ``"vamp"`` (the VampPrior, Tomczak & Welling 2018).
    prior_components: mixture components or pseudo-inputs (None: 10 for mog, 500 for vamp).
    objective: ``"vae"``: the (beta-)ELBO averaged over ``k`` samples of z;
      ``"iwae"``: the importance-weighted bound log (1/k) sum_i w_i (Burda et al. 2016).
    k: samples of z per data point in the training objective.
    beta: weight of KL(q_phi(z|x) || p(z)) in the vae objective
      E_q[log p_theta(x|z)] - beta * KL; beta = 1 is the ELBO.
    warmup_epochs: KL warm-up: the KL weight rises linearly from 0 to beta over
      this many epochs (0: none).
    free_bits: free bits (Kingma et al. 2016): each latent dimension's batch-mean KL
      counts as at least this many nats in the vae objective (0: none).
    kl: ``"analytic"`` (closed form, where the model has one; otherwise the
      estimate is used) or ``"mc"`` (the estimate log q_phi(z|x) - log p(z) at the samples).
    batch_size: images per optimizer step.
    epochs: passes over the training set.
    lr: Adam learning rate.
    lr_schedule: ``"constant"``, or ``"burda"``: 3^i epochs at lr * 10^(-i/7), i = 0..7
      (Burda et al. 2016; 3280 epochs in all, cut short by ``epochs``).
    adam_b1, adam_b2, adam_eps: Adam's other hyperparameters.
    clip_grad_norm: clip the gradient to this global norm before Adam (None: no clipping).
    skip_grad_norm: skip an update whose gradient norm exceeds this (None: only
      non-finite updates are skipped, always).
    max_consecutive_skips: stop the run after this many skipped updates in a row.
    seed: seed of the parameter initialisation, the data order, the binarization
      draws of training and the z samples.
    eval_batch_size: test images per evaluation chunk (bounds memory, not results).
    checkpoint_every: save a checkpoint every this many epochs (and at the end).
    keep_checkpoints: keep the newest this many checkpoints.
  """

  dataset: str = "mnist"
  tfds_data_dir: str | None = None
  binarization: str = "dynamic"
  binarization_seed: int = 0
  n_train: int | None = None
  n_test: int | None = None
  image_size: int | None = None
  model: str = "mlp"
  hidden: tuple[int, ...] | None = None
  latent_dim: int | None = None
  activation: str | None = None
  hidden2: tuple[int, ...] | None = None
  latent_dim2: int | None = None
  net: str = "mlp"
  conv_channels: tuple[int, ...] = (32, 64)
  likelihood: str = "bernoulli"
  gaussian_scale: str = "global"
  gaussian_sigma: float = 0.1
  mixtures: int = 10
  prior: str = "normal"
  prior_components: int | None = None
  objective: str = "vae"
  k: int = 1
  beta: float = 1.0
  warmup_epochs: float = 0.0
  free_bits: float = 0.0
  kl: str = "analytic"
  batch_size: int = 128
  epochs: int = 10
  lr: float = 1e-3
  lr_schedule: str = "constant"
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  clip_grad_norm: float | None = None
  skip_grad_norm: float | None = None
  max_consecutive_skips: int = 100
  seed: int = 0
  eval_batch_size: int = 1000
  checkpoint_every: int = 1
  keep_checkpoints: int = 3

  def __post_init__(self):
    if self.activation is None and self.net == "conv":
      # ELU in conv nets: after 5 epochs on 8-bit MNIST with the logistic mixture, ELU gave a
      # test ELBO of -723.8 against ReLU's -754.0, and prior samples that are digits where
      # ReLU's were mostly strokes (experiments/likelihoods/README.md).
      object.__setattr__(self, "activation", "elu")
    for name, value in MODEL_DEFAULTS.get(self.model, {}).items():
      if getattr(self, name) is None:
        object.__setattr__(self, name, value)
    if self.prior_components is None and self.prior in PRIOR_COMPONENTS:
      object.__setattr__(self, "prior_components", PRIOR_COMPONENTS[self.prior])
    for name in ("hidden", "hidden2", "conv_channels"):
      if isinstance(getattr(self, name), (list, tuple)):
        object.__setattr__(self, name, tuple(getattr(self, name)))

  @property
  def stochastic_layers(self) -> int:
    return 2 if self.model == "burda2" else 1

  def replace(self, **changes: Any) -> "Config":
    """A copy with ``changes`` applied (``dataclasses.replace``).

    The architecture fields keep their resolved values: to change ``model``, build a new
    ``Config(model=...)`` so that it takes that model's defaults.
    """
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    for name in ("hidden", "hidden2", "conv_channels"):
      if d[name] is not None:
        d[name] = list(d[name])
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
    need(self.model in MODEL_DEFAULTS, f"model={self.model!r} is unknown: use one of {', '.join(MODEL_DEFAULTS)}")
    need(isinstance(self.hidden, tuple) and len(self.hidden) >= 1 and all(is_int(h) and h >= 1 for h in self.hidden),
         f"hidden={self.hidden!r} must be one or more positive widths, e.g. --hidden 400 or --hidden 200,200")
    need(is_int(self.latent_dim) and self.latent_dim >= 1, f"latent_dim={self.latent_dim!r} must be an integer >= 1")
    need(self.activation in ACTIVATIONS,
         f"activation={self.activation!r} is unknown: use one of {', '.join(ACTIVATIONS)}")
    if self.model == "burda2":
      need(isinstance(self.hidden2, tuple) and len(self.hidden2) >= 1 and all(is_int(h) and h >= 1 for h in self.hidden2),
           f"hidden2={self.hidden2!r} must be one or more positive widths")
      need(is_int(self.latent_dim2) and self.latent_dim2 >= 1, f"latent_dim2={self.latent_dim2!r} must be an integer >= 1")
    else:
      need(self.hidden2 is None and self.latent_dim2 is None,
           f"hidden2/latent_dim2 describe a second stochastic layer: use them with --model burda2, not {self.model}")
    need(self.image_size is None or is_int(self.image_size) and self.image_size >= 4,
         f"image_size={self.image_size!r} must be an integer >= 4 (or unset to keep the stored size)")
    need(self.net in NETS, f"net={self.net!r} is unknown: use one of {', '.join(NETS)}")
    need(isinstance(self.conv_channels, tuple) and len(self.conv_channels) >= 1
         and all(is_int(c) and c >= 1 for c in self.conv_channels),
         f"conv_channels={self.conv_channels!r} must be one or more positive widths, e.g. 32,64")  # fmt: skip
    need(self.likelihood in LIKELIHOODS, f"likelihood={self.likelihood!r} is unknown: use one of {', '.join(LIKELIHOODS)}")
    need(self.gaussian_scale in GAUSSIAN_SCALES,
         f"gaussian_scale={self.gaussian_scale!r} is unknown: use one of {', '.join(GAUSSIAN_SCALES)}")
    need(is_num(self.gaussian_sigma) and self.gaussian_sigma > 0, f"gaussian_sigma={self.gaussian_sigma!r} must be > 0")
    need(is_int(self.mixtures) and self.mixtures >= 1, f"mixtures={self.mixtures!r} must be an integer >= 1")
    need(self.prior in PRIORS, f"prior={self.prior!r} is unknown: use one of {', '.join(PRIORS)}")
    need(self.prior == "normal" or is_int(self.prior_components) and self.prior_components >= 1,
         f"prior_components={self.prior_components!r} must be an integer >= 1")
    if self.model == "burda2":
      need(self.net == "mlp" and self.prior == "normal",
           "burda2 is an MLP with its own hierarchical prior: use --net mlp and --prior normal with it")
    need(self.objective in OBJECTIVES, f"objective={self.objective!r} is unknown: use one of {', '.join(OBJECTIVES)}")
    need(is_int(self.k) and self.k >= 1, f"k={self.k!r} must be an integer >= 1 (samples of z per data point)")
    need(is_num(self.beta) and self.beta >= 0, f"beta={self.beta!r} must be a number >= 0 (beta = 1 is the ELBO)")
    need(is_num(self.warmup_epochs) and self.warmup_epochs >= 0,
         f"warmup_epochs={self.warmup_epochs!r} must be a number >= 0 (0: no KL warm-up)")
    need(is_num(self.free_bits) and self.free_bits >= 0,
         f"free_bits={self.free_bits!r} must be a number >= 0 (nats per latent dimension; 0: none)")
    if self.objective == "iwae":
      need(self.beta == 1 and self.warmup_epochs == 0 and self.free_bits == 0,
           "beta, warmup_epochs and free_bits weight the KL of the vae objective: "
           "leave them at 1, 0, 0 with --objective iwae")
    if self.free_bits > 0:
      need(self.model != "burda2" and self.prior == "normal" and self.kl == "analytic",
           "free_bits needs the closed-form per-dimension KL: use one stochastic layer, --prior normal and --kl analytic")
    need(self.kl in KL_ESTIMATORS, f"kl={self.kl!r} is unknown: use one of {', '.join(KL_ESTIMATORS)}")
    need(self.lr_schedule in LR_SCHEDULES,
         f"lr_schedule={self.lr_schedule!r} is unknown: use one of {', '.join(LR_SCHEDULES)}")
    need(is_int(self.batch_size) and self.batch_size >= 1, f"batch_size={self.batch_size!r} must be an integer >= 1")
    need(is_int(self.epochs) and self.epochs >= 1, f"epochs={self.epochs!r} must be an integer >= 1")
    need(is_num(self.lr) and self.lr > 0, f"lr={self.lr!r} must be a number > 0, e.g. 1e-3")
    need(is_num(self.adam_b1) and 0 <= self.adam_b1 < 1, f"adam_b1={self.adam_b1!r} must be in [0, 1)")
    need(is_num(self.adam_b2) and 0 <= self.adam_b2 < 1, f"adam_b2={self.adam_b2!r} must be in [0, 1)")
    need(is_num(self.adam_eps) and self.adam_eps > 0, f"adam_eps={self.adam_eps!r} must be a number > 0")
    for name in ("clip_grad_norm", "skip_grad_norm"):
      v = getattr(self, name)
      need(v is None or is_num(v) and v > 0, f"{name}={v!r} must be a number > 0 (or unset)")
    for name in ("max_consecutive_skips", "checkpoint_every", "keep_checkpoints"):
      v = getattr(self, name)
      need(is_int(v) and v >= 1, f"{name}={v!r} must be an integer >= 1")
    need(is_int(self.seed), f"seed={self.seed!r} must be an integer")
    need(is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
         f"eval_batch_size={self.eval_batch_size!r} must be an integer >= 1")
    return self
