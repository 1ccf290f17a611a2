"""A very deep VAE: VDVAE's top-down hierarchy of residual blocks over several resolutions.

Child (2021). A bottom-up encoder of residual blocks over resolutions (32, 16, 8, 4, 1 for
32x32 images) keeps its activation a_r at each resolution r. The top-down path starts from a
learned constant and runs L blocks, each holding one stochastic layer z_l of ``zdim`` channels
at its resolution; layer 1 (the top, at the lowest resolution) comes first:

  prior       p_theta(z_l | z_<l)    = N(mu_p, sigma_p^2),  (mu_p, sigma_p, h_p) = f_prior(s_l)
  posterior   q_phi(z_l | x, z_<l)   = N(mu_q, sigma_q^2),  (mu_q, sigma_q) = f_q([s_l, a_r])
  state       s_l' = s_l + h_p,  s_{l+1} = Res(s_l' + W_z z_l)

where s_l is the top-down state (it carries z_<l: both distributions read the same features), every f
a bottleneck block (1x1 -> 3x3 -> 3x3 -> 1x1 convolutions, GELU before each) and Res the same block
with a skip connection. Moving up a resolution upsamples the state (nearest neighbour). The
likelihood p_theta(x | z) reads the last state, s_L * gain + bias, through a 1x1 convolution.

  ELBO(x) = E_q[ log p_theta(x | z) ] - sum_l E_q[ KL(q(z_l | x, z_<l) || p(z_l | z_<l)) ],

each KL closed-form at the drawn z_<l (:attr:`jaxvae.Posterior.sample_kl`), summed over its
channels and positions: the per-layer KL of the objectives, warm-up, KL balancing and TensorBoard.

Initialisation (Child 2021, sec. 3.3): the last convolution of every residual block and the
projection W_z are scaled by 1/sqrt(number of blocks), and the prior's last convolution starts at
zero, so that at initialisation p(z_l | z_<l) = N(0, I) and the state passes through unchanged.
The scale sigma is ``softplus_beta(raw)`` with beta = ln 2 (softplus_beta(0) = 1; Hazami et al.
2022, whose gradient is smoother than exp's for large raw values), or ``exp(raw)`` as in VDVAE.

The architecture is one string per path, as the papers' configurations write it:
``"32x2,32d2,16x2,16d2,8x2,8d2,4x2,4d4,1x2"`` (encoder: N blocks at resolution r ``rxN``, one
block then average-pooling by k ``rdk``) and ``"1x2,4m1,4x2,8m4,8x2,16m8,16x2,32m16,32x2"``
(decoder: ``rxN`` N blocks at r, ``rmk`` one block at r that first upsamples the state of k).
Images smaller than the top resolution (MNIST's 28x28) are zero-padded to it in the encoder and
cropped back after the output convolution.

As a :class:`jaxvae.VAE` (built with :meth:`jaxvae.VAE.from_modules`, as a user's model is): the
encoder is :class:`VDVAEEncoder`, the top-down blocks live in ``params["prior"]`` and serve both
the prior and the posterior (:func:`top_down`), and the decoder is the output convolution
(:class:`VDVAEOutput`). The latent z is the tuple ``(s, z_1, ..., z_L)``: s, the last top-down
state ``[..., H * W * width]``, is what the decoder reads, a deterministic function of
z_1..z_L that the sampler hands over so that the decoder does not run the hierarchy again; each
z_l is flattened to ``[..., r * r * zdim]``. log q and log p score z_1..z_L only (s given z is
a point mass under both).

References:
  Child (2021), "Very Deep VAEs Generalize Autoregressive Models and Can Outperform Them on
  Images", ICLR (github.com/openai/vdvae).
  Hazami, Mama & Thurairatnam (2022), "Efficient-VDVAE: Less is more", arXiv:2203.13751.
  Vahdat & Kautz (2020), "NVAE: A Deep Hierarchical Variational Autoencoder", NeurIPS.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.core import distributions as D
from jaxvae.core.model import MODELS, VAE
from jaxvae.core.posteriors import Posterior
from jaxvae.core.priors import Prior
from jaxvae.core.vaes import likelihood_of
from jaxvae.errors import JaxvaeError

SCALES = ("softplus", "exp")
CHECKPOINTING = ("off", "blocks")
_LN2 = math.log(2.0)


# ---------------------------------------------------------------------------
# The architecture strings.
# ---------------------------------------------------------------------------


class Architecture(NamedTuple):
  """A VDVAE as its papers' configurations describe it.

  Attributes:
    encoder: one ``(resolution, down)`` per bottom-up block; ``down`` is the pooling factor after
      the block (None: none).
    decoder: one ``(resolution, mixin)`` per top-down block, each with a stochastic layer;
      ``mixin`` is the resolution whose state the block upsamples first (None: none).
    width: channels of every block's input and output.
    zdim: channels of every stochastic layer.
    bottleneck: the inner width of a block as a fraction of its width (0.25).
    widths: ``(resolution, width)`` pairs that override ``width`` at those resolutions (VDVAE's
      ``custom_width_str``); a state moving to a wider resolution is zero-padded, to a narrower
      one cut to its first channels.
  """

  encoder: tuple[tuple[int, int | None], ...]
  decoder: tuple[tuple[int, int | None], ...]
  width: int
  zdim: int
  bottleneck: float = 0.25
  widths: tuple[tuple[int, int], ...] = ()

  @property
  def image(self) -> int:
    """The resolution the decoder ends at (images are padded to it)."""
    return self.decoder[-1][0]

  def width_at(self, res: int) -> int:
    return dict(self.widths).get(res, self.width)

  def middle(self, res: int) -> int:
    return max(1, int(self.width_at(res) * self.bottleneck))

  @property
  def resolutions(self) -> tuple[int, ...]:
    """The decoder's resolutions, lowest first."""
    return tuple(sorted({r for r, _ in self.decoder}))

  @property
  def layer_sizes(self) -> tuple[int, ...]:
    """The size r * r * zdim of each stochastic layer, top (layer 1) first."""
    return tuple(r * r * self.zdim for r, _ in self.decoder)


