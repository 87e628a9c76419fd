"""Figures on the real shape of a domain with a geometry: which grid points are inside, and the outline by part.

:func:`mask` blanks the points of a (bounding-box) :class:`~pdesolve.grid.Grid` outside the region, so a field
image shows the L or the hole, not the box; :func:`draw_outline` draws each boundary part as a labelled line
(points drawn uniformly on the part and chained nearest-first, a new piece wherever the part is broken);
:func:`plot_region_fields` puts the two together for a steady 2D solution: prediction, reference, error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .geometry import Geometry
from .grid import Grid


def mask(grid: Grid, geometry: Geometry) -> np.ndarray:
    """``bool [*space]``: the grid's space points inside the (closed) region."""
    mesh = np.meshgrid(*(a.coords for a in grid.space), indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], 1)
    return geometry.inside(pts).reshape(mesh[0].shape)


def outline(geometry: Geometry, points: int = 400) -> dict[str, np.ndarray]:
    """Per part, a polyline ``[M, 2]`` along it (NaN rows separate its pieces); deterministic (seed 0).

    Random points cluster and leave gaps, which a nearest-first chain jumps across; so ``4 * points`` are drawn and
    thinned to a spacing of about the boundary's length over ``points`` before they are chained."""
    x, part = geometry.sample_boundary(4 * points, np.random.default_rng(0))
    spacing = 4 * float(np.median(_nearest(x)))
    return {name: _chain(_thin(x[part == i], spacing), spacing) for i, name in enumerate(geometry.parts) if (part == i).any()}


def _nearest(x: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def _thin(x: np.ndarray, spacing: float) -> np.ndarray:
    """Keep points (in order) no closer than ``spacing`` to one already kept."""
    kept: list[np.ndarray] = []
    for p in x:
        if not kept or np.min(np.linalg.norm(np.asarray(kept) - p, axis=1)) >= spacing:
            kept.append(p)
    return np.asarray(kept).reshape(-1, x.shape[1])


def _chain(x: np.ndarray, spacing: float) -> np.ndarray:
    """Order points along a curve by nearest neighbours; a jump longer than 4 spacings starts a new piece."""
    if len(x) < 3:
        return x
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    step = spacing
    left = np.ones(len(x), bool)
    start = int(np.argmin(x[:, 0]))
    order, pieces, current = [start], [], [start]
    left[start] = False
    while left.any():
        last = order[-1]
        cand = np.where(left, d[last], np.inf)
        nxt = int(np.argmin(cand))
        if cand[nxt] > 4 * step:  # a break: close this piece and start the next from the nearest remaining point
            pieces.append(current)
            current = []
        order.append(nxt)
        current.append(nxt)
        left[nxt] = False
    pieces.append(current)
    out = []
    for p in pieces:
        seg = x[p]
        if len(p) > 2 and np.linalg.norm(seg[0] - seg[-1]) <= 4 * step:
            seg = np.vstack([seg, seg[:1]])  # a closed curve
        out += [seg, np.full((1, x.shape[1]), np.nan)]
    return np.vstack(out[:-1])


def draw_outline(ax: Any, geometry: Geometry, points: int = 400, label: bool = True) -> None:
    """Draw each boundary part of a 2D geometry on ``ax`` (one colour per part, named in a legend)."""
    if geometry.dim != 2:
        raise ValueError(f"draw_outline draws 2D geometries, got a {geometry.dim}D one")
    for name, line in outline(geometry, points).items():
        ax.plot(line[:, 0], line[:, 1], lw=1.4, label=name)
    if label:
        ax.legend(loc="upper right", fontsize=7, title="boundary", title_fontsize=7)


def plot_region_fields(path: Path, grid: Grid, geometry: Geometry, pred: np.ndarray, ref: np.ndarray | None, field: str = "u") -> None:
    """Prediction, reference and absolute error of one field on a steady 2D grid (``[nx, ny]`` arrays), blank outside
    the region and with its outline."""
    from .plot import _figure, save_figure

    inside = mask(grid, geometry)
    panels = [(pred, f"prediction {field}", "RdBu_r")]
    if ref is not None:
        panels += [(ref, f"reference {field}", "RdBu_r"), (np.abs(pred - ref), f"|error| {field}", "magma")]
    plt, fig, axes = _figure(len(panels))
    a, b = grid.space[0], grid.space[1]
    extent = (a.coords[0], a.coords[-1], b.coords[0], b.coords[-1])
    for ax, (values, title, cmap) in zip(axes, panels):
        data = np.where(inside, values, np.nan).T
        im = ax.imshow(data, origin="lower", extent=extent, cmap=cmap, aspect="equal")
        draw_outline(ax, geometry, label=ax is axes[0])
        ax.set_xlabel(a.name)
        ax.set_ylabel(b.name)
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    save_figure(plt, fig, path)
