"""The run configuration: one description per field drives flags, grids, validation and resume.

Every field of :class:`Config` carries a :class:`FieldSpec`: its help, how a string is parsed,
what values are valid, whether a sweep vmaps it (it changes values, never shapes) and whether a
resumed run may change it. From that one description come the ``jaxvae`` flags
(:func:`add_flags`), ``--grid`` parsing (:func:`parse_value`), :meth:`Config.validate`, the
resume rule (:data:`RESUMABLE`), the vmapped sweep axes (:data:`VMAPPED`) and the CLI reference's flag
table (:func:`flag_table`, printed by ``jaxvae flags``).

The config builds the built-in values for the CLI (:mod:`jaxvae.runs.build`); in Python, a model,
an objective and data can be handed to the machinery as values instead (see docs/guides/extending.md).
The defaults are the setting of Kingma & Welling (2014) and pytorch/examples: an MLP VAE
784-400-20 with ReLU, Adam at lr 1e-3, batch 128, 10 epochs, seed 0, on dynamically binarized
MNIST.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Collection
from typing import Any

from jaxvae.core import flows, ladder, vaes, vdvae  # noqa: F401  (they register the iaf posterior and the built-in models)
from jaxvae.core.likelihoods import GAUSSIAN_SCALES, LIKELIHOODS
from jaxvae.core.model import MODELS
from jaxvae.core.nets import ACTIVATIONS
from jaxvae.core.objectives import OBJECTIVES
from jaxvae.core.posteriors import POSTERIORS
from jaxvae.core.priors import PRIORS
from jaxvae.core.registry import Registry
from jaxvae.core.vdvae import CHECKPOINTING, SCALES
from jaxvae.errors import JaxvaeError

BINARIZATIONS = ("dynamic", "static")
KL_ESTIMATORS = ("analytic", "mc")
LR_SCHEDULES = ("constant", "burda", "cosine")
OPTIMIZERS = ("adam", "adamax", "adamw")
KL_BALANCES = ("off", "nvae")
NETS = ("mlp", "conv")
# The config fields whose value names a registered component, and their registries: their choices,
# help, rules and defaults come from there (:mod:`jaxvae.core.registry`).
CHOICES: dict[str, Registry] = {
  "model": MODELS,
  "likelihood": LIKELIHOODS,
  "prior": PRIORS,
  "posterior": POSTERIORS,
  "objective": OBJECTIVES,
}

# A model, objective or dataset handed over in Python as a value (the run folder cannot rebuild it).
CUSTOM = "custom"
# What config.json records beside the fields, from the values a run used (not read back).
RECORDED = ("data_shape",)
# A factory reference: FILE.py:FUNCTION or package.module:FUNCTION.
_REFERENCE = re.compile(r"^(?P<where>[^:]+\.py|[A-Za-z_][\w.]*):(?P<name>[A-Za-z_][\w.]*)$")


def is_reference(text: Any) -> bool:
  """Whether ``text`` names a factory: ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``."""
  return isinstance(text, str) and _REFERENCE.match(text) is not None


# ---------------------------------------------------------------------------
# Field descriptions.
# ---------------------------------------------------------------------------


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _widths(v) -> bool:
  return isinstance(v, tuple) and len(v) >= 1 and all(_is_int(w) and w >= 1 for w in v)


def _parse_ints(text: str) -> tuple[int, ...]:
  values = tuple(int(v) for v in text.replace("/", ",").split(",") if v.strip())
  if not values:
    raise ValueError(text)
  return values


_PARSERS: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "ints": _parse_ints}


@dataclasses.dataclass(frozen=True)
class FieldSpec:
  """How one config field is given, checked, swept and resumed.

  Attributes:
    help: one line for ``--help`` and the CLI reference.
    kind: ``"str"``, ``"int"``, ``"float"`` or ``"ints"`` (widths: ``400`` or ``200,200``;
      in a ``--grid`` value ``/`` separates them: ``hidden=400,200/200``).
    group: the ``--help`` section.
    optional: None is a valid value (written ``none`` on the command line).
    choices: the valid strings, if the field is a choice (a tuple, or a registry of components).
    check: a predicate on a (non-None) value; ``must`` says what it requires.
    must: the requirement, as in "lr=0 must be a number > 0".
    vmapped: a sweep vmaps this field (it changes values in the state, not shapes).
    resumable: ``--resume`` may change it (how long and how a run checkpoints, not what it trains).
  """

  help: str
  kind: str
  group: str
  optional: bool = False
  choices: Collection[str] | None = None
  check: Callable[[Any], bool] | None = None
  must: str = ""
  vmapped: bool = False
  resumable: bool = False

  def parse(self, text: str) -> Any:
    """A command-line string as a value of this field (``none`` for None where optional)."""
    if self.optional and text.strip().lower() == "none":
      return None
    return _PARSERS[self.kind](text.strip())

  def error(self, name: str, value: Any) -> str | None:
    """None if ``value`` is valid for the field ``name``, else the one-line message."""
    if value is None:
      return None if self.optional else f"{name} is required: give --{name.replace('_', '-')}"
    if self.choices is not None and not (isinstance(value, str) and value in self.choices):
      return f"{name}={value!r} is unknown: use one of {', '.join(self.choices)}"
    if self.check is not None and not self.check(value):
      return f"{name}={value!r} must be {self.must}"
    return None


def _field(default: Any, help: str, kind: str, group: str, **spec: Any) -> Any:
  return dataclasses.field(default=default, metadata={"spec": FieldSpec(help, kind, group, **spec)})


_NAT = dict(check=lambda v: _is_int(v) and v >= 1, must="an integer >= 1")
_POS = dict(check=lambda v: _is_num(v) and v > 0, must="a number > 0")
_NONNEG = dict(check=lambda v: _is_num(v) and v >= 0, must="a number >= 0")
_PROB = dict(check=lambda v: _is_num(v) and 0 <= v < 1, must="in [0, 1)")
_WIDTHS = dict(check=_widths, must="one or more positive widths, e.g. 400 or 200,200")
_DATASET = re.compile(r"^(mnist|tfds:.+|npz:.+|npy:.+|folder:.+|custom(:.*)?)$")
_MODEL_HELP = (
  f"{', '.join(MODELS.phrases())}, or a factory FILE.py:FUNCTION / package.module:FUNCTION returning a jaxvae.VAE"
)
_OBJECTIVE_HELP = f"{', '.join(OBJECTIVES.phrases())}, or a factory FILE.py:FUNCTION returning a jaxvae.Objective"


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that defines a run. ``config.json`` in a run folder is this, resolved.

  Each field's meaning, valid values and rules are in its :class:`FieldSpec` (``Config.spec(name)``),
  listed in the CLI reference's table. The architecture fields of a built-in ``model`` left unset
  (None) take that model's defaults (its entry in :data:`jaxvae.core.model.MODELS`), so a
  constructed config is resolved; a model given by reference receives the config and reads what
  it needs.
  """

  # data
  dataset: str = _field(
    "mnist",
    "'mnist' (embedded, offline), 'tfds:NAME' (a prepared TFDS dataset), 'npz:PATH' "
    "(arrays train, test; optional train_labels, test_labels), 'npy:PATH' (one array of examples) or "
    "'folder:PATH' (PNG/JPEG files; class subfolders are the labels, subfolders train and test the split); "
    "npy and folder data without a test split hold out 1 in 10 examples, drawn with numpy seed 0",
    "str",
    "data",
    check=lambda v: isinstance(v, str) and _DATASET.match(v) is not None,
    must="'mnist', 'tfds:NAME' (e.g. tfds:fashion_mnist), 'npz:PATH', 'npy:PATH' or 'folder:PATH'",
  )
  tfds_data_dir: str | None = _field(
    None,
    "folder of prepared TFDS datasets (TFDS's default when unset)",
    "str",
    "data",
    optional=True,
    check=lambda v: isinstance(v, str),
    must="a folder",
  )
  binarization: str = _field(
    "dynamic",
    "bernoulli likelihood: 'dynamic' draws x ~ Bernoulli(pixel / 255) at every use, "
    "'static' draws the training set once",
    "str",
    "data",
    choices=BINARIZATIONS,
  )
  binarization_seed: int = _field(
    0,
    "seed of the draws made once: the test set (always) and a static training set",
    "int",
    "data",
    check=_is_int,
    must="an integer",
    vmapped=True,
  )
  n_train: int | None = _field(
    None, "use the first N training examples (unset: all)", "int", "data", optional=True, **_NAT
  )
  n_test: int | None = _field(None, "use the first N test examples (unset: all)", "int", "data", optional=True, **_NAT)
  image_size: int | None = _field(
    None,
    "crop images to a centred square and resize them to N x N (unset: as stored)",
    "int",
    "data",
    optional=True,
    check=lambda v: _is_int(v) and v >= 4,
    must="an integer >= 4 (or unset to keep the stored size)",
  )
  # model
  model: str = _field(
    "mlp",
    _MODEL_HELP,
    "str",
    "model",
    check=lambda v: v in MODELS or v == CUSTOM or is_reference(v),
    must=f"{', '.join(MODELS)} or a factory reference such as my_models.py:make_vae",
  )
  hidden: tuple[int, ...] | None = _field(
    None,
    "hidden widths between x and z (z1); the decoder mirrors them (mlp 400, burda 200,200)",
    "ints",
    "model",
    optional=True,
    **_WIDTHS,
  )
  latent_dim: int | None = _field(
    None, "d, the size of z (z1 for burda2; mlp 20, burda1 50)", "int", "model", optional=True, **_NAT
  )
  activation: str | None = _field(
    None,
    "hidden nonlinearity (relu for mlp, elu for --net conv, tanh for burda)",
    "str",
    "model",
    optional=True,
    choices=tuple(ACTIVATIONS),
  )
  hidden2: tuple[int, ...] | None = _field(
    None, "burda2: hidden widths between z1 and z2 (100,100)", "ints", "model", optional=True, **_WIDTHS
  )
  latent_dim2: int | None = _field(None, "burda2: the size of z2 (50)", "int", "model", optional=True, **_NAT)
  net: str = _field(
    "mlp", "'mlp' or 'conv' (strided convolutions down, resize + convolution up)", "str", "model", choices=NETS
  )
  conv_channels: tuple[int, ...] = _field(
    (32, 64), "conv widths; H and W must halve len(conv_channels) times", "ints", "model", **_WIDTHS
  )
  likelihood: str = _field(
    "bernoulli",
    f"p_theta(x|z): {LIKELIHOODS.describe()}",
    "str",
    "model",
    choices=LIKELIHOODS,
  )
  gaussian_scale: str = _field(
    "global",
    "gaussian likelihood: fixed (--gaussian-sigma), global or per-pixel (learned)",
    "str",
    "model",
    choices=GAUSSIAN_SCALES,
  )
  gaussian_sigma: float = _field(
    0.1, "gaussian likelihood: the fixed scale, and the learned scales' initial value", "float", "model", **_POS
  )
  mixtures: int = _field(10, "discretized-logistic likelihood: mixture components per pixel", "int", "model", **_NAT)
  prior: str = _field(
    "normal",
    f"p(z): {PRIORS.describe()}",
    "str",
    "model",
    choices=PRIORS,
  )
  prior_components: int | None = _field(
    None, "mixture components (mog, 10) or pseudo-inputs (vamp, 500)", "int", "model", optional=True, **_NAT
  )
  posterior: str = _field(
    "gaussian",
    f"q_phi(z|x): {POSTERIORS.describe()}",
    "str",
    "model",
    choices=POSTERIORS,
  )
  flow_steps: int = _field(2, "--posterior iaf: the number of flow steps K", "int", "model", **_NAT)
  flow_hidden: tuple[int, ...] = _field(
    (320, 320),
    "--posterior iaf: hidden widths of each step's MADE network; the encoder's context h(x) has the first width",
    "ints",
    "model",
    **_WIDTHS,
  )
  ladder_layers: tuple[int, ...] | None = _field(
    None,
    "ladder: the size of each stochastic layer, z_1 (next to x) first (64,32,16,8,4)",
    "ints",
    "model",
    optional=True,
    **_WIDTHS,
  )
  ladder_widths: tuple[int, ...] | None = _field(
    None,
    "ladder: the deterministic width of each layer, bottom first (512,256,128,64,32)",
    "ints",
    "model",
    optional=True,
    **_WIDTHS,
  )
  vdvae_width: int | None = _field(
    None, "vdvae: the channels of every block (32; VDVAE's CIFAR-10: 384)", "int", "model", optional=True, **_NAT
  )
  vdvae_zdim: int | None = _field(
    None, "vdvae: the channels of every stochastic layer (4; VDVAE: 16)", "int", "model", optional=True, **_NAT
  )
  vdvae_bottleneck: float | None = _field(
    None,
    "vdvae: a block's inner width as a fraction of --vdvae-width (0.25)",
    "float",
    "model",
    optional=True,
    check=lambda v: _is_num(v) and 0 < v <= 4,
    must="a number in (0, 4]",
  )
  vdvae_widths: str | None = _field(
    None,
    "vdvae: widths at some resolutions over --vdvae-width, R:W pairs, e.g. 1:512,4:256,8:128",
    "str",
    "model",
    optional=True,
    check=lambda v: isinstance(v, str) and re.fullmatch(r"\d+:\d+(,\d+:\d+)*", v) is not None,
    must="R:W pairs such as 1:512,4:256,8:128",
  )
  vdvae_encoder: str | None = _field(
    None,
    "vdvae: the bottom-up blocks, RxN (N blocks at resolution R) and RdK (a block, then pooling by K), "
    "e.g. 32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1",
    "str",
    "model",
    optional=True,
    check=lambda v: isinstance(v, str) and bool(v),
    must="a block string such as 32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1",
  )
  vdvae_decoder: str | None = _field(
    None,
    "vdvae: the top-down blocks, one stochastic layer each: RxN (N blocks at R) and RmK (a block at R that "
    "upsamples resolution K), e.g. 1x1,4m1,4x1,8m4,8x1,16m8,16x1,32m16",
    "str",
    "model",
    optional=True,
    check=lambda v: isinstance(v, str) and bool(v),
    must="a block string such as 1x1,4m1,4x1,8m4,8x1,16m8,16x1,32m16",
  )
  vdvae_scale: str = _field(
    "softplus",
    "vdvae: sigma = softplus_beta(raw), beta = ln 2 (Efficient-VDVAE) or exp(raw) (VDVAE)",
    "str",
    "model",
    choices=SCALES,
  )
  vdvae_checkpoint: str = _field(
    "off",
    "vdvae: 'blocks' recomputes each top-down block in the backward pass (jax.checkpoint): less memory",
    "str",
    "model",
    choices=CHECKPOINTING,
  )
  # objective and optimisation
  objective: str = _field(
    "vae",
    _OBJECTIVE_HELP,
    "str",
    "objective and optimisation",
    check=lambda v: v in OBJECTIVES or v == CUSTOM or is_reference(v),
    must="vae, iwae, iwae-dreg or a factory reference such as my_objectives.py:make_objective",
  )
  k: int = _field(1, "samples of z per example in the training objective", "int", "objective and optimisation", **_NAT)
  beta: float = _field(
    1.0, "KL weight of the vae objective (1: the ELBO)", "float", "objective and optimisation", vmapped=True, **_NONNEG
  )
  warmup_epochs: float = _field(
    0.0,
    "KL warm-up: the KL weight rises linearly from 0 to beta over these epochs",
    "float",
    "objective and optimisation",
    vmapped=True,
    **_NONNEG,
  )
  free_bits: float = _field(
    0.0,
    "free bits: each latent dimension's batch-mean KL counts as at least this many nats",
    "float",
    "objective and optimisation",
    vmapped=True,
    **_NONNEG,
  )
  kl_balance: str = _field(
    "off",
    "nvae: during KL warm-up, weight each stochastic layer's KL by its share (NVAE's KL balancing; "
    "hierarchies: ladder, vdvae)",
    "str",
    "objective and optimisation",
    choices=KL_BALANCES,
  )
  kl: str = _field(
    "analytic",
    "KL estimator: analytic (closed form, where the model has one) or mc (log q - log p)",
    "str",
    "objective and optimisation",
    choices=KL_ESTIMATORS,
  )
  batch_size: int = _field(128, "examples per optimizer step", "int", "objective and optimisation", **_NAT)
  epochs: int = _field(10, "passes over the training set", "int", "objective and optimisation", resumable=True, **_NAT)
  lr: float = _field(
    1e-3,
    "Adam learning rate",
    "float",
    "objective and optimisation",
    vmapped=True,
    check=lambda v: _is_num(v) and v > 0,
    must="a number > 0, e.g. 1e-3",
  )
  lr_schedule: str = _field(
    "constant",
    "constant; burda: 3^i epochs at lr * 10^(-i/7), i = 0..7; cosine: a linear warm-up over --lr-warmup-steps, "
    "then a half cosine to lr * --lr-final over --lr-decay-epochs",
    "str",
    "objective and optimisation",
    choices=LR_SCHEDULES,
  )
  lr_warmup_steps: int = _field(
    0,
    "cosine schedule: steps of linear warm-up from 0 to lr",
    "int",
    "objective and optimisation",
    check=lambda v: _is_int(v) and v >= 0,
    must="an integer >= 0",
  )
  lr_decay_epochs: int | None = _field(
    None,
    "cosine schedule: the epochs the cosine spans (unset: --epochs of the run's start)",
    "int",
    "objective and optimisation",
    optional=True,
    **_NAT,
  )
  lr_final: float = _field(
    0.1,
    "cosine schedule: the final learning rate as a fraction of lr (1: constant after the warm-up)",
    "float",
    "objective and optimisation",
    check=lambda v: _is_num(v) and 0 <= v <= 1,
    must="a number in [0, 1]",
  )
  optimizer: str = _field(
    "adam",
    "adam, adamax (Efficient-VDVAE) or adamw (VDVAE; --weight-decay); all take --adam-b1, --adam-b2, --adam-eps",
    "str",
    "objective and optimisation",
    choices=OPTIMIZERS,
  )
  weight_decay: float = _field(
    0.0, "adamw: decoupled weight decay (VDVAE: 0.01)", "float", "objective and optimisation", **_NONNEG
  )
  adam_b1: float = _field(0.9, "Adam beta1", "float", "objective and optimisation", **_PROB)
  adam_b2: float = _field(0.999, "Adam beta2", "float", "objective and optimisation", **_PROB)
  adam_eps: float = _field(1e-8, "Adam epsilon (Burda et al. use 1e-4)", "float", "objective and optimisation", **_POS)
  clip_grad_norm: float | None = _field(
    None,
    "clip the gradient to this global norm before Adam (unset: no clipping)",
    "float",
    "objective and optimisation",
    optional=True,
    **_POS,
  )
  skip_grad_norm: float | None = _field(
    None,
    "skip updates whose gradient norm exceeds this (non-finite updates are always skipped)",
    "float",
    "objective and optimisation",
    optional=True,
    **_POS,
  )
  max_consecutive_skips: int = _field(
    100,
    "stop the run after this many skipped updates in a row",
    "int",
    "objective and optimisation",
    resumable=True,
    **_NAT,
  )
  ema_decay: float = _field(
    0.0,
    "keep an exponential moving average of the parameters with this decay (e.g. 0.999); "
    "it is evaluated, sampled and checkpointed (0: none)",
    "float",
    "objective and optimisation",
    vmapped=True,
    **_PROB,
  )
  seed: int = _field(
    0,
    "seed of the initialisation, the data order, the binarization draws and the z samples",
    "int",
    "objective and optimisation",
    check=_is_int,
    must="an integer",
    vmapped=True,
  )
  # run
  eval_batch_size: int = _field(
    1000, "test examples per evaluation chunk (bounds memory; chunk i draws its own z)", "int", "run", **_NAT
  )
  checkpoint_every: int = _field(
    1, "save a checkpoint every N epochs (and at the end)", "int", "run", resumable=True, **_NAT
  )
  keep_checkpoints: int = _field(3, "keep the newest N checkpoints", "int", "run", resumable=True, **_NAT)

  def __post_init__(self):
    for name in ("hidden", "hidden2", "conv_channels", "flow_hidden", "ladder_layers", "ladder_widths"):
      if isinstance(getattr(self, name), list):
        object.__setattr__(self, name, tuple(getattr(self, name)))
    if self.lr_schedule == "cosine" and self.lr_decay_epochs is None:  # fixed at the start: a resume keeps it
      object.__setattr__(self, "lr_decay_epochs", self.epochs)
    for name, registry in CHOICES.items():  # the chosen components' defaults for the fields left unset
      entry = registry.get(getattr(self, name))
      for field, value in entry.defaults_for(self).items() if entry is not None else ():
        if field in SPECS and getattr(self, field) is None:
          object.__setattr__(self, field, value)

  @staticmethod
  def spec(name: str) -> FieldSpec:
    """The :class:`FieldSpec` of the field ``name``."""
    return SPECS[name]

  @property
  def builtin_model(self) -> bool:
    return self.model in MODELS

  def replace(self, **changes: Any) -> Config:
    """A copy with ``changes`` applied (``dataclasses.replace``).

    The architecture fields keep their resolved values: to change ``model``, build a new
    ``Config(model=...)`` so that it takes that model's defaults.
    """
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    """Every field as JSON-ready values (tuples as lists)."""
    d = dataclasses.asdict(self)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

  def record(self, data_shape: tuple[int, ...] | None = None, unused: Collection[str] = ()) -> dict[str, Any]:
    """What ``config.json`` holds: the fields but ``unused`` ones (a model or objective handed over in
    Python does not read them), and the ``data_shape`` of one example."""
    d = {k: v for k, v in self.to_dict().items() if k not in unused}
    return d if data_shape is None else {**d, "data_shape": list(data_shape)}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Config:
    """Inverse of :meth:`to_dict` (and of :meth:`record`: ``data_shape`` is not a field, missing fields
    take their defaults); unknown keys are an error."""
    d = {k: v for k, v in d.items() if k not in RECORDED}
    unknown = sorted(set(d) - set(SPECS))
    if unknown:
      raise JaxvaeError(f"unknown config keys {unknown}: remove them (known keys: {sorted(SPECS)})")
    return cls(**d)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def validate(self) -> Config:
    """Checks every value, then the rules of the chosen components; raises :class:`JaxvaeError` naming the fix."""

    for name, spec in SPECS.items():
      if message := spec.error(name, getattr(self, name)):
        raise JaxvaeError(message)
    for name, registry in CHOICES.items():  # the rules each chosen component brings
      entry = registry.get(getattr(self, name))
      if entry is not None and entry.check is not None and (message := entry.check(self)):
        raise JaxvaeError(message)
    return self


