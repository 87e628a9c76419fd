"""The reference of a steady linear problem on a region whose boundary runs along grid lines: a masked-grid
finite-difference solve.

``fd_masked`` solves ``0 = F(u) + source`` with the equation's own grid face (:meth:`~pdesolve.equations.Equation.rhs`:
second-order central differences of :meth:`pdesolve.grid.Grid.diff`, the 5-point Laplacian for Poisson in 2D) at the
grid nodes strictly inside the region, and ``u = g`` (Dirichlet) at the nodes on its boundary. When the boundary passes
through grid nodes (an L-shaped polygon with vertices on the grid, a rectangle) it is represented exactly and the error
is ``O(h^2)`` for a smooth solution; the L-shape's re-entrant corner, where ``u ~ r^(2/3)``, lowers the observed order
(``tests/test_geometry.py`` measures it). A region the grid does not fit (a disk) is refused: its nodes next to the
boundary would need the Shortley-Weller stencil, which this module does not implement; give such problems an ``exact``
reference.

The operator is affine and every interior row reads a window of three nodes along each axis (checked), so the matrix
comes from ``3^d`` evaluations of the residual on comb vectors (Curtis, Powell and Reid's column grouping, as in the
box reference ``sparse_fd``) and one sparse direct solve. The solve runs on the evaluation grid refined ``refine``
times per axis (the evaluation points are a subset of the fine nodes) and returns ``[channel, *space]`` (no time axis,
as the problem has none), NaN at the points outside the region.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from .grid import Grid, GridAxis
from .problem import Problem
from .reference import ReferenceError


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ReferenceError(f"'fd_masked': {msg}")


def check(problem: Problem, refine: Any = 4) -> str | None:
    """Why ``fd_masked`` cannot solve ``problem`` whatever the grid (None when it can, given a fitting grid)."""
    eq = problem.equation
    if not (isinstance(refine, int) and not isinstance(refine, bool) and refine >= 1):
        return f"option refine: expected an integer >= 1, got {refine!r}"
    if not eq.steady or problem.domain.time is not None:
        return "needs a steady problem (no time axis)"
    if len(eq.fields) != 1:
        return f"handles one field, {eq.name!r} has {list(eq.fields)}"
    if not (eq.linear and eq.grid_form and eq.max_space_order <= 2):
        return f"needs a linear equation of order <= 2 with a grid form (rhs); {eq.name!r} is not"
    if any(a.periodic for a in problem.domain.space):
        return "takes bounded axes only"
    if problem.is_family:
        return "solves one problem, not a parametric family"
    if any(bc.kind != "dirichlet" for bc in problem.boundary):
        return f"handles Dirichlet conditions only, got {sorted({bc.kind for bc in problem.boundary})}"
    return None


def validate(problem: Problem, grid: Grid, options: dict[str, Any]) -> list[str]:
    """The refusals ``fd_masked`` would raise for ``problem`` on ``grid`` with ``options``, found without solving (for
    ``pdesolve validate``): unknown options, :func:`check`, and a region the refined grid does not fit."""
    unknown = sorted(set(options) - {"refine"})
    if unknown:
        return [f"reference.options: unknown {unknown}; 'fd_masked' takes refine"]
    why = check(problem, options.get("refine", 4))
    if why is None:
        try:
            _nodes(problem, grid, options.get("refine", 4))
        except ReferenceError as err:
            why = str(err).removeprefix("'fd_masked': ")
    return [] if why is None else [f"reference: 'fd_masked' {why}"]


def _nodes(problem: Problem, grid: Grid, refine: int) -> tuple[Grid, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The refined grid, its points ``[N, d]``, their multi-indices, and per node: inside, on the boundary, its part;
    refuses a region whose boundary does not pass through the nodes."""
    fine = Grid(tuple(GridAxis(a.name, a.lo, a.hi, (a.n - 1) * refine + 1) for a in grid.space), None)
    shape = fine.space_shape
    mesh = np.meshgrid(*(a.coords for a in fine.space), indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], 1)  # [N, d]
    inside, on, part = _classify(problem, fine, pts)
    unknown = inside & ~on
    _require(bool(unknown.any()), f"no grid node lies strictly inside the region on the grid {list(shape)}; refine it")
    idx = np.stack(np.unravel_index(np.arange(len(pts)), shape), 1)  # [N, d]
    at_edge = np.any((idx == 0) | (idx == np.asarray(shape) - 1), axis=1)
    _require(not (unknown & at_edge).any(), "the region reaches past the grid's edge")
    for k in range(len(shape)):
        for sign in (-1, 1):
            nb = np.ravel_multi_index(tuple(idx[unknown].T + sign * np.eye(len(shape), dtype=int)[k][:, None]), shape)
            outside = ~inside[nb]
            if outside.any():
                p = [float(c) for c in pts[np.flatnonzero(unknown)[outside][0]]]
                raise ReferenceError(f"'fd_masked': the region's boundary does not pass through the grid nodes (the node {p} is "
                                     "inside, its neighbour outside); it needs a region whose edges lie on grid lines (choose "
                                     "the evaluation grid so that they do, or give an exact reference)")
    return fine, pts, idx, inside, on, part