_ENCODER_PART = re.compile(r"^(\d+)(?:x(\d+)|d(\d+))$")
_DECODER_PART = re.compile(r"^(\d+)(?:x(\d+)|m(\d+))$")


def parse_encoder(text: str) -> tuple[tuple[int, int | None], ...]:
  """``"32x2,32d2,16x1,16d2,..."`` -> ((32, None), (32, None), (32, 2), (16, None), (16, 2), ...)."""
  blocks: list[tuple[int, int | None]] = []
  for part in text.split(","):
    m = _ENCODER_PART.match(part.strip())
    if m is None:
      raise JaxvaeError(
        f"vdvae_encoder {text!r}: {part!r} is not RxN (N blocks at resolution R) or RdK (a block, then pooling by K), "
        "e.g. 32x2,32d2,16x2,16d2,8x2,8d2,4x2,4d4,1x2"
      )
    res, count, down = int(m[1]), m[2], m[3]
    blocks += [(res, None)] * int(count) if count else [(res, int(down))]
  return tuple(blocks)


def parse_decoder(text: str) -> tuple[tuple[int, int | None], ...]:
  """``"1x2,4m1,4x2,..."`` -> ((1, None), (1, None), (4, 1), (4, None), (4, None), ...)."""
  blocks: list[tuple[int, int | None]] = []
  for part in text.split(","):
    m = _DECODER_PART.match(part.strip())
    if m is None:
      raise JaxvaeError(
        f"vdvae_decoder {text!r}: {part!r} is not RxN (N blocks at resolution R) or RmK (a block at R that upsamples "
        "the state of resolution K), e.g. 1x2,4m1,4x2,8m4,8x2,16m8,16x2,32m16,32x2"
      )
    res, count, mixin = int(m[1]), m[2], m[3]
    blocks += [(res, None)] * int(count) if count else [(res, int(mixin))]
  return tuple(blocks)


