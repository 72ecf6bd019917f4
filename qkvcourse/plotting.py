"""Figures used throughout the book: attention heatmaps and curves.

matplotlib is imported when a figure is drawn, not with the package: ``import qkvcourse`` on a
training server (or in the autograder's sandbox) does not load a plotting library.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def show_heatmaps(matrices, xlabel: str, ylabel: str, titles: Sequence[str] | None = None,
                  figsize: tuple[float, float] = (2.5, 2.5), cmap: str = "Reds",
                  xticklabels: Sequence[str] | None = None,
                  yticklabels: Sequence[str] | None = None):
    """Grid of heatmaps, one colour bar for all.

    Args:
        matrices: ``(rows, cols, Q, K)`` (d2l's layout); a 2-D ``(Q, K)`` or 3-D
            ``(cols, Q, K)`` array is promoted to it.
        titles: one per column.
        figsize: size of one panel; the figure scales with the grid.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    M = _to_numpy(matrices)
    if M.ndim == 2:
        M = M[None, None]
    elif M.ndim == 3:
        M = M[None]
    if M.ndim != 4:
        raise ValueError(f"matrices must be 2-D, 3-D or 4-D (rows, cols, Q, K), got shape {M.shape}")
    rows, cols = M.shape[:2]
    if titles is not None and len(titles) != cols:
        raise ValueError(f"titles must have one entry per column ({cols}), got {len(titles)}")
    fig, axes = plt.subplots(rows, cols, figsize=(figsize[0] * cols, figsize[1] * rows),
                             sharex=True, sharey=True, squeeze=False)
    vmin, vmax = float(M.min()), float(M.max())
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            image = ax.imshow(M[i, j], cmap=cmap, vmin=vmin, vmax=vmax)
            if i == rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None and i == 0:
                ax.set_title(titles[j])
            if xticklabels is not None:
                ax.set_xticks(range(len(xticklabels)), xticklabels, rotation=90)
            if yticklabels is not None:
                ax.set_yticks(range(len(yticklabels)), yticklabels)
    fig.colorbar(image, ax=axes, shrink=0.6)
    return fig


def plot(X, Y=None, xlabel: str | None = None, ylabel: str | None = None,
         legend: Sequence[str] | None = None, xlim=None, ylim=None, xscale: str = "linear",
         yscale: str = "linear", fmts: Sequence[str] = ("-", "m--", "g-.", "r:", "c-", "k--"),
         figsize: tuple[float, float] = (4.5, 3.0), ax=None, title: str | None = None):
    """Plot one or several curves.

    ``plot(y)`` plots against the index; ``plot(x, y)``; ``plot(x, [y1, y2])``
    or ``plot([x1, x2], [y1, y2])`` for several curves. Returns the axes.
    """
    def as_list(v):
        if isinstance(v, (list, tuple)) and len(v) and np.ndim(_to_numpy(v[0])) > 0:
            return [_to_numpy(a) for a in v]
        return [_to_numpy(v)]

    if Y is None:
        Y, X = X, None
    Ys = as_list(Y)
    Xs = [np.arange(len(y)) for y in Ys] if X is None else as_list(X)
    if len(Xs) == 1 and len(Ys) > 1:
        Xs = Xs * len(Ys)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
    for i, (x, y) in enumerate(zip(Xs, Ys)):
        ax.plot(x, y, fmts[i % len(fmts)])
    ax.set_xscale(xscale)
    ax.set_yscale(yscale)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if xlim:
        ax.set_xlim(xlim)
    if ylim:
        ax.set_ylim(ylim)
    if legend:
        ax.legend(legend)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return ax
