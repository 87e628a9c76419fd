"""A steady problem solved by second-order finite differences and a sparse direct solve (the ``sparse_fd`` reference).

The discrete system is the equation's own grid face (:meth:`pdesolve.equations.Equation.rhs`, second-order central
differences of :meth:`pdesolve.grid.Grid.diff`) at the interior nodes, ``F(u) + f = 0``, and one row per boundary node
for its condition, ``alpha u + beta du/dn = g``, with the second-order one-sided difference
``du/dn = (3 u_0 - 4 u_1 + u_2) / (2 h)`` (outward). A node on several faces (an edge, a corner) takes a Dirichlet
condition if one of its faces has one, else the first face's in the order of the axes.

The Jacobian of that system is assembled exactly, not by differencing: every row reads the nodes of a window of three
along each axis, so Jacobian-vector products (forward-mode autograd, :func:`torch.func.jvp`; for a linear equation the
difference of the affine residual, exact to round-off) with the ``3^d`` comb
vectors ``{i_a = r_a mod 3}`` recover every entry (Curtis, Powell and Reid's column grouping); the assembly checks
itself against one more product with a random vector and refuses an operator that reaches further. Newton's method
then solves the system (one step for a linear equation) with :func:`scipy.sparse.linalg.spsolve`.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .grid import Grid, GridAxis
from .problem import BoundaryCondition, Problem


class FDError(ValueError):
    """A problem the sparse finite-difference solve does not take, or a system it could not solve."""


def check(problem: Problem) -> str | None:
    """Why ``sparse_fd`` cannot solve ``problem`` (None when it can)."""
    eq, dom = problem.equation, problem.domain
    if not eq.steady or dom.time is not None:
        return f"'sparse_fd' solves steady problems (no time axis); {eq.name!r} on this domain evolves in time"
    if not eq.grid_form:
        return f"'sparse_fd' needs the equation's grid form (rhs); {eq.name!r} is stated at points only"
    if eq.max_space_order > 2:
        return f"'sparse_fd' takes equations of order <= 2 in space; {eq.name!r} has order {eq.max_space_order}"
    if dom.geometry is not None:
        return "'sparse_fd' solves on a box; the domain has a geometry (give reference: {kind: exact, ...} instead)"
    periodic = [a.name for a in dom.space if a.periodic]
    if periodic:
        return f"'sparse_fd' takes bounded axes with conditions on both faces; {periodic} periodic"
    if problem.is_family:
        return "'sparse_fd' solves one problem, not a parametric family"
    return None


def solve(problem: Problem, grid: Grid, refine: int = 1, tol: float = 1e-10, max_newton: int = 30) -> np.ndarray:
    """The solution on ``grid`` as ``[channel, *space]`` float64, solved on ``grid`` refined ``refine`` times per axis."""
    why = check(problem)
    if why:
        raise FDError(why)
    if int(refine) != refine or refine < 1:
        raise FDError(f"'sparse_fd' option refine: expected an integer >= 1, got {refine}")
    fine = Grid(tuple(GridAxis(a.name, a.lo, a.hi, (a.n - 1) * int(refine) + 1) for a in grid.space), None)
    if any(a.n < 3 for a in fine.space):
        raise FDError(f"'sparse_fd' needs at least 3 nodes per axis, got {fine.space_shape}")
    system = _System(problem, fine)
    u = torch.zeros(system.shape, dtype=torch.float64)
    lu = None
    for _ in range(max_newton):
        r = system.residual(u)
        if lu is None or not problem.equation.linear:  # a linear system's Jacobian is constant: factored once
            lu = _factor(system.jacobian(u))
        du = lu.solve(-r.numpy().ravel())
        u = u + torch.from_numpy(du.reshape(system.shape))
        if np.abs(du).max() <= tol * (1.0 + float(u.abs().max())):
            break
    else:
        raise FDError(f"'sparse_fd': Newton's method did not converge in {max_newton} iterations (last update {np.abs(du).max():.3g})")
    step = int(refine)
    return u.numpy()[(slice(None),) + (slice(None, None, step),) * grid.ndim].copy()


def _factor(jac: sp.csr_matrix) -> spla.SuperLU:
    """The sparse LU factors of the Jacobian; a singular one (a pivot below 1e-12 of the largest) is refused."""
    singular = FDError("the discrete system is singular: Neumann conditions on every face fix u only up to a constant; give a "
                       "Dirichlet or Robin condition (alpha != 0) on some face")
    try:
        lu = spla.splu(jac.tocsc())
    except RuntimeError:  # exactly singular
        raise singular from None
    pivots = np.abs(lu.U.diagonal())
    if pivots.min() <= 1e-12 * pivots.max():
        raise singular
    return lu


class _System:
    """The residual ``R(u)`` ``[channel, *space]`` of the discrete problem and its sparse Jacobian."""

    def __init__(self, problem: Problem, grid: Grid):
        self.problem, self.grid = problem, grid
        self.eq, self.params = problem.equation, problem.coefficients
        self.fields = problem.equation.fields
        self.shape = (len(self.fields),) + grid.space_shape
        mesh = dict(zip([a.name for a in grid.space], np.meshgrid(*(a.coords for a in grid.space), indexing="ij")))
        src = problem.source
        source = src.numpy(**{k: v for k, v in mesh.items() if k in src.variables}) if src is not None else np.zeros(grid.space_shape)
        self.source = torch.from_numpy(np.broadcast_to(source, grid.space_shape).copy())
        self.rows = [self._boundary_rows(f, mesh) for f in self.fields]  # per field: [(mask, bc, g)]

    def _boundary_rows(self, field: str, mesh: dict[str, np.ndarray]) -> list[tuple[torch.Tensor, BoundaryCondition, torch.Tensor]]:
        """Each boundary node of ``field`` and the condition it holds (Dirichlet first where faces meet)."""
        taken = np.zeros(self.grid.space_shape, dtype=bool)
        out = []
        conditions = [bc for bc in self.problem.boundary if bc.field == field and bc.part is None]
        for bc in sorted(conditions, key=lambda b: b.kind != "dirichlet"):
            d = [a.name for a in self.grid.space].index(bc.axis)
            face = np.zeros_like(taken)
            index = [slice(None)] * self.grid.ndim
            index[d] = 0 if bc.side == "lo" else -1
            face[tuple(index)] = True
            mask = face & ~taken
            taken |= face
            g = bc.value.numpy(**{k: v for k, v in mesh.items() if k in bc.value.variables})
            out.append((torch.from_numpy(mask), bc, torch.from_numpy(np.broadcast_to(g, taken.shape).copy())))
        return out

    def residual(self, u: torch.Tensor) -> torch.Tensor:
        """``F(u) + f`` at interior nodes, ``alpha u + beta du/dn - g`` at boundary nodes."""
        r = self.eq.rhs(u, self.grid, self.params) + self.source
        columns = []
        for c, rows in enumerate(self.rows):
            rc = r[c]
            for mask, bc, g in rows:
                rc = torch.where(mask, self._condition(u[c], bc) - g, rc)
            columns.append(rc)
        return torch.stack(columns)

    def _condition(self, u: torch.Tensor, bc: BoundaryCondition) -> torch.Tensor:
        """``alpha u + beta du/dn`` on the whole field (only the face's values are used)."""
        if bc.beta == 0:
            return bc.alpha * u
        ax = self.grid.axis(bc.axis)
        d = [a.name for a in self.grid.space].index(bc.axis)
        v = u.movedim(d, 0)
        if bc.side == "lo":  # outward normal -x
            dn = -(-3 * v[0] + 4 * v[1] - v[2]) / (2 * ax.spacing)
        else:
            dn = (3 * v[-1] - 4 * v[-2] + v[-3]) / (2 * ax.spacing)
        dn_full = dn.unsqueeze(0).expand_as(v).movedim(0, d)
        return bc.alpha * u + bc.beta * dn_full

    def _product(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``J(u) v``: forward-mode autograd; for a linear equation the residual is affine, so ``R(u + v) - R(u)``
        is the same product (to round-off) and avoids the slower forward-mode path."""
        if self.eq.linear:
            return self.residual(u + v) - self.residual(u)
        return torch.func.jvp(self.residual, (u,), (v,))[1]

    def jacobian(self, u: torch.Tensor) -> sp.csr_matrix:
        """The exact Jacobian of :meth:`residual` at ``u`` from ``channels * 3^d`` Jacobian-vector products."""
        n = [a.n for a in self.grid.space]
        idx = np.meshgrid(*(np.arange(k) for k in n), indexing="ij")
        start = [np.clip(i - 1, 0, k - 3) for i, k in zip(idx, n)]  # each row's window of three nodes along each axis
        size = int(np.prod(self.shape))
        rows_of_field = np.arange(size).reshape(self.shape)
        rows, cols, vals = [], [], []
        for c in range(len(self.fields)):
            for comb in itertools.product(range(3), repeat=self.grid.ndim):
                v = torch.zeros(self.shape, dtype=torch.float64)
                v[c] = torch.from_numpy(np.logical_and.reduce([i % 3 == r for i, r in zip(idx, comb)]).astype(np.float64))
                jv = self._product(u, v)
                col_node = tuple(s + (r - s) % 3 for s, r in zip(start, comb))  # the one comb node in each row's window
                col = np.ravel_multi_index((np.full(idx[0].shape, c),) + col_node, self.shape)
                for out_c in range(len(self.fields)):
                    values = jv[out_c].numpy()
                    keep = values != 0
                    rows.append(rows_of_field[out_c][keep])
                    cols.append(col[keep])
                    vals.append(values[keep])
        jac = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size))
        probe = torch.from_numpy(np.random.default_rng(0).standard_normal(self.shape))
        exact = self._product(u, probe)
        got = jac @ probe.numpy().ravel()
        scale = float(np.abs(exact.numpy()).max()) or 1.0
        if np.abs(got - exact.numpy().ravel()).max() > 1e-9 * scale:
            raise FDError(f"'sparse_fd': the grid form of {self.eq.name!r} reads nodes beyond each node's neighbours; the sparse "
                          "assembly takes three-point stencils only")
        return jac

