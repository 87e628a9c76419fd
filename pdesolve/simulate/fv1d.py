"""Viscous Burgers between Dirichlet walls: second-order finite volumes and scipy's ODE integrators.

Vertex-centred control volumes around the grid points (the walls are grid points that hold the wall
values). The convective flux is Godunov's exact Riemann flux for ``u^2/2`` between MUSCL states (van
Leer-limited slopes: second order where smooth, no new extrema at fronts); the viscous flux is the
centred difference. The semi-discrete system is integrated by ``scipy.integrate.solve_ivp`` (RK45 by
default: with the diffusion number bounded by the front resolution the system is not stiff).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import solve_ivp

from ..equations.families import Burgers
from ..grid import Grid
from ..problem import Problem
from .base import Numerics, Params, SimulationError, Simulator, dirichlet_walls_reason, family_reason, wall_value


def van_leer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The van Leer-limited slope from the one-sided slopes ``a`` and ``b`` (0 at extrema)."""
    ab = a * b
    return np.where(ab > 0, 2 * ab / np.where(ab > 0, a + b, 1.0), 0.0)


def godunov_burgers(ul: np.ndarray, ur: np.ndarray) -> np.ndarray:
    """Exact Riemann (Godunov) flux of ``f(u) = u^2/2``."""
    return np.maximum(0.5 * np.maximum(ul, 0) ** 2, 0.5 * np.minimum(ur, 0) ** 2)


class BurgersFV(Simulator):
    """Burgers with Dirichlet walls on a bounded 1D axis."""

    name = "fv1d"
    description = "1D vertex-centred finite volumes (Godunov flux, MUSCL van Leer), scipy solve_ivp (RK45)"

    def check(self, problem: Problem) -> str | None:
        return family_reason(problem, (Burgers,), 1, False) or dirichlet_walls_reason(problem)

    def boundary_keys(self, problem: Problem) -> tuple[str, ...]:
        x = problem.domain.space[0].name
        return (f"boundary.{x}.lo", f"boundary.{x}.hi")

    def run(
        self, problem: Problem, grid: Grid, times: np.ndarray, u0: torch.Tensor, params: Params, numerics: Numerics
    ) -> torch.Tensor:
        ax = grid.space[0]
        if ax.n < 4:
            raise SimulationError(f"fv1d needs at least 4 points on {ax.name!r}, got {ax.n}")
        batch, n, h = u0.shape[0], ax.n, ax.spacing
        lo = wall_value(problem, params, ax.name, "lo", batch).cpu().numpy()[:, None]  # type: ignore[union-attr]
        hi = wall_value(problem, params, ax.name, "hi", batch).cpu().numpy()[:, None]  # type: ignore[union-attr]
        nu = params["nu"].cpu().numpy()[:, None]

        def rhs(t: float, y: np.ndarray) -> np.ndarray:
            u = np.concatenate([lo, y.reshape(batch, n - 2), hi], axis=1)  # [batch, n] with the walls
            d = np.diff(u, axis=1) / h  # [batch, n-1] slopes between neighbours
            s = np.concatenate([d[:, :1], van_leer(d[:, :-1], d[:, 1:]), d[:, -1:]], axis=1)
            flux = godunov_burgers(u[:, :-1] + 0.5 * h * s[:, :-1], u[:, 1:] - 0.5 * h * s[:, 1:]) - nu * d
            return (-(flux[:, 1:] - flux[:, :-1]) / h).reshape(-1)

        t0 = problem.domain.time[0]  # type: ignore[index]
        y0 = u0[:, 0, 1:-1].detach().cpu().numpy().astype(np.float64).reshape(-1)
        sol = solve_ivp(
            rhs,
            (t0, float(times[-1])),
            y0,
            method=numerics.method or "RK45",
            t_eval=times,
            rtol=numerics.rtol,
            atol=numerics.atol,
        )
        if not sol.success:
            raise SimulationError(f"fv1d: solve_ivp failed at t={sol.t[-1] if len(sol.t) else t0}: {sol.message}")
        inner = sol.y.T.reshape(len(times), batch, n - 2).transpose(1, 0, 2)
        out = np.empty((batch, len(times), 1, n))
        out[:, :, 0, 1:-1] = inner
        out[:, :, 0, 0], out[:, :, 0, -1] = lo, hi
        at_t0 = np.isclose(times, t0)
        out[:, at_t0] = u0.detach().cpu().numpy()[:, None]
        return torch.as_tensor(out, device=u0.device)