SPECS: dict[str, FieldSpec] = {f.name: f.metadata["spec"] for f in dataclasses.fields(Config)}
#: The fields that a sweep vmaps (they change values in the state or the keys, never shapes).
VMAPPED = tuple(name for name, spec in SPECS.items() if spec.vmapped)
#: The fields that a resumed run may change (how long and how it checkpoints, not what it trains).
RESUMABLE = tuple(name for name, spec in SPECS.items() if spec.resumable)


def parse_value(name: str, text: str) -> Any:
  """A command-line or ``--grid`` string as a value of the field ``name``.

  Raises:
    JaxvaeError: ``name`` is not a field, or ``text`` does not parse as its kind.
  """
  if name not in SPECS:
    raise JaxvaeError(f"{name!r} is not a config field: use one of {', '.join(sorted(SPECS))}")
  spec = SPECS[name]
  try:
    return spec.parse(text)
  except ValueError:
    kind = {"int": "an integer", "float": "a number", "ints": "comma-separated integers, e.g. 200,200"}[spec.kind]
    raise JaxvaeError(f"{name}={text!r} is not {kind}" + (" (or none)" if spec.optional else "")) from None


def add_flags(parser, defaults: Config | None = None) -> None:
  """Adds one ``--flag`` per config field to an argparse parser, grouped as in the specs.

  Flags default to None (unset), so that only what is given overrides a config.
  """
  import argparse

  defaults = defaults or Config()
  groups: dict[str, Any] = {}
  for name, spec in SPECS.items():
    group = groups.get(spec.group) or groups.setdefault(spec.group, parser.add_argument_group(spec.group))

    def parse(text: str, name: str = name):
      try:
        return parse_value(name, text)
      except JaxvaeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None

    default = getattr(defaults, name)
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    group.add_argument(
      f"--{name.replace('_', '-')}",
      dest=name,
      type=parse,
      metavar=spec.kind.upper(),
      help=f"{spec.help} (default: {shown if shown is not None else 'unset'})",
    )


