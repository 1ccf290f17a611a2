"""Presets: the papers' configurations by name, for ``jaxvae train --preset NAME``.

A preset is a set of config fields; flags given beside ``--preset`` override them. Each names
where it comes from and, where the paper gives one, the parameter count of the paper's model, which
``jaxvae train`` prints beside the built model's own.

================  ===============================================================  ===============
preset            what                                                             the paper's
================  ===============================================================  ===============
vdvae-mnist-tiny  a 6-layer VDVAE on binarized MNIST that trains on a 2-core CPU   (none)
vdvae-mnist       Efficient-VDVAE's binarized-MNIST hierarchy (23 layers of 32)    (not reported)
vdvae-cifar10     VDVAE's CIFAR-10 model: width 384, 45 stochastic layers          39M parameters
================  ===============================================================  ===============
"""

from __future__ import annotations

from typing import Any, NamedTuple

from jaxvae.errors import JaxvaeError


class Preset(NamedTuple):
  """A named configuration.

  Attributes:
    fields: config fields and their values.
    about: one line: what it is and where it comes from.
    paper_parameters: the parameter count the paper reports for its model, or None.
  """

  fields: dict[str, Any]
  about: str
  paper_parameters: int | None = None


_MNIST_TRAINING = dict(
  dataset="mnist",
  likelihood="bernoulli",
  optimizer="adamax",
  lr=1e-3,
  lr_schedule="cosine",
  lr_warmup_steps=100,
  lr_final=0.1,
  batch_size=32,
  kl_balance="nvae",
)

PRESETS: dict[str, Preset] = {
  "vdvae-mnist-tiny": Preset(
    dict(
      model="vdvae",
      vdvae_width=32,
      vdvae_zdim=4,
      vdvae_bottleneck=0.25,
      vdvae_encoder="28x1,28d2,14x1,14d2,7x1,7d7,1x1",
      vdvae_decoder="1x1,7m1,7x1,14m7,14x1,28m14",
      epochs=5,
      warmup_epochs=0.5,
      ema_decay=0.999,
      **_MNIST_TRAINING,
    ),
    "a VDVAE of 6 stochastic layers at 1, 7, 14 and 28 pixels (MNIST's own sizes, unpadded), width 32, "
    "trained with Efficient-VDVAE's recipe (Adamax, cosine schedule, KL warm-up with balancing) for 5 epochs",
  ),
  "vdvae-mnist": Preset(
    dict(
      model="vdvae",
      vdvae_width=32,
      vdvae_widths="1:512,4:256,8:128,16:64",
      vdvae_zdim=32,
      vdvae_bottleneck=1.0,
      vdvae_encoder="32d2,16x1,16d2,8x9,8d2,4x4,4d4,1x5",
      vdvae_decoder="1x5,4m1,4x4,8m4,8x9,16m8,16x1,32m16",
      epochs=107,  # Efficient-VDVAE's 200,000 steps of 32 over 60,000 images
      warmup_epochs=0.27,  # their 500 annealing steps
      ema_decay=0.9999,
      skip_grad_norm=800 * 784,  # their threshold, on a loss per pixel; jaxvae's loss is per image
      **{**_MNIST_TRAINING, "lr_final": 0.1},
    ),
    "Efficient-VDVAE's binarized-MNIST configuration (Hazami et al. 2022): 23 stochastic layers of 32 channels "
    "at 1, 4, 8, 16 and 32 pixels (MNIST padded to 32), widths 512 to 32, in VDVAE's blocks",
  ),
  "vdvae-cifar10": Preset(
    dict(
      model="vdvae",
      dataset="tfds:cifar10",
      likelihood="discretized-logistic",
      mixtures=10,
      vdvae_width=384,
      vdvae_zdim=16,
      vdvae_bottleneck=0.25,
      vdvae_encoder="32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3",
      vdvae_decoder="1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21",
      vdvae_scale="exp",
      optimizer="adamw",
      weight_decay=0.01,
      adam_b2=0.9,
      lr=2e-4,
      lr_schedule="cosine",
      lr_warmup_steps=100,
      lr_final=1.0,  # VDVAE: a linear warm-up, then constant
      batch_size=32,
      epochs=640,  # about 1M steps of 32 over 50,000 images, as the paper trains
      ema_decay=0.9999,
      clip_grad_norm=200 * 3072,  # VDVAE's thresholds, on a loss per dimension; jaxvae's is per image
      skip_grad_norm=400 * 3072,
    ),
    "VDVAE's CIFAR-10 model (Child 2021): width 384, bottleneck 96, 45 stochastic layers of 16 channels, "
    "a discretized mixture of 10 logistics, AdamW (b2 0.9, weight decay 0.01), lr 2e-4, EMA 0.9999",
    paper_parameters=39_000_000,
  ),
}


def preset_fields(name: str) -> dict[str, Any]:
  """The config fields of the preset ``name``.

  Raises:
    JaxvaeError: no preset of that name.
  """
  if name not in PRESETS:
    raise JaxvaeError(f"--preset {name!r} is unknown: use one of {', '.join(PRESETS)}")
  return dict(PRESETS[name].fields)
