"""The VDVAE of jaxvae.core.vdvae in eager PyTorch: the same blocks, shapes and loss, for benchmarks/vdvae_step.py.

Built from the same Architecture (block strings, width, zdim, bottleneck) and with the same parameter
count as ``jaxvae.core.vdvae.vdvae_from``; it follows openai/vdvae's vae.py (Block, DecBlock,
Encoder, Decoder) with the softplus scale and a Bernoulli likelihood on images padded to the
decoder's resolution and cropped back. Only its speed is compared: its initialisation is PyTorch's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jaxvae.core.vdvae import Architecture

LN2 = math.log(2.0)


def conv(cin: int, cout: int, size: int) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, size, padding=size // 2)


class Block(nn.Module):
  def __init__(self, cin: int, middle: int, cout: int, residual: bool = True, use_3x3: bool = True):
    super().__init__()
    k = 3 if use_3x3 else 1
    self.c1, self.c2, self.c3, self.c4 = (
      conv(cin, middle, 1),
      conv(middle, middle, k),
      conv(middle, middle, k),
      conv(middle, cout, 1),
    )
    self.residual = residual

  def forward(self, x):
    h = self.c4(
      F.gelu(
        self.c3(
          F.gelu(self.c2(F.gelu(self.c1(F.gelu(x, approximate="tanh")), approximate="tanh")), approximate="tanh")
        ),
        approximate="tanh",
      )
    )
    return x + h if self.residual else h


def log_scale(raw):
  return torch.log(F.softplus(LN2 * raw)) - math.log(LN2)


class DecoderBlock(nn.Module):
  def __init__(self, arch: Architecture, res: int):
    super().__init__()
    w, m, z, use_3x3 = arch.width_at(res), arch.middle(res), arch.zdim, res > 2
    self.zdim = z
    self.enc = Block(2 * w, m, 2 * z, False, use_3x3)
    self.prior = Block(w, m, 2 * z + w, False, use_3x3)
    self.z_proj = conv(z, w, 1)
    self.resnet = Block(w, m, w, True, use_3x3)

  def forward(self, s, a):
    qm, q_raw = self.enc(torch.cat([s, a], 1)).chunk(2, 1)
    out = self.prior(s)
    pm, p_raw, xpp = out[:, : self.zdim], out[:, self.zdim : 2 * self.zdim], out[:, 2 * self.zdim :]
    s = s + xpp
    q_ls, p_ls = log_scale(q_raw), log_scale(p_raw)
    z = qm + torch.exp(q_ls) * torch.randn_like(qm)
    kl = 0.5 * (torch.exp(2 * (q_ls - p_ls)) + ((qm - pm) * torch.exp(-p_ls)) ** 2 - 1) - (q_ls - p_ls)
    s = self.resnet(s + self.z_proj(z))
    return s, kl.sum((1, 2, 3))


class TorchVDVAE(nn.Module):
  def __init__(self, arch: Architecture, channels: int = 1):
    super().__init__()
    self.arch = arch
    w = arch.width
    assert not arch.widths, "one width at every resolution"
    self.in_conv = conv(channels, w, 3)
    self.enc_blocks = nn.ModuleList([Block(w, arch.middle(r), w, True, r > 2) for r, _ in arch.encoder])
    self.dec_blocks = nn.ModuleList([DecoderBlock(arch, r) for r, _ in arch.decoder])
    self.biases = nn.ParameterDict({str(r): nn.Parameter(torch.zeros(1, w, r, r)) for r in arch.resolutions})
    self.gain = nn.Parameter(torch.ones(1, w, 1, 1))
    self.bias = nn.Parameter(torch.zeros(1, w, 1, 1))
    self.out = conv(w, channels, 1)

  def loss(self, x):
    """The negative ELBO, nats per image (batch mean), of binary images x [B, C, H, W]."""
    arch, size = self.arch, self.arch.image
    pad = (size - x.shape[-1]) // 2
    h = self.in_conv(F.pad(x, (pad, size - x.shape[-1] - pad, pad, size - x.shape[-2] - pad)))
    acts = {h.shape[-1]: h}
    for block, (_, down) in zip(self.enc_blocks, arch.encoder):
      h = block(h)
      if down:
        h = F.avg_pool2d(h, down)
      acts[h.shape[-1]] = h
    states, kl = {}, 0.0
    for block, (r, mixin) in zip(self.dec_blocks, arch.decoder):
      s = states.get(r, self.biases[str(r)].expand(x.shape[0], -1, -1, -1))
      if mixin is not None:
        s = s + F.interpolate(states[mixin], scale_factor=r // mixin)
      s, kl_l = block(s, acts[r])
      states[r] = s
      kl = kl + kl_l
    logits = self.out(states[size] * self.gain + self.bias)[..., pad : pad + x.shape[-2], pad : pad + x.shape[-1]]
    log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    return (kl - log_px).mean()