def overrides_from_args(args) -> dict[str, Any]:
  """The config fields given as flags (the rest keep the defaults of their model)."""
  return {k: v for k, v in vars(args).items() if k in SPECS and v is not None}


def flag_table() -> str:
  """The table of every flag (``jaxvae flags``): default, whether a sweep vmaps it, whether --resume may change it."""
  defaults = Config()
  lines = ["| flag | default | sweep | resume | meaning |", "|---|---|---|---|---|"]
  for name, spec in SPECS.items():
    d = getattr(defaults, name)
    shown = ",".join(map(str, d)) if isinstance(d, tuple) else "unset" if d is None else str(d)
    sweep = "vmapped" if spec.vmapped else "grouped"
    resume = "may change" if spec.resumable else "fixed"
    lines.append(f"| `--{name.replace('_', '-')}` | {shown} | {sweep} | {resume} | {spec.help.replace('|', '/')} |")
  return "\n".join(lines)


#: The fields only jaxvae's own models and objectives read. A model (or an objective) handed over in
#: Python as a value does not read them, so its run folder does not record them (:meth:`Config.record`).
BUILT_IN_MODEL_FIELDS = tuple(
  name for name, spec in SPECS.items() if spec.group == "model" and name not in ("model", "latent_dim", "likelihood")
)
BUILT_IN_OBJECTIVE_FIELDS = ("k", "beta", "warmup_epochs", "free_bits", "kl_balance")
