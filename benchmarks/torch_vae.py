"""The baseline: the pytorch/examples VAE, trained in eager PyTorch as its users train it.

Same model as jaxvae's default (784-400-20 MLP, ReLU, Bernoulli decoder, diagonal Gaussian
encoder with log sigma, analytic KL), the same initialisation family as Flax's Dense
(truncated-normal LeCun weights, zero biases), loss summed over pixels and latent dimensions
per image and averaged over the batch, Adam 1e-3, batch 128, dynamic binarization, data on the
host in a DataLoader over a TensorDataset, torch.set_num_threads(cores).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class TorchVAE(nn.Module):
  def __init__(self, hidden: int = 400, latent: int = 20, pixels: int = 784):
    super().__init__()
    self.fc1 = nn.Linear(pixels, hidden)
    self.fc2 = nn.Linear(hidden, 2 * latent)
    self.fc3 = nn.Linear(latent, hidden)
    self.fc4 = nn.Linear(hidden, pixels)
    self.latent = latent
    for layer in (self.fc1, self.fc2, self.fc3, self.fc4):
      # Flax's lecun_normal: truncated normal with variance 1 / fan_in (std corrected for truncation at 2 sd).
      std = math.sqrt(1.0 / layer.in_features) / 0.87962566103423978
      nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
      nn.init.zeros_(layer.bias)

  def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative ELBO per image, averaged over the batch, and the mean KL."""
    h = F.relu(self.fc1(x))
    mean, log_scale = self.fc2(h).chunk(2, dim=-1)
    z = mean + torch.exp(log_scale) * torch.randn_like(mean)
    logits = self.fc4(F.relu(self.fc3(z)))
    log_px_z = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    kl = 0.5 * (mean.pow(2) + torch.exp(2 * log_scale) - 1 - 2 * log_scale).sum(-1)
    return (kl - log_px_z).mean(), kl.mean()


def make_loader(train_images: np.ndarray, batch_size: int, seed: int) -> torch.utils.data.DataLoader:
  """A shuffling DataLoader over the uint8 images, flattened to [N, 784]."""
  data = torch.utils.data.TensorDataset(torch.from_numpy(train_images.reshape(len(train_images), -1)))
  generator = torch.Generator().manual_seed(seed)
  return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator)


def train_epoch(model: TorchVAE, optimizer: torch.optim.Optimizer, loader) -> tuple[float, float, int]:
  """One epoch; returns (mean negative ELBO, seconds, images)."""
  total, steps, images = 0.0, 0, 0
  start = time.perf_counter()
  for (batch,) in loader:
    x = torch.bernoulli(batch.float() / 255.0)  # dynamic binarization
    optimizer.zero_grad(set_to_none=True)
    loss, _ = model.loss(x)
    loss.backward()
    optimizer.step()
    total += loss.item()
    steps += 1
    images += x.shape[0]
  return total / steps, time.perf_counter() - start, images