def architecture_problem(arch: Architecture) -> str | None:
  """What is wrong with an architecture (resolutions that do not chain), or None."""
  res = arch.encoder[0][0] if arch.encoder else None
  for r, down in arch.encoder:
    if r != res:
      return f"vdvae_encoder: a block at resolution {r} follows resolution {res}: write the blocks in order"
    if down is not None:
      if res % down:
        return f"vdvae_encoder: resolution {res} does not divide by {down}"
      res //= down
  seen: set[int] = set()
  for r, mixin in arch.decoder:
    if mixin is not None and (mixin not in seen or r % mixin):
      return (
        f"vdvae_decoder: {r}m{mixin} upsamples resolution {mixin}, which no block before it has "
        f"(or {r}/{mixin} is not whole): write the lower resolutions first"
      )
    if r not in seen and seen and mixin is None:
      return f"vdvae_decoder: the first block at resolution {r} must upsample a lower one: write {r}m<lower>"
    seen.add(r)
  missing = sorted(set(arch.resolutions) - {r for r, _ in arch.encoder} - {res})
  if missing:
    return f"vdvae_encoder has no block at resolution(s) {missing}, which the decoder's posteriors read"
  if arch.encoder[0][0] != arch.image:
    return f"vdvae_encoder starts at {arch.encoder[0][0]} but the decoder ends at {arch.image}: make them agree"
  return None


# ---------------------------------------------------------------------------
# The networks.
# ---------------------------------------------------------------------------


def softplus_beta(raw: jax.Array, beta: float = _LN2) -> jax.Array:
  """log of softplus_beta(raw) = log( log(1 + exp(beta raw)) / beta ): a log sigma with sigma(0) = 1."""
  return jnp.log(jax.nn.softplus(beta * raw)) - math.log(beta)


def _log_scale(raw: jax.Array, scale: str) -> jax.Array:
  return softplus_beta(raw) if scale == "softplus" else raw


_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DIMENSIONS)


@jax.custom_vjp
def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A stride-1 'SAME' convolution of x ``[N, H, W, C]`` by an odd kernel ``[k, k, C, O]``.

  The same values and gradients as ``lax.conv_general_dilated``. Its kernel gradient is k^2
  matrix products, dK[i, j] = x^T (dy shifted by (i, j)) over the N H W positions, instead of
  XLA's convolution of x by dy, which XLA's CPU backend computes several times more slowly
  (benchmarks/vdvae_step.py).
  """
  return _xla_conv(x, kernel)


def _conv_same_fwd(x, kernel):
  return _xla_conv(x, kernel), (x, kernel)


def _conv_same_bwd(saved, dy):
  x, kernel = saved
  k, p = kernel.shape[0], kernel.shape[0] // 2
  dx = jax.vjp(lambda x: _xla_conv(x, kernel), x)[1](dy)[0]
  n, h, w = x.shape[0] * x.shape[1] * x.shape[2], x.shape[1], x.shape[2]
  dy_padded = jnp.pad(dy, ((0, 0), (p, p), (p, p), (0, 0)))
  x2 = x.reshape(n, -1).T
  shifted = [
    dy_padded[:, k - 1 - i : k - 1 - i + h, k - 1 - j : k - 1 - j + w].reshape(n, -1)
    for i in range(k)
    for j in range(k)
  ]
  dkernel = jnp.stack([x2 @ d for d in shifted]).reshape(kernel.shape)
  return dx, dkernel


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


class Conv(nn.Module):
  """A stride-1 'SAME' convolution with a bias: a matrix product for 1x1, ``conv_same`` otherwise.

  Attributes:
    features: output channels.
    size: the kernel's side (odd).
    scale: the kernel's initial standard deviation times sqrt(fan-in) (1: LeCun normal).
    zero: the kernel starts at zero.
  """

  features: int
  size: int = 1
  scale: float = 1.0
  zero: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = nn.initializers.zeros if self.zero else nn.initializers.variance_scaling(self.scale**2, "fan_in", "normal")
    kernel = self.param("kernel", init, (self.size, self.size, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    y = x @ kernel[0, 0] if self.size == 1 else conv_same(x, kernel)
    return y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


def _conv(features: int, size: int, scale: float = 1.0, zero: bool = False) -> Conv:
  return Conv(features, size, scale, zero)


class Block(nn.Module):
  """The bottleneck block: 1x1 -> 3x3 -> 3x3 -> 1x1 convolutions, GELU before each (1x1 only at r <= 2).

  Attributes:
    middle: the inner width.
    out: the output width.
    residual: add the input to the output.
    use_3x3: 3x3 inner convolutions (False at resolutions 1 and 2, as in VDVAE).
    last_scale: the last convolution's initial scale (1/sqrt(blocks) in residual paths).
    zero_last: the last convolution starts at zero (the prior's).
  """

  middle: int
  out: int
  residual: bool = True
  use_3x3: bool = True
  last_scale: float = 1.0
  zero_last: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = 3 if self.use_3x3 else 1
    h = _conv(self.middle, 1)(nn.gelu(x))
    h = _conv(self.middle, k)(nn.gelu(h))
    h = _conv(self.middle, k)(nn.gelu(h))
    h = _conv(self.out, 1, self.last_scale, self.zero_last)(nn.gelu(h))
    return x + h if self.residual else h


def parse_widths(text: str | None) -> tuple[tuple[int, int], ...]:
  """``"1:512,4:256"`` -> ((1, 512), (4, 256)); None or "" -> ()."""
  pairs = []
  for part in (text or "").split(","):
    if not part.strip():
      continue
    m = re.match(r"^\s*(\d+):(\d+)\s*$", part)
    if m is None:
      raise JaxvaeError(f"vdvae_widths {text!r}: {part!r} is not R:W (width W at resolution R), e.g. 1:512,4:256,8:128")
    pairs.append((int(m[1]), int(m[2])))
  return tuple(pairs)


def _fit(x: jax.Array, channels: int) -> jax.Array:
  """x [..., C] with ``channels`` channels: zero-padded, or cut to its first ones (VDVAE's)."""
  c = x.shape[-1]
  if c >= channels:
    return x[..., :channels]
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, channels - c)])


