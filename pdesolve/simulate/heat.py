"""Heat equation on a box: second-order finite differences, Crank-Nicolson with one sparse LU factorization.

Bounded axes carry constant Dirichlet walls (a value per wall and per trajectory, the classic parametric
study: four wall temperatures and the initial temperature in 2D); periodic axes wrap around. The unknowns
are the interior (non-wall) grid points; the Laplacian is the Kronecker sum of the 1D three-point
operators, ``(I - dt/2 nu L)`` is factorized once by ``scipy.sparse.linalg.splu`` and reused for every step
and every trajectory (the batch is the right-hand side's columns). Crank-Nicolson is A-stable but not
L-stable: walls that differ from the initial temperature excite the stiffest modes, so the first two
steps are replaced by four implicit Euler half steps (Rannacher start-up), whose matrix is the same.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import splu

from ..equations.families import Heat
from ..grid import Grid
from ..problem import Problem
from .base import (
    Numerics,
    Params,
    SimulationError,
    Simulator,
    dirichlet_walls_reason,
    family_reason,
    is_uniform,
    substeps,
    wall_value,
)


def _axis_operator(n: int, h: float, periodic: bool) -> sp.csr_matrix:
    """The 1D second difference on the unknowns of one axis (all points if periodic, else interior)."""
    m = n if periodic else n - 2
    op = sp.diags([np.ones(m - 1), -2 * np.ones(m), np.ones(m - 1)], [-1, 0, 1], format="lil", dtype=np.float64)
    if periodic and m > 2:
        op[0, m - 1] = op[m - 1, 0] = 1
    elif periodic:
        raise SimulationError(f"a periodic axis needs at least 3 points, got {n}")
    return (op / h**2).tocsr()


def laplacian(grid: Grid) -> sp.csr_matrix:
    """The Kronecker-sum Laplacian on the unknowns (C order over the space axes)."""
    sizes = [a.n if a.periodic else a.n - 2 for a in grid.space]
    out = sp.csr_matrix((int(np.prod(sizes)),) * 2)
    for d, a in enumerate(grid.space):
        left = sp.identity(int(np.prod(sizes[:d])))
        right = sp.identity(int(np.prod(sizes[d + 1 :])))
        out = out + sp.kron(sp.kron(left, _axis_operator(a.n, a.spacing, a.periodic)), right)
    return out.tocsr()


class HeatCN(Simulator):
    """``u_t = nu Lap u`` with constant Dirichlet walls (per trajectory) and/or periodic axes."""

    name = "heat_cn"
    description = "finite differences on the box, Crank-Nicolson (Rannacher start), sparse LU (splu) reused for all steps"

    def check(self, problem: Problem) -> str | None:
        return family_reason(problem, (Heat,), None, None) or dirichlet_walls_reason(problem)

    def boundary_keys(self, problem: Problem) -> tuple[str, ...]:
        return tuple(f"boundary.{a.name}.{s}" for a in problem.domain.space if not a.periodic for s in ("lo", "hi"))

    def run(
        self, problem: Problem, grid: Grid, times: np.ndarray, u0: torch.Tensor, params: Params, numerics: Numerics
    ) -> torch.Tensor:
        if not is_uniform(params["nu"]):
            raise SimulationError("heat_cn factorizes one matrix for the batch: expected the same nu for every trajectory")
        nu = float(params["nu"][0])
        batch, shape = u0.shape[0], grid.space_shape
        inner = tuple(slice(None) if a.periodic else slice(1, -1) for a in grid.space)
        inner_shape = tuple(a.n if a.periodic else a.n - 2 for a in grid.space)
        if min(inner_shape) < 1:
            raise SimulationError(f"heat_cn needs interior points on every bounded axis, got shape {shape}")
        L = laplacian(grid)
        walls, values = self._walls(problem, grid, params, batch)  # [W, *shape] masks, [batch, W]
        # the wall neighbours of interior points: b = L_full u_walls restricted to the unknowns
        b = np.zeros((batch,) + inner_shape)
        wall_field = np.einsum("bw,w...->b...", values, walls / np.maximum(walls.sum(0), 1))
        for d, a in enumerate(grid.space):
            if a.periodic:
                continue
            for src, dst in ((0, 0), (-1, -1)):
                index = [slice(None)] + [
                    inner[e] if e != d else slice(src, src + 1 if src == 0 else None) for e in range(grid.ndim)
                ]
                target = [slice(None)] + [
                    slice(None) if e != d else slice(dst, dst + 1 if dst == 0 else None) for e in range(grid.ndim)
                ]
                b[tuple(target)] += wall_field[tuple(index)] / a.spacing**2
        b = b.reshape(batch, -1).T  # [unknowns, batch]

        dt = numerics.dt
        if dt is None:  # a fraction h/L of the slowest mode's decay time: dt ~ h keeps the error O(h^2)
            span = max(a.length for a in grid.space)
            ratio = min(a.spacing / a.length for a in grid.space)
            dt = numerics.cfl * ratio * span**2 / (math.pi**2 * max(nu, 1e-300))
        eye = sp.identity(L.shape[0], format="csc")
        lus: dict[float, object] = {}
        u = u0[(slice(None), 0) + inner].detach().cpu().numpy().astype(np.float64).reshape(batch, -1).T.copy(order="F")
        out = np.empty((batch, len(times)) + shape)
        startup = 2  # Crank-Nicolson steps still to be replaced by implicit Euler half steps
        for i, (m, h) in enumerate(substeps(times, problem.domain.time[0], dt)):  # type: ignore[index]
            if m:
                if h not in lus:
                    lus[h] = splu((eye - 0.5 * h * nu * L).tocsc())
                lu = lus[h]
                explicit = (eye + 0.5 * h * nu * L).tocsr()
                for _ in range(m):
                    if startup:
                        for _ in range(2):  # implicit Euler with step h/2: the same matrix I - h/2 nu L
                            u = lu.solve(np.asfortranarray(u + 0.5 * h * nu * b))  # type: ignore[attr-defined]
                        startup -= 1
                    else:
                        u = lu.solve(np.asfortranarray(explicit @ u + h * nu * b))  # type: ignore[attr-defined]
            frame = wall_field.copy()
            frame[(slice(None),) + inner] = u.T.reshape((batch,) + inner_shape)
            out[:, i] = frame
        # the frame at t0 is the state the scheme evolves: the initial condition inside, the wall values on the walls
        # (as method_of_lines writes it), so that a time stepper started from it sees the trajectory's boundary data
        at_t0 = np.isclose(times, problem.domain.time[0])  # type: ignore[index]
        start = wall_field.copy()
        start[(slice(None),) + inner] = u0[(slice(None), 0) + inner].detach().cpu().numpy()
        out[:, at_t0] = start[:, None]
        return torch.as_tensor(out[:, :, None], device=u0.device)

    def _walls(self, problem: Problem, grid: Grid, params: Params, batch: int) -> tuple[np.ndarray, np.ndarray]:
        masks, values = [], []
        for d, a in enumerate(grid.space):
            if a.periodic:
                continue
            for side, pos in (("lo", 0), ("hi", a.n - 1)):
                mask = np.zeros(grid.space_shape)
                index = [slice(None)] * grid.ndim
                index[d] = pos  # type: ignore[call-overload]
                mask[tuple(index)] = 1
                masks.append(mask)
                values.append(wall_value(problem, params, a.name, side, batch).cpu().numpy())  # type: ignore[union-attr]
        if not masks:
            return np.zeros((0,) + grid.space_shape), np.zeros((batch, 0))
        return np.stack(masks), np.stack(values, axis=1)
