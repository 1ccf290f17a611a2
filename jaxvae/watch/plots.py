"""Figures of a run (PNG files: no screen needed).

matplotlib is imported when the first figure is drawn: ``import jaxvae`` does not load it. The
figures are ``matplotlib.figure.Figure`` objects of their own, outside pyplot: drawing them leaves
pyplot's backend and figures as the user had them (a notebook keeps showing its plots inline).
"""

from __future__ import annotations

import math

import numpy as np


class _Figures:
  """pyplot's ``subplots`` and ``get_cmap`` for figures that no backend or pyplot state holds."""

  @staticmethod
  def subplots(*args, figsize: tuple[float, float] | None = None, **kwargs):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)

  @staticmethod
  def get_cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def _pyplot() -> type[_Figures]:
  """What the figures below are drawn with: :class:`_Figures` (files, no screen, no global state)."""
  return _Figures


def _save(fig, path: str) -> None:
  """Writes ``fig`` to ``path`` (PNG, 100 dpi), laid out tight."""
  fig.tight_layout()
  fig.savefig(path, dpi=100)


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
  plt = _pyplot()
  ncols = math.ceil(math.sqrt(len(images)))
  fig, ax = plt.subplots(figsize=(6, 6.4))
  _show(ax, image_grid(images, ncols), title)
  _save(fig, path)


def save_points(path: str, data: np.ndarray, samples: np.ndarray, title: str) -> None:
  """Two-dimensional data and model samples side by side, on the same axes."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
  for ax, points, name, color in (
    (axes[0], data, "data x", "tab:blue"),
    (axes[1], samples, "model samples", "tab:red"),
  ):
    ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.5, color=color, rasterized=True)
    ax.set_title(name, fontsize=9)
    ax.set_aspect("equal", adjustable="box")
    ax.grid(alpha=0.3)
  fig.suptitle(title, fontsize=10)
  _save(fig, path)


def save_reconstructions(path: str, originals: np.ndarray, reconstructions: np.ndarray, title: str) -> None:
  """Saves originals (left) beside their reconstructions (right), in the same grid positions."""
  plt = _pyplot()
  ncols = math.ceil(math.sqrt(len(originals)))
  fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
  _show(axes[0], image_grid(originals, ncols), "test images x")
  _show(axes[1], image_grid(reconstructions, ncols), "reconstructions")
  fig.suptitle(title, fontsize=10)
  _save(fig, path)


def save_sweep(path: str, rows: list[dict], axes: list[str], metric: str = "test_elbo") -> None:
  """One panel per swept axis: ``metric`` of every model against that axis, with the mean per value.

  Numeric axes use their values on the x axis (log scale when they span more than a decade);
  others (widths, names) are categories.
  """
  plt = _pyplot()
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
  _save(fig, path)


def save_gap_histograms(path: str, amortization: np.ndarray, approximation: np.ndarray, summary: dict) -> None:
  """Histograms of the per-image amortization and approximation gaps, with their means."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for ax, values, name, color in (
    (axes[0], amortization, "amortization gap  ELBO(q*) - ELBO(q_phi)", "tab:orange"),
    (axes[1], approximation, "approximation gap  log p(x) - ELBO(q*)", "tab:blue"),
  ):
    ax.hist(values, bins=40, color=color, alpha=0.8)
    ax.axvline(float(np.mean(values)), color="k", linestyle="--", label=f"mean {np.mean(values):.2f} nats")
    ax.set_xlabel(name + " (nats)")
    ax.set_ylabel("test images")
    ax.legend(fontsize=8)
  fig.suptitle(
    f"Inference gaps of {summary['n_test']} test images: log p(x) {summary['log_px']:.2f} (k = {summary['k']}), "
    f"ELBO(q*) {summary['elbo_q_star']:.2f}, ELBO(q_phi) {summary['elbo_q_phi']:.2f}",
    fontsize=9,
  )
  _save(fig, path)


