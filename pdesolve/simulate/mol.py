"""Method of lines on the equation's own grid form: any equation that implements ``rhs``, registered or not.

The semi-discrete system is ``du/dt = F(u) + source(t, x)`` at the unknown grid points, with ``F`` the
equation's grid face :meth:`pdesolve.equations.Equation.rhs` (spectral derivatives on periodic axes,
second-order finite differences on bounded ones, :meth:`pdesolve.grid.Grid.diff`). Bounded axes carry
constant Dirichlet walls whose grid points hold the wall values (one per wall and per trajectory; where two
walls meet, their mean); every other point is an unknown. The whole batch is one system for
``scipy.integrate.solve_ivp`` (``Numerics.method``, RK45 by default; rtol and atol from ``Numerics``); the
implicit methods get the block-diagonal Jacobian sparsity of independent trajectories. The generic scheme
comes last in the registry: the specialised simulators win for the families they know.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.integrate import solve_ivp

from ..grid import Grid
from ..problem import Problem
from .base import Numerics, Params, SimulationError, Simulator, dirichlet_walls_reason, per_batch, wall_value

_SPARSE_JACOBIAN = ("BDF", "Radau")  # solve_ivp methods that take jac_sparsity


class MethodOfLines(Simulator):
    """``u_t = F(u) + source`` through the equation's ``rhs``, periodic axes and constant Dirichlet walls."""

    name = "method_of_lines"
    description = "the equation's grid form (Grid.diff: spectral on periodic axes, finite differences on bounded), scipy solve_ivp"

    def check(self, problem: Problem) -> str | None:
        eq = problem.equation
        if not eq.grid_form:
            return f"needs the equation's grid form; {eq.name!r} implements no rhs (it is defined at points only)"
        if problem.domain.time is None:
            return "needs a time-dependent problem"
        if len(eq.fields) > 1 and not all(a.periodic for a in problem.domain.space):
            return f"holds walls of one field; {eq.name!r} has {list(eq.fields)} (use periodic axes)"
        return dirichlet_walls_reason(problem)

    def boundary_keys(self, problem: Problem) -> tuple[str, ...]:
        return tuple(f"boundary.{a.name}.{s}" for a in problem.domain.space if not a.periodic for s in ("lo", "hi"))

    def run(self, problem: Problem, grid: Grid, times: np.ndarray, u0: torch.Tensor, params: Params, numerics: Numerics) -> torch.Tensor:
        eq, batch, channels = problem.equation, u0.shape[0], u0.shape[1]
        for a in grid.space:
            if not a.periodic and a.n < 3:
                raise SimulationError(f"method_of_lines needs at least 3 points on the bounded axis {a.name!r}, got {a.n}")
        depth = 1 + grid.ndim  # [batch, channel, *space]
        p = {k: per_batch(v.cpu(), depth) for k, v in params.items() if not k.startswith("boundary.")}
        walls = wall_frame(problem, grid, params, batch)  # [batch, *space], NaN at the unknowns
        known = ~torch.isnan(walls[0])  # [*space], True on the walls
        unknown = ~known
        source = _source(problem, grid)
        frame = torch.zeros((batch, channels) + grid.space_shape, dtype=torch.float64)
        frame[:, :, known] = walls[:, known].unsqueeze(1)

        def rhs(t: float, y: np.ndarray) -> np.ndarray:
            u = frame.clone()
            u[:, :, unknown] = torch.from_numpy(y).reshape(batch, channels, -1)
            du = eq.rhs(u, grid, p)
            if source is not None:
                du = du + source(t)
            return du[:, :, unknown].reshape(-1).numpy()

        t0 = problem.domain.time[0]  # type: ignore[index]
        y0 = u0.detach().cpu().to(torch.float64)[:, :, unknown].reshape(-1).numpy()
        method = numerics.method or "RK45"
        extra = {}
        if method in _SPARSE_JACOBIAN:  # trajectories are independent: one dense block each
            m = channels * int(unknown.sum())
            extra["jac_sparsity"] = sp.block_diag([np.ones((m, m))] * batch, format="csr")
        sol = solve_ivp(rhs, (t0, float(times[-1])), y0, method=method, t_eval=times, rtol=numerics.rtol, atol=numerics.atol, **extra)
        if not sol.success:
            raise SimulationError(f"method_of_lines: solve_ivp failed at t={sol.t[-1] if len(sol.t) else t0}: {sol.message}")
        out = frame.unsqueeze(1).repeat(1, len(times), 1, *([1] * grid.ndim))  # [batch, time, channel, *space]
        values = torch.from_numpy(sol.y.T.copy()).reshape(len(times), batch, channels, -1).transpose(0, 1)
        out[:, :, :, unknown] = values
        # the frame at t0 is the state the method evolves: the initial condition inside, the wall values on the walls
        # (where they differ, the initial condition meets the walls only in the limit t -> t0); a time stepper
        # started from it then sees every trajectory's boundary data
        at_t0 = torch.from_numpy(np.isclose(times, t0))
        start = u0.detach().cpu().to(torch.float64).clone()
        start[:, :, known] = walls[:, known].unsqueeze(1)
        out[:, at_t0] = start.unsqueeze(1)
        return out.to(u0.device)


def wall_frame(problem: Problem, grid: Grid, params: Params, batch: int) -> torch.Tensor:
    """``[batch, *space]``: the Dirichlet wall values on the wall points (the mean where walls meet), NaN elsewhere."""
    total = torch.zeros((batch,) + grid.space_shape, dtype=torch.float64)
    count = torch.zeros(grid.space_shape, dtype=torch.float64)
    for d, a in enumerate(grid.space):
        if a.periodic:
            continue
        for side, pos in (("lo", 0), ("hi", a.n - 1)):
            value = wall_value(problem, params, a.name, side, batch)
            if value is None:
                raise SimulationError(f"method_of_lines needs a Dirichlet condition on {a.name}.{side}")
            index = [slice(None)] * grid.ndim
            index[d] = pos  # type: ignore[call-overload]
            total[(slice(None), *index)] += value.cpu().reshape((batch,) + (1,) * (grid.ndim - 1))
            count[tuple(index)] += 1
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def _source(problem: Problem, grid: Grid):
    """``source(t)`` on the grid, ``[*space]`` float64 (added to every field), or None without a source term."""
    if problem.source is None:
        return None
    expr, mesh = problem.source, {a.name: c for a, c in zip(grid.space, np.meshgrid(*(a.coords for a in grid.space), indexing="ij"))}

    def source(t: float) -> torch.Tensor:
        return torch.from_numpy(expr.numpy(t=np.asarray(t), **mesh))

    return source
