"""Generic figures for image data and 2-D embeddings: an image grid and a labelled scatter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .plots import _array, _save, _subplots

__all__ = ["image_grid", "scatter_2d"]


def image_grid(
    images,
    image_shape: Sequence[int],
    path: str | Path,
    *,
    ncols: int = 8,
    title: str | None = None,
) -> Path:
    """Draws flattened grey-scale images ``[N, H * W]`` row by row, ``ncols`` per row.

    Arguments:
        images: values in [0, 1] (clipped), one flattened image per row.
        image_shape: ``(H, W)``.
        path: PNG file to write.
        ncols: images per row of the grid.
        title: figure title.

    Returns:
        The path written.
    """
    h, w = (int(s) for s in image_shape)
    a = _array(images).reshape(-1, h, w).clip(0.0, 1.0)
    n = len(a)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    grid = np.zeros((nrows * (h + 1) - 1, ncols * (w + 1) - 1))  # white gutters (gray_r)
    for i, img in enumerate(a):
        r, c = divmod(i, ncols)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = img
    fig, ax = _subplots(figsize=(0.6 * ncols + 0.4, 0.6 * nrows + (0.6 if title else 0.2)))
    ax.imshow(grid, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def scatter_2d(
    points,
    path: str | Path,
    *,
    labels=None,
    title: str | None = None,
    xlabel: str = "",
    ylabel: str = "",
) -> Path:
    """A scatter of 2-D points ``[N, 2]``, coloured by integer labels when given.

    Returns:
        The path written.
    """
    p = _array(points).reshape(-1, 2)
    fig, ax = _subplots(figsize=(5.5, 4.5))
    if labels is None:
        ax.scatter(p[:, 0], p[:, 1], s=4, alpha=0.6)
    else:
        lab = _array(labels).reshape(-1).astype(int)
        for c in np.unique(lab):
            keep = lab == c
            ax.scatter(p[keep, 0], p[keep, 1], s=4, alpha=0.6, label=str(c))
        ax.legend(markerscale=3, fontsize=7, loc="best", ncols=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _save(fig, path)