def save_manifold(path: str, images: np.ndarray, values: np.ndarray, title: str) -> None:
  """The decoder's means on a grid of 2-D codes (Kingma & Welling 2014, Fig. 4), with z on the axes."""
  plt = _pyplot()
  n = len(values)
  h, w = images.shape[1:3]
  fig, ax = plt.subplots(figsize=(8, 8.4))
  grid = image_grid(images, n, pad=0)
  ax.imshow(
    grid[..., 0] if grid.shape[-1] == 1 else grid,
    cmap="gray",
    vmin=0,
    vmax=1,
    extent=(0, n * w, 0, n * h),
    interpolation="nearest",
  )
  ticks = np.arange(0, n, max(1, n // 5))
  ax.set_xticks(ticks * w + w / 2, [f"{values[i]:.2f}" for i in ticks])
  ax.set_yticks(ticks * h + h / 2, [f"{values[i]:.2f}" for i in ticks])
  ax.set_xlabel("z1 (at the quantiles of p(z))")
  ax.set_ylabel("z2")
  ax.set_title(f"p_theta(x|z): decoder means E[x|z] over a grid of z  ({title})", fontsize=9)
  _save(fig, path)


def save_latent_scatter(path: str, means: np.ndarray, labels: np.ndarray, title: str) -> None:
  """The means of q_phi(z|x) for the test set, one colour per digit (two principal axes if d > 2)."""
  plt = _pyplot()
  if means.shape[1] > 2:
    centred = means - means.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    points, axis_names = centred @ vt[:2].T, ("principal axis 1 of the q means", "principal axis 2")
  else:
    points, axis_names = means, ("z1", "z2")
  fig, ax = plt.subplots(figsize=(7, 6))
  cmap = plt.get_cmap("tab10")
  for digit in range(10):
    sel = labels == digit
    ax.scatter(points[sel, 0], points[sel, 1], s=3, alpha=0.6, color=cmap(digit), label=str(digit), rasterized=True)
  ax.legend(markerscale=4, fontsize=8, title="digit", loc="best")
  ax.set_xlabel(axis_names[0])
  ax.set_ylabel(axis_names[1])
  ax.set_title(f"q_phi(z|x): means mu_phi(x) of {len(points):,} test images  ({title})", fontsize=9)
  _save(fig, path)


def save_posterior_vs_q(path: str, panels: list[dict], title: str) -> None:
  """Per test digit: the image, and p_theta(z|x) on a grid with the 1- and 2-sigma ellipses of q_phi(z|x)."""
  plt = _pyplot()
  from matplotlib.patches import Ellipse

  n = len(panels)
  fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 6.4), gridspec_kw={"height_ratios": [1, 2.2]}, squeeze=False)
  for j, p in enumerate(panels):
    ax = axes[0][j]
    ax.imshow(p["image"][..., 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"x: a test {p['label']}", fontsize=9)
    ax.axis("off")
    ax = axes[1][j]
    top = float(p["density"].max())
    ax.contourf(p["z1"], p["z2"], p["density"], levels=np.linspace(0.01 * top, top, 12), cmap="Blues")
    for k, style in ((1, "-"), (2, "--")):
      ax.add_patch(
        Ellipse(
          tuple(p["q_mean"]),
          2 * k * p["q_scale"][0],
          2 * k * p["q_scale"][1],
          fill=False,
          color="tab:red",
          linestyle=style,
          linewidth=1.5,
          label=f"q_phi(z|x), {k} sigma",
        )
      )
    ax.plot(*p["q_mean"], "+", color="tab:red")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_xlim(p["z1"][0], p["z1"][-1])
    ax.set_ylim(p["z2"][0], p["z2"][-1])
    ax.set_aspect("equal", adjustable="box")
    if j == 0:
      ax.legend(fontsize=7, loc="upper left")
  fig.suptitle(
    f"true posterior p_theta(z|x) (blue, on a grid) and the encoder's Gaussian q_phi(z|x) (red)  ({title})", fontsize=9
  )
  _save(fig, path)


def save_interpolations(path: str, starts: np.ndarray, frames: np.ndarray, ends: np.ndarray, title: str) -> None:
  """Rows: a test image, decoder means along the line between the q-means of two images, the other image."""
  plt = _pyplot()
  rows = [np.concatenate([s[None], f, e[None]]) for s, f, e in zip(starts, frames, ends)]
  ncols = rows[0].shape[0]
  fig, ax = plt.subplots(figsize=(ncols * 0.8, len(rows) * 0.8 + 0.3))
  _show(
    ax,
    image_grid(np.concatenate(rows), ncols),
    f"latent interpolations: x_a, E[x|z] for z from mu_phi(x_a) to mu_phi(x_b), x_b  ({title})",
  )
  _save(fig, path)
