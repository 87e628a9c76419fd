"""Diffusion with Freundlich sorption on a bounded 1D axis: conservative finite volumes, stiff BDF.

The state is the total concentration ``c = u + a u^n_f`` (dissolved plus sorbed, ``a = (1-phi)/phi rho_s
k_f``), which obeys the conservation law ``c_t = D u_xx``: vertex-centred control volumes exchange the
diffusive fluxes ``-D u_x`` through their faces, so mass changes only through the walls. Working in ``c``
also removes the singular retardation factor ``R(u) = dc/du`` (infinite at u = 0 when n_f < 1): ``u(c)`` is
smooth and is recovered by a monotone Newton iteration. Walls are Dirichlet (the wall node holds the value)
or flux conditions ``alpha u + beta du/dn = g`` with beta != 0 (the outward flux is ``D (alpha u - g) / beta``
through the half control volume at the wall). Two extra ODE components per trajectory accumulate the
inflow and outflow through the walls, so the mass balance can be checked to the integrator's tolerance.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.integrate import solve_ivp

from ..equations.diffusion_sorption import DiffusionSorption, sorption_coefficient
from ..grid import Grid
from ..problem import Problem
from .base import Numerics, Params, SimulationError, Simulator, boundary_condition, family_reason, wall_value


def total_concentration(u: np.ndarray, a: np.ndarray, n_f: np.ndarray) -> np.ndarray:
    """``c(u) = u + a |u|^n_f sign(u)`` (odd and increasing, so negative round-off stays invertible)."""
    return u + a * np.sign(u) * np.abs(u) ** n_f


def dissolved(c: np.ndarray, a: np.ndarray, n_f: np.ndarray, tol: float = 1e-14) -> np.ndarray:
    """Invert :func:`total_concentration` by Newton's method on ``v = |u|^n_f``.

    ``f(v) = v^(1/n_f) + a v`` is increasing and, for n_f <= 1, convex and smooth at v = 0; Newton from
    ``v = |c|/a`` (right of the root) then converges monotonically.
    """
    cc = np.abs(c)
    a_b = np.broadcast_to(a, c.shape)
    s = np.broadcast_to(1.0 / n_f, c.shape)
    sorbing = a_b > 0
    v = np.where(sorbing, cc / np.where(sorbing, a_b, 1.0), 0.0)
    for _ in range(100):
        vs = np.maximum(v, 1e-300)
        f = vs**s + a_b * vs - cc
        fp = s * vs ** (s - 1) + a_b
        step = np.where(sorbing, f / fp, 0.0)
        v = np.maximum(v - step, 0.0)
        if np.all(np.abs(step) <= tol * (v + 1e-300)):
            break
    return np.sign(c) * np.where(sorbing, v**s, cc)


class _Wall:
    """One wall: Dirichlet (value) or a flux condition (outward flux ``D (alpha u - g) / beta``)."""

    def __init__(self, problem: Problem, params: Params, axis: str, side: str, batch: int):
        bc = boundary_condition(problem, axis, side)
        if bc is None:
            raise SimulationError(f"diffusion_sorption needs a condition on {axis}.{side}")
        if not bc.value.is_constant():
            raise SimulationError(f"{bc.label}: expected a constant value, got {bc.value.text!r}")
        self.dirichlet = bc.kind == "dirichlet" or bc.beta == 0
        self.alpha, self.beta, self.g = bc.alpha, bc.beta, bc.value.value()
        if self.dirichlet:
            v = wall_value(problem, params, axis, side, batch)
            self.value = (v if v is not None else torch.full((batch,), self.g / bc.alpha, dtype=torch.float64)).cpu().numpy()
        elif self.alpha / self.beta < 0:
            warnings.warn(
                f"{bc.label}: alpha/beta < 0 makes the wall feed mass in proportion to u; the problem has a growing "
                "boundary mode (rate ~ D (alpha/beta)^2 / R) and the solution may blow up",
                stacklevel=3,
            )


class DiffusionSorptionFV(Simulator):
    """The PDEBench diffusion-sorption problem (and its variants) by conservative finite volumes."""

    name = "diffusion_sorption_fv"
    description = "1D vertex-centred finite volumes in the total concentration, scipy solve_ivp (BDF, sparse Jacobian)"

    def check(self, problem: Problem) -> str | None:
        reason = family_reason(problem, (DiffusionSorption,), 1, False)
        if reason:
            return reason
        x = problem.domain.space[0].name
        for side in ("lo", "hi"):
            bc = boundary_condition(problem, x, side)
            if bc is None:
                return f"needs a condition on {x}.{side}"
            if bc.kind == "neumann" or (bc.kind == "robin" and bc.beta != 0):
                continue
            if bc.kind != "dirichlet" and bc.beta == 0 and bc.alpha == 0:
                return f"{bc.label}: alpha and beta are both zero"
        return None

    def boundary_keys(self, problem: Problem) -> tuple[str, ...]:
        x = problem.domain.space[0].name
        return tuple(
            f"boundary.{x}.{s}" for s in ("lo", "hi") if getattr(boundary_condition(problem, x, s), "kind", None) == "dirichlet"
        )

    def run(
        self, problem: Problem, grid: Grid, times: np.ndarray, u0: torch.Tensor, params: Params, numerics: Numerics
    ) -> torch.Tensor:
        u, _ = integrate(problem, grid, times, u0, params, numerics)
        return u


@dataclass(frozen=True)
class MassBalance:
    """Per trajectory and output time ``[batch, time]``: the mass in the control volumes and the
    accumulated inflow / outflow through the two walls since t0 (mass(t) - mass(t0) = inflow - outflow)."""

    mass: np.ndarray
    inflow: np.ndarray
    outflow: np.ndarray


def integrate(
    problem: Problem, grid: Grid, times: np.ndarray, u0: torch.Tensor, params: Params, numerics: Numerics
) -> tuple[torch.Tensor, MassBalance]:
    """``u0 [batch, 1, n]`` -> ``u [batch, time, 1, n]`` and the mass balance."""
    ax = grid.space[0]
    batch, n, h = u0.shape[0], ax.n, ax.spacing
    if n < 3:
        raise SimulationError(f"diffusion_sorption_fv needs at least 3 points, got {n}")
    lo, hi = (_Wall(problem, params, ax.name, s, batch) for s in ("lo", "hi"))
    first, last = (1 if lo.dirichlet else 0), (n - 1 if hi.dirichlet else n)  # unknown nodes [first, last)
    m = last - first
    if m < 1:
        raise SimulationError("diffusion_sorption_fv: no unknown nodes between two Dirichlet walls")
    p = {k: params[k].cpu().numpy()[:, None] for k in ("D", "porosity", "rho_s", "k_f", "n_f")}
    a, n_f, D = sorption_coefficient(p), p["n_f"], p["D"]
    vol = np.full(m, h)
    if not lo.dirichlet:
        vol[0] = h / 2
    if not hi.dirichlet:
        vol[-1] = h / 2

    def full_u(c: np.ndarray) -> np.ndarray:
        u = np.empty((batch, n))
        u[:, first:last] = dissolved(c, a, n_f)
        if lo.dirichlet:
            u[:, 0] = lo.value
        if hi.dirichlet:
            u[:, -1] = hi.value
        return u

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        y = y.reshape(batch, m + 2)
        u = full_u(y[:, :m])
        face = -D * np.diff(u, axis=1) / h  # [batch, n-1] rightward flux through faces i+1/2
        # flux into the left end of each unknown control volume and out of its right end
        q_lo = face[:, 0] if lo.dirichlet else -(D[:, 0] * (lo.alpha * u[:, 0] - lo.g) / lo.beta)
        q_hi = face[:, -1] if hi.dirichlet else D[:, 0] * (hi.alpha * u[:, -1] - hi.g) / hi.beta
        inflow = np.concatenate([q_lo[:, None], face[:, first : last - 1]], axis=1)
        outflow = np.concatenate([face[:, first : last - 1], q_hi[:, None]], axis=1)
        out = np.empty_like(y)
        out[:, :m] = (inflow - outflow) / vol
        out[:, m], out[:, m + 1] = q_lo, q_hi
        return out.reshape(-1)

    block = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(m + 2, m + 2), format="lil", dtype=np.float64)
    block[m:, :] = 0
    block[m, : min(2, m)] = 1
    block[m + 1, max(0, m - 2) : m] = 1
    block[:m, m:] = 0
    sparsity = sp.kron(sp.identity(batch), block.tocsr(), format="csr")

    t0 = problem.domain.time[0]  # type: ignore[index]
    c0 = total_concentration(u0[:, 0, first:last].detach().cpu().numpy().astype(np.float64), a, n_f)
    y0 = np.concatenate([c0, np.zeros((batch, 2))], axis=1).reshape(-1)
    sol = solve_ivp(
        rhs, (t0, float(times[-1])), y0, method=numerics.method or "BDF", t_eval=times,
        rtol=numerics.rtol, atol=numerics.atol, jac_sparsity=sparsity,
    )  # fmt: skip
    if not sol.success:
        raise SimulationError(f"diffusion_sorption_fv: solve_ivp failed: {sol.message}")
    ys = sol.y.T.reshape(len(times), batch, m + 2)
    out = np.stack([full_u(ys[i, :, :m]) for i in range(len(times))], axis=1)[:, :, None]
    at_t0 = np.isclose(times, t0)
    out[:, at_t0] = u0.detach().cpu().numpy()[:, None]
    balance = MassBalance((ys[:, :, :m] * vol).sum(-1).T, ys[:, :, m].T, ys[:, :, m + 1].T)
    return torch.as_tensor(out, device=u0.device), balance
