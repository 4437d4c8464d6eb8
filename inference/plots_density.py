"""Generic figures for densities: heat maps of p(x) on a 2-D grid, samples over data, p(y | x)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .plots import _array, _save, _subplots

__all__ = ["density_heatmaps", "samples_over_data", "conditional_density_heatmaps"]


def _heat(ax, xs, ys, values, title: str, vmax: float | None = None) -> None:
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    ax.imshow(values, origin="lower", extent=extent, aspect="auto", cmap="viridis", vmin=0.0,
              vmax=vmax, interpolation="nearest")  # fmt: skip
    ax.set_title(title, fontsize=10)


def density_heatmaps(
    xs,
    ys,
    densities: Mapping[str, object],
    path: str | Path,
    *,
    points=None,
    title: str | None = None,
) -> Path:
    """Panels of 2-D densities on one grid, beside a scatter of the data.

    Arguments:
        xs, ys: grid coordinates ``[W]`` and ``[H]``.
        densities: title -> density values ``[H, W]`` (``p(x)``, not log), e.g. learned and
            true; all panels share one colour scale.
        path: PNG file to write.
        points: data ``[N, 2]`` drawn in a first panel with the grid's limits.
        title: figure title.
    """
    xs, ys = _array(xs), _array(ys)
    maps = {k: _array(v) for k, v in densities.items()}
    vmax = max(float(np.nanmax(v)) for v in maps.values()) if maps else None
    n = len(maps) + (points is not None)
    fig, axes = _subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
    axes = list(axes[0])
    if points is not None:
        p = _array(points).reshape(-1, 2)
        ax = axes.pop(0)
        ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.4, color="k")
        ax.set_xlim(xs[0], xs[-1])
        ax.set_ylim(ys[0], ys[-1])
        ax.set_title(f"data ({len(p)} points)", fontsize=10)
    for ax, (name, values) in zip(axes, maps.items(), strict=True):
        _heat(ax, xs, ys, values, name, vmax)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def samples_over_data(data, samples, path: str | Path, *, title: str | None = None) -> Path:
    """Model samples ``[M, 2]`` scattered over the data ``[N, 2]``, and side by side."""
    d, s = _array(data).reshape(-1, 2), _array(samples).reshape(-1, 2)
    both = np.concatenate([d, s])
    lo, hi = np.quantile(both, 0.001, axis=0), np.quantile(both, 0.999, axis=0)
    pad = 0.1 * (hi - lo)
    fig, axes = _subplots(1, 3, figsize=(10.5, 3.4), sharex=True, sharey=True)
    axes[0].scatter(d[:, 0], d[:, 1], s=2, alpha=0.4, color="k")
    axes[0].set_title("data", fontsize=10)
    axes[1].scatter(s[:, 0], s[:, 1], s=2, alpha=0.4, color="C1")
    axes[1].set_title("samples", fontsize=10)
    axes[2].scatter(d[:, 0], d[:, 1], s=2, alpha=0.3, color="k", label="data")
    axes[2].scatter(s[:, 0], s[:, 1], s=2, alpha=0.3, color="C1", label="samples")
    axes[2].legend(markerscale=4, fontsize=8, loc="upper right")
    axes[2].set_title("overlaid", fontsize=10)
    axes[0].set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    axes[0].set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def conditional_density_heatmaps(
    xs,
    ys,
    densities: Mapping[str, object],
    path: str | Path,
    *,
    points=None,
    title: str | None = None,
    xlabel: str = "x",
    ylabel: str = "y",
) -> Path:
    """Heat maps of conditional densities p(y | x) ``[len(ys), len(xs)]`` beside the data.

    Each column of a panel is a density over y; the colour scale is shared between panels
    (e.g. learned and true) and clipped at the 99.5% quantile so narrow modes do not hide
    the wide ones.

    Arguments:
        xs, ys: grid coordinates ``[W]`` (inputs) and ``[H]`` (targets).
        densities: title -> values ``[H, W]`` of p(y | x).
        path: PNG file to write.
        points: ``(x [N], y [N])`` drawn in a first panel with the grid's limits.
        title, xlabel, ylabel: labels.
    """
    xs, ys = _array(xs), _array(ys)
    maps = {k: _array(v) for k, v in densities.items()}
    vmax = float(np.nanquantile(np.concatenate([v.ravel() for v in maps.values()]), 0.995))
    n = len(maps) + (points is not None)
    fig, axes = _subplots(1, n, figsize=(3.8 * n, 3.4), squeeze=False, sharey=True)
    axes = list(axes[0])
    if points is not None:
        px, py = (_array(p).reshape(-1) for p in points)
        axes[0].scatter(px, py, s=2, alpha=0.3, color="k")
        axes[0].set_xlim(xs[0], xs[-1])
        axes[0].set_ylim(ys[0], ys[-1])
        axes[0].set_title(f"data ({len(px)} points)", fontsize=10)
    for ax, (name, values) in zip(axes[n - len(maps) :], maps.items(), strict=True):
        _heat(ax, xs, ys, values, name, vmax)
    for ax in axes:
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
