"""Time-discrete residuals of an equation on a grid: how far a pair of frames is from one step of a scheme.

With ``F(u, t) = rhs(u) + source(t)`` the equation's grid form (:meth:`Equation.rhs`, plus the problem's
source term) and ``dt`` the step from ``u0`` (at ``t``) to ``u1``:

- :func:`crank_nicolson`: ``(u1 - u0)/dt - (F(u1, t + dt) + F(u0, t))/2`` (second order);
- :func:`imex_euler`: ``(u1 - u0)/dt - L u1 - (F(u0, t) - L u0)``, the linear part ``L`` of the equation's
  split (:meth:`Equation.split`) implicit, applied on the grid, the rest explicit (first order).

Both are batched torch ``[batch, channel, *space] -> [batch, channel, *interior]`` and differentiable in
the frames (the loss of physics-only grid solvers); :func:`trajectory_residual` evaluates a whole
trajectory ``[batch, time, channel, *space]`` at once. On bounded axes the residual is reported at the
interior points only: the walls are boundary conditions, not steps of the equation. Coefficients ``p``
default to the problem's; per-trajectory values are ``[batch]`` tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..grid import Grid

if TYPE_CHECKING:
    from ..problem import Problem

Residual = Callable[..., torch.Tensor]


def grid_forcing(problem: Problem, u: torch.Tensor, grid: Grid, t: Any = None, p: Mapping[str, Any] | None = None) -> torch.Tensor:
    """``F(u, t) = rhs(u) + source(t)`` on the grid, the shape of ``u`` ``[..., channel, *space]``.

    ``t``: a number, or a tensor that broadcasts against ``u`` without its trailing ``channel, *space``
    dimensions; needed only when the problem has a source term. ``p``: coefficients as given (see :func:`coefficients`).
    """
    out = problem.equation.rhs(u, grid, coefficients(problem, u, grid, p))
    if problem.source is None:
        return out
    if t is None:
        raise ValueError(f"problem {problem.name!r} has a source term: pass the time t of the frames")
    tt = torch.as_tensor(t, dtype=u.dtype, device=u.device)
    tt = tt.reshape(tt.shape + (1,) * (1 + grid.ndim))  # over channel and space
    mesh = np.meshgrid(*(a.coords for a in grid.space), indexing="ij")
    space = {a.name: torch.as_tensor(m, dtype=u.dtype, device=u.device) for a, m in zip(grid.space, mesh)}
    return out + problem.source.torch(t=tt, **space)


def crank_nicolson(
    problem: Problem, u0: torch.Tensor, u1: torch.Tensor, dt: float, grid: Grid, *, t: Any = None, p: Mapping[str, Any] | None = None
) -> torch.Tensor:
    """``(u1 - u0)/dt - (F(u1, t + dt) + F(u0, t))/2`` at the interior points."""
    later = None if t is None else torch.as_tensor(t, dtype=u0.dtype, device=u0.device) + dt
    r = (u1 - u0) / dt - 0.5 * (grid_forcing(problem, u1, grid, later, p) + grid_forcing(problem, u0, grid, t, p))
    return interior(r, grid)


def imex_euler(
    problem: Problem, u0: torch.Tensor, u1: torch.Tensor, dt: float, grid: Grid, *, t: Any = None, p: Mapping[str, Any] | None = None
) -> torch.Tensor:
    """``(u1 - u0)/dt - L u1 - (F(u0, t) - L u0)`` at the interior points, ``L`` the split's linear part."""
    eq = problem.equation
    split = eq.split(coefficients(problem, u0, grid, p))
    if split is None:
        raise ValueError(f"imex_euler needs the equation's split into a linear part and the rest; {eq.name!r} states none")
    L = split.linear
    r = (u1 - u0) / dt - L.apply(u1, grid) - (grid_forcing(problem, u0, grid, t, p) - L.apply(u0, grid))
    return interior(r, grid)


SCHEMES: dict[str, Residual] = {"crank_nicolson": crank_nicolson, "imex_euler": imex_euler}


def trajectory_residual(
    problem: Problem, u: torch.Tensor, grid: Grid, scheme: str = "crank_nicolson", p: Mapping[str, Any] | None = None
) -> torch.Tensor:
    """The residual of every step of a trajectory ``u [batch, time, channel, *space]`` on ``grid`` (whose
    uniform time axis gives the frame times): ``[batch, time - 1, channel, *interior]``."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; valid schemes are {sorted(SCHEMES)}")
    if grid.time is None:
        raise ValueError("trajectory_residual needs a grid with a time axis (the frame times)")
    expected = (grid.time.n, len(problem.equation.fields)) + grid.space_shape
    if u.dim() != 2 + grid.ndim + 1 or tuple(u.shape[1:]) != expected:
        raise ValueError(f"expected u [batch, {', '.join(map(str, expected))}], got shape {tuple(u.shape)}")
    times = torch.as_tensor(grid.time.coords[:-1], dtype=u.dtype, device=u.device)
    return SCHEMES[scheme](problem, u[:, :-1], u[:, 1:], grid.time.spacing, grid, t=times, p=p)


def coefficients(problem: Problem, u: torch.Tensor, grid: Grid, p: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The coefficients for fields ``u [batch, ..., channel, *space]``: the problem's, overridden by ``p``;
    a ``[batch]`` tensor becomes ``[batch, 1, ..., 1]`` so that it broadcasts against ``u``."""
    out: dict[str, Any] = dict(problem.coefficients)
    for name, v in (p or {}).items():
        if isinstance(v, torch.Tensor) and v.dim() == 1:
            v = v.to(dtype=u.dtype, device=u.device).reshape((-1,) + (1,) * (u.dim() - 1))
        out[name] = v
    return out


def interior(r: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``r [..., *space]`` without the wall points of the bounded axes."""
    return r[(..., *(slice(None) if a.periodic else slice(1, -1) for a in grid.space))]