def fd_masked(problem: Problem, grid: Grid, refine: int = 4) -> np.ndarray:
    """The masked-grid finite-difference solution on ``grid`` (no time axis), ``[channel, *space]`` float64, NaN outside."""
    why = check(problem, refine)
    _require(why is None, str(why))
    _require(grid.time is None, "needs a grid without time")
    eq = problem.equation
    fine, pts, idx, inside, on, part = _nodes(problem, grid, refine)
    shape = fine.space_shape
    mesh = [pts[:, k].reshape(shape) for k in range(len(shape))]
    unknown = inside & ~on

    params = problem.coefficients
    src = problem.source
    f = np.zeros(shape) if src is None else np.broadcast_to(
        src.numpy(**{n: m for n, m in zip(problem.domain.space_names, mesh) if n in src.variables}), shape)
    source = torch.from_numpy(np.array(f, dtype=np.float64))
    mask = torch.from_numpy(unknown.reshape(shape))

    def residual(u: np.ndarray) -> np.ndarray:
        """``F(u) + f`` at the unknown nodes, ``u`` elsewhere (boundary values enter through the right-hand side)."""
        field = torch.from_numpy(u.reshape((1,) + shape))
        with torch.no_grad():
            r = eq.rhs(field, fine, params)[0] + source
        return torch.where(mask, r, field[0]).numpy().ravel()

    offset = residual(np.zeros(len(pts)))
    rows, cols, vals = [], [], []
    start = idx - 1  # each unknown row's window of three nodes along each axis (centred: no unknown sits at the edge)
    for comb in itertools.product(range(3), repeat=len(shape)):
        v = np.logical_and.reduce([idx[:, k] % 3 == c for k, c in enumerate(comb)]).astype(np.float64)
        col_node = start + (np.asarray(comb) - start) % 3
        col = np.ravel_multi_index(tuple(np.clip(col_node, 0, np.asarray(shape) - 1).T), shape)
        jv = residual(v) - offset
        keep = unknown & (jv != 0)
        rows.append(np.flatnonzero(keep))
        cols.append(col[keep])
        vals.append(jv[keep])
    known = np.flatnonzero(~unknown)
    rows.append(known)
    cols.append(known)
    vals.append(np.ones(len(known)))
    n = len(pts)
    A = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    probe = np.random.default_rng(0).standard_normal(n)
    direct = residual(probe) - offset
    _require(np.abs(A @ probe - direct).max() <= 1e-9 * (np.abs(direct).max() or 1.0),
             f"the grid form of {eq.name!r} reads nodes beyond each node's neighbours; the assembly takes three-point stencils only")
    b = np.where(unknown, -offset, 0.0)
    values = _dirichlet(problem, pts, on, part)
    b[on] = values[on]
    u = scipy.sparse.linalg.spsolve(A.tocsc(), b)
    u[~inside] = np.nan
    return u.reshape(shape)[tuple(slice(None, None, refine) for _ in shape)][None].copy()


def _classify(problem: Problem, grid: Grid, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per node: inside the closed region, on its boundary, and the index of the boundary part it lies on (-1: none;
    a box's part is its face's index in ``problem.boundary``-independent order: 2 * axis + (0 lo, 1 hi))."""
    region = problem.domain.geometry
    if region is not None:
        part = region.part_of(pts)
        return region.inside(pts), part >= 0, part
    part = np.full(len(pts), -1)
    for k, a in enumerate(grid.space):
        part[(part < 0) & np.isclose(pts[:, k], a.lo)] = 2 * k
        part[(part < 0) & np.isclose(pts[:, k], a.hi)] = 2 * k + 1
    return np.ones(len(pts), bool), part >= 0, part


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
    if region is None:  # a box: every face holds a Dirichlet condition
        walls = {(bc.axis, bc.side): bc.value for bc in problem.boundary}
        for k, a in enumerate(problem.domain.space):
            for j, side in enumerate(("lo", "hi")):
                _require((a.name, side) in walls, f"no Dirichlet condition on {a.name}.{side}")
                hit = on & (part == 2 * k + j)
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
