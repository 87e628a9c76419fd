"""The reference of a steady linear problem on a region whose boundary runs along grid lines: a masked-grid
finite-difference solve.

``fd_masked`` solves ``0 = L u + source`` (``L`` the equation's constant-coefficient linear part, its
:meth:`~pdesolve.equations.Equation.split`: diffusion ``D Lap u``, advection ``-c . grad u``, growth ``g u``) with
the second-order central stencils (the 5-point Laplacian in 2D) on the grid points inside the region, Dirichlet
values on the points of its boundary. When the boundary passes through grid nodes (an L-shaped polygon with
vertices on the grid, a rectangle) the boundary is represented exactly and the error is ``O(h^2)`` (the L-shape's
re-entrant corner, where ``u ~ r^(2/3)``, lowers the order there: a refinement study in ``tests/test_geometry.py``
measures it). A region that the grid does not fit (a disk) is refused: its nodes next to the boundary would need
the Shortley-Weller stencil, which this module does not implement; use an exact reference for those.

The solve runs on the evaluation grid refined ``refine`` times per axis (the evaluation points are a subset of the
fine nodes) and returns the fine solution at the evaluation points, ``[channel, *space]`` (no time axis, as the
problem has none); points outside the region hold NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from .equations.split import is_zero
from .grid import Grid
from .problem import Problem
from .reference import ReferenceError


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ReferenceError(f"'fd_masked': {msg}")


def fd_masked(problem: Problem, grid: Grid, refine: int = 4) -> np.ndarray:
    """The masked-grid finite-difference solution on ``grid`` (no time axis), ``[channel, *space]`` float64, NaN outside."""
    eq = problem.equation
    _require(isinstance(refine, int) and refine >= 1, f"option refine: expected an integer >= 1, got {refine!r}")
    _require(eq.steady and problem.domain.time is None and grid.time is None,
             "needs a steady problem (no time axis) and a grid without time")
    _require(len(eq.fields) == 1, f"handles one field, {eq.name!r} has {list(eq.fields)}")
    split = eq.split(problem.coefficients)
    _require(split is not None and split.rest is None,
             f"needs a linear equation with constant coefficients that states its linear part (Equation.split); {eq.name!r} does not")
    lin = split.linear  # type: ignore[union-attr]
    _require(is_zero(lin.dispersion) and is_zero(lin.hyperdiffusion), "handles second-order operators only (no dispersion)")
    _require(all(bc.kind == "dirichlet" for bc in problem.boundary),
             f"handles Dirichlet conditions only, got {sorted({bc.kind for bc in problem.boundary})}")

    fine = tuple(int((a.n - 1) * refine + 1) for a in grid.space)
    axes = [np.linspace(a.lo, a.hi, n) for a, n in zip(grid.space, fine)]
    h = [float(c[1] - c[0]) for c in axes]
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], 1)  # [N, d]
    region = problem.domain.geometry
    if region is None:
        inside = np.ones(len(pts), bool)
        on = np.zeros(len(pts), bool)
        for k, c in enumerate(axes):
            on |= np.isclose(pts[:, k], c[0]) | np.isclose(pts[:, k], c[-1])
        part = np.full(len(pts), -1)
        part[on] = 0
    else:
        inside = region.inside(pts)
        part = region.part_of(pts)
        on = part >= 0
    unknown = inside & ~on
    index = np.full(len(pts), -1)
    index[unknown] = np.arange(int(unknown.sum()))
    values = _dirichlet(problem, pts, on, part)

    d, strides = len(axes), np.cumprod((1,) + fine[::-1])[:-1][::-1]
    rows, cols, vals = [], [], []
    rhs = np.zeros(int(unknown.sum()))
    ids = np.flatnonzero(unknown)
    diff = float(lin.diffusion) if not is_zero(lin.diffusion) else 0.0
    adv = [float(c) if not is_zero(c) else 0.0 for c in lin.advection] + [0.0] * d
    growth = float(lin.growth) if not is_zero(lin.growth) else 0.0
    centre = np.full(len(ids), -2.0 * diff * sum(1.0 / hk**2 for hk in h) + growth)
    rows.append(index[ids])
    cols.append(index[ids])
    vals.append(centre)
    multi = np.stack(np.unravel_index(ids, fine), 1)
    for k in range(d):
        for sign in (-1, 1):
            ok = (multi[:, k] + sign >= 0) & (multi[:, k] + sign < fine[k])
            _require(bool(ok.all()), "the region reaches the grid's edge inside (a boundary not on the grid's edge)")
            nb = ids + sign * strides[k]
            coef = diff / h[k] ** 2 - sign * adv[k] / (2 * h[k])
            outside = ~inside[nb]
            if outside.any():
                p = pts[ids[outside][0]]
                raise ReferenceError(f"'fd_masked': the region's boundary does not pass through the grid nodes (the node {list(p)} "
                                     "is inside but its neighbour is outside); it needs a region whose edges lie on grid lines "
                                     "(refine the evaluation grid so that they do, or use an exact reference)")
            interior = unknown[nb]
            rows.append(index[ids[interior]])
            cols.append(index[nb[interior]])
            vals.append(np.full(int(interior.sum()), coef))
            np.add.at(rhs, index[ids[~interior]], -coef * values[nb[~interior]])
    if problem.source is not None:
        env = {n: pts[ids, k] for k, n in enumerate(problem.domain.space_names)}
        rhs -= np.broadcast_to(problem.source.numpy(**{n: v for n, v in env.items() if n in problem.source.variables}), len(ids))
    n = len(ids)
    A = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    u = np.full(len(pts), np.nan)
    u[on] = values[on]
    u[ids] = scipy.sparse.linalg.spsolve(A.tocsc(), rhs)
    u = u.reshape(fine)[tuple(slice(None, None, refine) for _ in fine)]
    return u[None]


def _dirichlet(problem: Problem, pts: np.ndarray, on: np.ndarray, part: np.ndarray) -> np.ndarray:
    """The Dirichlet value at each boundary node (NaN elsewhere): the condition of the part the node lies on."""
    out = np.full(len(pts), np.nan)
    names = problem.domain.space_names
    region = problem.domain.geometry
    by_part: dict[int, Any] = {}
    for bc in problem.boundary:
        if region is not None:
            _require(bc.part is not None, "a geometry's conditions are given per part")
            by_part[region.parts.index(bc.part)] = bc.value  # type: ignore[arg-type]
    if region is None:  # a box: every wall holds a Dirichlet condition
        walls = {(bc.axis, bc.side): bc.value for bc in problem.boundary}
        for k, a in enumerate(problem.domain.space):
            for side, at in (("lo", a.lo), ("hi", a.hi)):
                _require((a.name, side) in walls, f"no Dirichlet condition on {a.name}.{side}")
                hit = on & np.isclose(pts[:, k], at)
                out[hit] = _evaluate(walls[(a.name, side)], pts[hit], names)
        return out
    for i in range(len(region.parts)):
        hit = on & (part == i)
        _require(i in by_part or not hit.any(), f"no condition on part {region.parts[i]!r}")
        if hit.any():
            out[hit] = _evaluate(by_part[i], pts[hit], names)
    return out


def _evaluate(expr: Any, pts: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    env = {n: pts[:, k] for k, n in enumerate(names) if n in expr.variables}
    return np.broadcast_to(np.asarray(expr.numpy(**env), float), len(pts))
