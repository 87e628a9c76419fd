"""Figures of a run: prediction / reference / error side by side, the loss curve, the residual map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .grid import Grid
from .io import write_with


def _figure(ncols: int, width: float = 4.2, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return plt, fig, axes[0]


def save_figure(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    write_with(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def _plane(grid: Grid, values: np.ndarray) -> tuple[np.ndarray, str]:
    """A 2D (or more) space field's image plane: the last time slice, and in 3D the mid-slice of the third axis."""
    data = values[-1] if grid.time is not None else values
    if grid.ndim == 3:
        c = grid.space[2]
        return data[:, :, c.n // 2], f" at {c.name} = {c.coords[c.n // 2]:.3g}"
    return data, ""


def _panel(ax: Any, grid: Grid, values: np.ndarray, title: str, cmap: str = "RdBu_r", symmetric: bool = True) -> None:
    """``values`` on a (t, x) grid as an image; in 2D space the last time slice (3D: its mid-slice); a steady 1D
    field as a line."""
    if grid.time is None and grid.ndim == 1:
        ax.plot(grid.space[0].coords, values, "k-" if symmetric else "r-", lw=1.5)
        ax.set_xlabel(grid.space[0].name)
        ax.set_title(title)
        return
    if grid.time is not None and grid.ndim == 1:
        t, x = grid.coords("t"), grid.coords(grid.space[0].name)
        extent, data, xl, yl = (t[0], t[-1], x[0], x[-1]), values.T, "t", grid.space[0].name
    else:
        data, where = _plane(grid, values)
        title += where
        a, b = grid.space[0], grid.space[1]
        extent, data, xl, yl = (a.coords[0], a.coords[-1], b.coords[0], b.coords[-1]), data.T, a.name, b.name
    finite = np.abs(data[np.isfinite(data)])  # NaN: outside a geometry's region, left blank
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    kw = {"vmin": -vmax, "vmax": vmax} if symmetric else {}
    im = ax.imshow(data, origin="lower", aspect="auto", extent=extent, cmap=cmap, **kw)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax)


def plot_fields(path: Path, grid: Grid, pred: np.ndarray, ref: np.ndarray | None, field: str = "u") -> None:
    """Prediction, reference and absolute error of one field (``[time, *space]`` arrays)."""
    n = 3 if ref is not None else 1
    plt, fig, axes = _figure(n)
    _panel(axes[0], grid, pred, f"prediction {field}")
    if ref is not None:
        _panel(axes[1], grid, ref, f"reference {field}")
        _panel(axes[2], grid, np.abs(pred - ref), f"|error| {field}", cmap="magma", symmetric=False)
    save_figure(plt, fig, path)


def plot_slices(path: Path, grid: Grid, pred: np.ndarray, ref: np.ndarray | None, count: int = 4) -> None:
    """1D in space: snapshots at a few times, prediction dashed over reference."""
    if grid.time is None or grid.ndim != 1:
        return
    t, x = grid.coords("t"), grid.coords(grid.space[0].name)
    idx = np.linspace(0, len(t) - 1, count).round().astype(int)
    plt, fig, axes = _figure(count, width=3.2, height=2.8)
    for ax, i in zip(axes, idx):
        if ref is not None:
            ax.plot(x, ref[i], "k-", lw=2, label="reference")
        ax.plot(x, pred[i], "r--", lw=1.5, label="prediction")
        ax.set_title(f"t = {t[i]:.3g}")
        ax.set_xlabel(grid.space[0].name)
    axes[0].legend(fontsize=8)
    save_figure(plt, fig, path)


METHOD_COLUMNS = ("weight_", "causal_", "curriculum_", "executor_")
"""History columns that record what a training method did (term weights, causal weights, a ramped parameter)."""

CAUSAL_WEIGHT_COLUMN = "causal_w_"
"""History columns of the causal weight of each time chunk (``causal_w_00`` the earliest); drawn by
:func:`plot_causal_weights`, not in :func:`plot_history`'s panel."""


def plot_history(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    """Loss terms (log scale), where evaluated the relative L2 error against the step, and the training methods'
    records (term weights, causal tolerance and smallest causal weight, a curriculum's parameter) where there are any."""
    if not history:
        return
    skip = {"step", "time", "lr", "rel_l2", "max_error"}
    # per-chunk causal weights have a figure of their own (plot_causal_weights), not one line each here
    keys = [k for k in history[0] if k not in skip and not k.startswith((PARAMETER_COLUMN, CAUSAL_WEIGHT_COLUMN))]
    methods = [k for k in keys if k.startswith(METHOD_COLUMNS)]
    plt, fig, axes = _figure(3 if methods else 2)
    steps = np.array([h["step"] for h in history])

    def draw(ax, names):
        for k in names:
            vals = np.array([h.get(k, np.nan) for h in history], dtype=float)
            vals[~(vals > 0)] = np.nan  # a value that is exactly zero has no place on a log scale
            if np.any(np.isfinite(vals)):
                ax.semilogy(steps, vals, label=k, lw=1.2 if k == "loss" else 0.8)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)

    draw(axes[0], [k for k in keys if k not in methods])
    axes[0].set_title("loss")
    ev = [(h["step"], h["rel_l2"]) for h in history if "rel_l2" in h]
    if ev:
        s, e = zip(*ev)
        axes[1].semilogy(s, e, "o-")
    axes[1].set_xlabel("step")
    axes[1].set_title("relative L2 error vs reference")
    if methods:
        draw(axes[2], methods)
        axes[2].set_title("training methods")
    save_figure(plt, fig, path)