def _pad(x: jax.Array, size: int) -> jax.Array:
  """[B, H, W, C] zero-padded to [B, size, size, C], centred (MNIST's 28 -> 32)."""
  dh, dw = size - x.shape[1], size - x.shape[2]
  return jnp.pad(x, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))


class VDVAEEncoder(nn.Module):
  """The bottom-up path: x [B, H, W, C] -> the last activation at each resolution the decoder reads.

  Returns a tuple of ``[B, r, r, width]``, one per resolution of ``arch.resolutions`` (lowest first).
  """

  arch: Architecture

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
    arch = self.arch
    h = _conv(arch.width_at(arch.image), 3)(_pad(x, arch.image))
    acts = {h.shape[1]: h}
    scale = 1.0 / math.sqrt(len(arch.encoder))
    for r, down in arch.encoder:
      h = Block(arch.middle(r), arch.width_at(r), True, r > 2, scale)(h)
      if down is not None:
        h = _fit(nn.avg_pool(h, (down, down), strides=(down, down)), arch.width_at(r // down))
      acts[h.shape[1]] = h
    return tuple(acts[r] for r in arch.resolutions)


class Layer(NamedTuple):
  """One stochastic layer's draw and distributions, ``[N, r, r, zdim]`` each."""

  z: jax.Array
  q: D.Gaussian | None
  p: D.Gaussian


class DecoderBlock(nn.Module):
  """One top-down block with its stochastic layer (VDVAE's DecBlock).

  ``__call__(s, a, eps, z)``: the state s ``[N, r, r, width]``, the encoder's activation a (None:
  sample the prior), and either the noise eps (draw z) or a given z. Returns the next state and
  the :class:`Layer`.
  """

  arch: Architecture
  res: int
  scale: str = "softplus"

  @nn.compact
  def __call__(self, s, a, eps, z):
    arch, use_3x3 = self.arch, self.res > 2
    blocks, width, middle = len(arch.decoder), arch.width_at(self.res), arch.middle(self.res)
    q = None
    if a is not None:
      q_out = Block(middle, 2 * arch.zdim, False, use_3x3, name="posterior")(jnp.concatenate([s, a], -1))
      q_mean, q_raw = jnp.split(q_out, 2, -1)
      q = D.Gaussian(q_mean, _log_scale(q_raw, self.scale))
    out = Block(middle, 2 * arch.zdim + width, False, use_3x3, zero_last=True, name="prior")(s)
    p = D.Gaussian(out[..., : arch.zdim], _log_scale(out[..., arch.zdim : 2 * arch.zdim], self.scale))
    s = s + out[..., 2 * arch.zdim :]
    if z is None:
      draw_from = p if q is None else q
      z = draw_from.mean + jnp.exp(draw_from.log_scale) * eps
    s = s + Conv(width, 1, 1.0 / math.sqrt(blocks), name="z_proj")(z)
    s = Block(middle, width, True, use_3x3, 1.0 / math.sqrt(blocks), name="resnet")(s)
    return s, Layer(z, q, p)


class TopDown(nn.Module):
  """The top-down path: L :class:`DecoderBlock` s from learned constants to the last state.

  ``__call__(acts, eps, zs)`` with ``acts`` the encoder's activations (None: the prior), and
  either per-layer noise ``eps`` or given ``zs`` (each ``[N, r, r, zdim]``). Returns
  ``(s * gain + bias [N, H, H, width], layers)``.

  Attributes:
    arch: the :class:`Architecture`.
    scale: ``"softplus"`` or ``"exp"``: how a raw output becomes sigma.
    checkpoint: recompute each block's activations in the backward pass (``jax.checkpoint``)
      instead of keeping them: less memory, about one more forward pass of compute.
  """

  arch: Architecture
  scale: str = "softplus"
  checkpoint: bool = False

  @nn.compact
  def __call__(self, acts, eps, zs, batch: int):
    arch = self.arch
    block_type = nn.remat(DecoderBlock) if self.checkpoint else DecoderBlock
    by_res = dict(zip(arch.resolutions, acts)) if acts is not None else {}
    states: dict[int, jax.Array] = {}
    layers = []
    for i, (r, mixin) in enumerate(arch.decoder):
      width = arch.width_at(r)
      if r not in states:
        bias = self.param(f"bias_{r}", nn.initializers.zeros, (1, r, r, width))
        states[r] = jnp.broadcast_to(bias, (batch, r, r, width))
      s = states[r]
      if mixin is not None:
        f = r // mixin
        s = s + jnp.repeat(jnp.repeat(_fit(states[mixin], width), f, axis=1), f, axis=2)
      s, layer = block_type(arch, r, self.scale, name=f"block_{i}")(
        s, by_res.get(r), None if eps is None else eps[i], None if zs is None else zs[i]
      )
      states[r] = s
      layers.append(layer)
    gain = self.param("gain", nn.initializers.ones, (arch.width_at(arch.image),))
    bias = self.param("bias", nn.initializers.zeros, (arch.width_at(arch.image),))
    return states[arch.image] * gain[None, None, None] + bias[None, None, None], tuple(layers)


class VDVAEOutput(nn.Module):
  """The decoder: the last top-down state ``[B, H * H * width]`` -> the likelihood's raw output.

  A 1x1 convolution to ``out_shape[-1]`` channels, cropped to ``out_shape[:2]`` (the padding of
  :class:`VDVAEEncoder` undone).
  """

  arch: Architecture
  out_shape: tuple[int, ...]

  @nn.compact
  def __call__(self, s: jax.Array) -> jax.Array:
    h = self.arch.image
    out = Conv(self.out_shape[-1])(s.reshape(s.shape[0], h, h, self.arch.width_at(h)))
    top, left = (h - self.out_shape[0]) // 2, (h - self.out_shape[1]) // 2
    return out[:, top : top + self.out_shape[0], left : left + self.out_shape[1]]


# ---------------------------------------------------------------------------
# The prior and posterior as jaxvae values.
# ---------------------------------------------------------------------------


def top_down(arch: Architecture, scale: str = "softplus", checkpoint: bool = False):
  """VDVAE's prior p(z_1) prod p(z_l | z_<l) and posterior prod q(z_l | x, z_<l), sharing the top-down path.

  The :class:`TopDown` network lives in ``params["prior"]``; the posterior reads it there (it has
  no parameters of its own) with the encoder's activations ``h`` (:class:`VDVAEEncoder`).
  Leading sample axes of ``sample_shape`` (or of a given z) are folded into the batch.

  Args:
    arch: the :class:`Architecture`.
    scale: ``"softplus"`` (Efficient-VDVAE) or ``"exp"`` (VDVAE): how sigma is computed.
    checkpoint: ``jax.checkpoint`` each top-down block (less memory, more compute).

  Returns:
    ``(prior, posterior)`` for :meth:`jaxvae.VAE.from_modules`.
  """
  net = TopDown(arch, scale, checkpoint)
  shapes = [(r, r, arch.zdim) for r, _ in arch.decoder]

  def run(params, acts, batch, eps=None, zs=None):
    return net.apply({"params": params["prior"]}, acts, eps, zs, batch)

  def flat(a, lead):
    return a.reshape(lead + (-1,))

  def noise(key, n):
    keys = jax.random.split(key, len(shapes))
    return [jax.random.normal(k, (n,) + shape) for k, shape in zip(keys, shapes)]

  def init(key, data=None):
    del data
    acts = tuple(jnp.zeros((1, r, r, arch.width_at(r))) for r in arch.resolutions)
    return net.init(key, acts, noise(jax.random.key(0), 1), None, 1)["params"]

  def tile(h, lead):
    """The activations [B, ...] repeated for the sample axes: [prod(lead) * B, ...]."""
    n = math.prod(lead)
    return tuple(jnp.broadcast_to(a, (n,) + a.shape).reshape((-1,) + a.shape[1:]) for a in h)

  def unflat_z(z, lead):
    return [zl.reshape((-1,) + shape) for zl, shape in zip(z[1:], shapes)]

  def latent(s, layers, lead):
    return (flat(s, lead),) + tuple(flat(layer.z, lead) for layer in layers)

  def posterior_pass(params, h, key, sample_shape, z_given=None):
    batch = h[0].shape[0]
    lead = tuple(sample_shape) + (batch,) if z_given is None else z_given[1].shape[:-1]
    n = math.prod(lead)
    acts = tile(h, lead[:-1])
    if z_given is None:
      s, layers = run(params, acts, n, eps=noise(key, n))
    else:
      s, layers = run(params, acts, n, zs=unflat_z(z_given, lead))
    return s, layers, lead

  def per_layer(values, lead):
    return tuple(flat(v, lead) for v in values)

  def sample(params, h, key, sample_shape=()):
    s, layers, lead = posterior_pass(params, h, key, sample_shape)
    log_q = sum(jnp.sum(flat(D.gaussian_log_prob(l.q, l.z), lead), -1) for l in layers)
    return latent(s, layers, lead), log_q

  def sample_kl(params, h, key, sample_shape=()):
    s, layers, lead = posterior_pass(params, h, key, sample_shape)
    return latent(s, layers, lead), per_layer([D.gaussian_kl_per_dim(l.q, l.p) for l in layers], lead)

  def log_q(params, h, z):
    _, layers, lead = posterior_pass(params, h, None, (), z_given=z)
    return sum(jnp.sum(flat(D.gaussian_log_prob(l.q, l.z), lead), -1) for l in layers)

  def log_p(params, z):
    lead = z[1].shape[:-1]
    _, layers = run(params, None, math.prod(lead), zs=unflat_z(z, lead))
    return sum(jnp.sum(flat(D.gaussian_log_prob(l.p, l.z), lead), -1) for l in layers)

  def sample_prior(params, key, count):
    s, layers = run(params, None, count, eps=noise(key, count))
    return latent(s, layers, (count,))

  def gaussian(params, h):
    """q(z_1 | x), the top layer's posterior (the one layer that depends on x alone), flattened."""
    _, layers, lead = posterior_pass(params, h, jax.random.key(0), ())
    q = layers[0].q
    return D.Gaussian(flat(q.mean, lead), flat(q.log_scale, lead))

  def means(params, h, key):
    """E_q[z_l|x] of each layer, taken along the path of means: the mean of q(z_l | x, z_<l) at z_<l = their
    own means (one deterministic pass; Monte Carlo over z_<l would cost a pass per draw and add
    sigma^2 / draws of noise to every unit's variance across x, the statistic of active units)."""
    del key
    batch = h[0].shape[0]
    _, layers = run(params, h, batch, eps=[jnp.zeros((batch,) + shape) for shape in shapes])
    return tuple(flat(l.q.mean, (batch,)) for l in layers)

  prior = Prior(f"vdvae{len(shapes)}", init, log_p, sample_prior, None)
  posterior = Posterior(
    name=f"vdvae{len(shapes)}",
    init=lambda key: {},
    gaussian=gaussian,
    sample=sample,
    log_prob=log_q,
    means=means,
    sample_kl=sample_kl,
  )
  return prior, posterior


def vdvae_from(
  arch: Architecture, data_shape: tuple[int, ...], likelihood: Any, *, scale: str = "softplus", checkpoint: bool = False
) -> VAE:
  """A VDVAE of ``arch`` for examples of ``data_shape`` [H, W, C] with H, W <= ``arch.image``.

  Example:
    >>> arch = Architecture(parse_encoder("32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1"),
    ...                     parse_decoder("1x1,4m1,4x1,8m4,8x1,16m8,16x1,32m16,32x1"), width=32, zdim=4)
    >>> vae = vdvae_from(arch, (28, 28, 1), likelihoods.bernoulli((28, 28, 1)))
  """
  prior, posterior = top_down(arch, scale, checkpoint)
  return VAE.from_modules(
    VDVAEEncoder(arch),
    VDVAEOutput(arch, likelihood.output_shape),
    data_shape=data_shape,
    latent_dim=arch.image * arch.image * arch.width_at(arch.image),
    likelihood=likelihood,
    prior=prior,
    posterior=posterior,
    host_loop_on_cpu=True,
  )


# ---------------------------------------------------------------------------
# ``--model vdvae``.
# ---------------------------------------------------------------------------


def architecture_of(config: Any) -> Architecture:
  """The :class:`Architecture` of a config's ``vdvae_*`` fields."""
  return Architecture(
    parse_encoder(config.vdvae_encoder),
    parse_decoder(config.vdvae_decoder),
    config.vdvae_width,
    config.vdvae_zdim,
    config.vdvae_bottleneck,
    parse_widths(config.vdvae_widths),
  )


def vdvae_vae(config: Any, data_shape: tuple[int, ...], dtype=np.uint8) -> VAE:
  """``vdvae``, Child (2021): the top-down hierarchy of ``vdvae_encoder`` / ``vdvae_decoder`` blocks."""
  arch = architecture_of(config)
  if len(data_shape) != 3 or data_shape[0] > arch.image or data_shape[1] > arch.image:
    raise JaxvaeError(
      f"--model vdvae reads images [H, W, C] of at most {arch.image}x{arch.image} (its decoder's last resolution), "
      f"not {tuple(data_shape)}: use --image-size {arch.image}, or a --vdvae-decoder that ends at their size"
    )
  return vdvae_from(
    arch,
    data_shape,
    likelihood_of(config, data_shape, dtype),
    scale=config.vdvae_scale,
    checkpoint=config.vdvae_checkpoint == "blocks",
  )


# The default: a small VDVAE for 28x28 MNIST padded to 32x32 (the ``vdvae-mnist-tiny`` preset's).
DEFAULTS = dict(
  vdvae_width=32,
  vdvae_zdim=4,
  vdvae_bottleneck=0.25,
  vdvae_encoder="32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1",
  vdvae_decoder="1x1,4m1,4x1,8m4,8x1,16m8,16x1,32m16",
)


def _defaults(config: Any) -> dict[str, Any]:
  d = {name: getattr(config, name) if getattr(config, name) is not None else value for name, value in DEFAULTS.items()}
  try:
    last = parse_decoder(d["vdvae_decoder"])[-1][0]
    d["latent_dim"] = last * last * dict(parse_widths(config.vdvae_widths)).get(last, d["vdvae_width"])
  except JaxvaeError:  # validation names the mistake
    pass
  return d


def _problem(config: Any) -> str | None:
  for name in ("hidden", "hidden2", "latent_dim2", "ladder_layers", "ladder_widths"):
    if getattr(config, name) is not None:
      return f"--{name.replace('_', '-')} describes another model: the vdvae model reads the --vdvae-* flags"
  if config.net != "mlp":
    return (
      "--net describes the mlp and burda models: the vdvae model is convolutional by construction; leave --net unset"
    )
  if config.prior != "normal" or config.posterior != "gaussian":
    return (
      "the vdvae model has its own top-down prior and posterior: use --prior normal and --posterior gaussian with it"
    )
  try:
    arch = architecture_of(config)
  except JaxvaeError as e:
    return str(e)
  if problem := architecture_problem(arch):
    return problem
  if config.latent_dim != arch.image * arch.image * arch.width_at(arch.image):
    return (
      f"latent_dim={config.latent_dim} is set by the vdvae architecture "
      f"({arch.image}x{arch.image}x{arch.width_at(arch.image)}, "
      "the last top-down state): leave --latent-dim unset"
    )
  if config.free_bits > 0:
    return (
      "free_bits is per latent dimension; the vdvae model's KL is per layer: use --kl-balance nvae or warm-up instead"
    )
  return None


MODELS.register("vdvae", vdvae_vae, defaults=_defaults, check=_problem)
