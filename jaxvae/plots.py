"""Figures of a run (PNG, matplotlib with the Agg backend: no screen needed)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def image_grid(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
  """Tiles ``[n, H, W, C]`` images in [0, 1] into one ``[rows*(H+pad)-pad, ncols*(W+pad)-pad, C]`` image."""
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  nrows = math.ceil(n / ncols)
  grid = np.ones((nrows * (h + pad) - pad, ncols * (w + pad) - pad, c), np.float32)
  for i in range(n):
    r, k = divmod(i, ncols)
    grid[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = images[i]
  return grid


def _show(ax, grid: np.ndarray, title: str):
  if grid.shape[-1] == 1:
    ax.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  else:
    ax.imshow(np.clip(grid, 0.0, 1.0), interpolation="nearest")
  ax.set_title(title, fontsize=9)
  ax.axis("off")


def save_samples(path: str, images: np.ndarray, title: str) -> None:
  """Saves a square grid of ``[n, H, W, C]`` images in [0, 1] with a title."""
  ncols = math.ceil(math.sqrt(len(images)))
  fig, ax = plt.subplots(figsize=(6, 6.4))
  _show(ax, image_grid(images, ncols), title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_reconstructions(path: str, originals: np.ndarray, reconstructions: np.ndarray, title: str) -> None:
  """Saves originals (left) beside their reconstructions (right), in the same grid positions."""
  ncols = math.ceil(math.sqrt(len(originals)))
  fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
  _show(axes[0], image_grid(originals, ncols), "test images x")
  _show(axes[1], image_grid(reconstructions, ncols), "reconstructions")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_sweep(path: str, rows: list[dict], axes: list[str], metric: str = "test_elbo") -> None:
  """One panel per swept axis: ``metric`` of every model against that axis, with the mean per value.

  Numeric axes use their values on the x axis (log scale when they span more than a decade);
  others (widths, names) are categories.
  """
  axes = axes or ["name"]
  label = metric.replace("_", " ").replace("elbo", "ELBO").replace("kl", "KL")
  fig, panels = plt.subplots(1, len(axes), figsize=(4.2 * len(axes), 3.6), squeeze=False)
  for ax, name in zip(panels[0], axes):
    values = [r[name] if not isinstance(r[name], list) else "/".join(map(str, r[name])) for r in rows]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    levels = sorted(set(values)) if numeric else sorted(set(values), key=str)
    xs = values if numeric else [levels.index(v) for v in values]
    ax.scatter(xs, [r[metric] for r in rows], s=18, alpha=0.7, color="tab:blue", label="one model")
    means = [np.mean([r[metric] for r, v in zip(rows, values) if v == level]) for level in levels]
    ax.plot(levels if numeric else range(len(levels)), means, color="tab:red", marker="o", label="mean")
    if numeric and min(levels) > 0 and max(levels) / min(levels) > 10:
      ax.set_xscale("log")
    if not numeric:
      ax.set_xticks(range(len(levels)), [str(level) for level in levels], rotation=30)
    ax.set_xlabel(name)
    ax.set_ylabel(f"{label} (nats)")
    ax.grid(alpha=0.3)
  panels[0][0].legend(fontsize=8)
  fig.suptitle(f"{len(rows)} models: {label} against each swept axis", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