def causal_chunks(history: Sequence[Mapping[str, float]]) -> list[str]:
    """The history's columns of per-chunk causal weights (none without causal weighting)."""
    return sorted({k for h in history for k in h if k.startswith(CAUSAL_WEIGHT_COLUMN)})


def plot_causal_weights(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    """The causal weight of every time chunk against the step: a map with the earliest chunk at the bottom, so
    that training's front moving forward in time shows as the bright region growing upwards."""
    columns = causal_chunks(history)
    rows = [h for h in history if columns[0] in h]
    steps = np.array([h["step"] for h in rows])
    weights = np.array([[h.get(k, np.nan) for h in rows] for k in columns], dtype=float)
    plt, fig, axes = _figure(1)
    ax = axes[0]
    mesh = ax.pcolormesh(steps, np.arange(len(columns)), weights, vmin=0.0, vmax=1.0, shading="nearest", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="causal weight")
    ax.set_xlabel("step")
    ax.set_ylabel("time chunk (0: earliest)")
    ax.set_title("causal weights over time and training")
    save_figure(plt, fig, path)


PARAMETER_COLUMN = "param_"
"""History columns that hold a learned coefficient of an inverse problem (``param_nu``)."""


def plot_parameters(path: Path, history: Sequence[Mapping[str, float]], recovered: Mapping[str, Mapping[str, float]]) -> None:
    """Each learned coefficient against the step (one panel each), its true value dashed when known."""
    names = list(recovered)
    plt, fig, axes = _figure(len(names))
    steps = np.array([h["step"] for h in history])
    for ax, name in zip(axes, names):
        vals = np.array([h.get(PARAMETER_COLUMN + name, np.nan) for h in history], dtype=float)
        ax.plot(steps, vals, lw=1.2, label="learned")
        true = recovered[name].get("true")
        if true is not None:
            ax.axhline(true, ls="--", color="k", lw=1.0, label=f"true {true:g}")
        ax.set_xlabel("step")
        ax.set_title(f"{name}: {recovered[name]['value']:.4g}")
        ax.legend(fontsize=7)
    save_figure(plt, fig, path)


def plot_residual(path: Path, grid: Grid, residual: np.ndarray) -> None:
    """|PDE residual| of the learned solution on the evaluation grid (log colour scale)."""
    from matplotlib.colors import LogNorm

    plt, fig, axes = _figure(1, width=5)
    data = residual[0]
    if grid.time is None and grid.ndim == 1:
        axes[0].semilogy(grid.space[0].coords, np.maximum(data, 1e-16))
        axes[0].set_xlabel(grid.space[0].name)
        axes[0].set_title("|PDE residual|")
        save_figure(plt, fig, path)
        return
    title = "|PDE residual|"
    if grid.time is not None and grid.ndim == 1:
        t, x = grid.coords("t"), grid.coords(grid.space[0].name)
        extent, img, xl, yl = (t[0], t[-1], x[0], x[-1]), data.T, "t", grid.space[0].name
    else:
        d, where = _plane(grid, data)
        title += where
        a, b = grid.space[0], grid.space[1]
        extent, img, xl, yl = (a.coords[0], a.coords[-1], b.coords[0], b.coords[-1]), d.T, a.name, b.name
    img = np.maximum(img, 1e-12)  # NaN (no data there) stays NaN and is left blank
    finite = img[np.isfinite(img)]
    top = float(finite.max()) if finite.size else 1.0
    low = max(float(finite.min()) if finite.size else 1e-12, top * 1e-8)
    norm = LogNorm(vmin=low, vmax=max(top, 10 * low))
    im = axes[0].imshow(img, origin="lower", aspect="auto", extent=extent, cmap="viridis", norm=norm)
    axes[0].set_xlabel(xl)
    axes[0].set_ylabel(yl)
    axes[0].set_title(title)
    fig.colorbar(im, ax=axes[0])
    save_figure(plt, fig, path)


def plot_characteristics(path: str | Path, chars: dict[str, Any]) -> None:
    """The learned characteristics ``X(s, t)`` as curves in the (x, t) plane (wrapped on a periodic axis)."""
    plt, fig, axes = _figure(1, width=5.0, height=4.0)
    ax = axes[0]
    t, pos, lo, hi = chars["t"], chars["positions"], chars["lo"], chars["hi"]
    for x in pos.T:
        if chars["periodic"]:
            x = lo + np.mod(x - lo, hi - lo)
            x = np.where(np.abs(np.diff(x, prepend=x[0])) > 0.5 * (hi - lo), np.nan, x)  # break the line where it wraps
        ax.plot(x, t, lw=0.8, color="tab:blue")
    ax.set_xlim(lo, hi)
    ax.set_xlabel(chars["axis"])
    ax.set_ylabel("t")
    ax.set_title("learned characteristics X(s, t)")
    save_figure(plt, fig, Path(path))
    plt.close(fig)
