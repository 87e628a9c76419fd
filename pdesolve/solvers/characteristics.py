"""Where the characteristics of a 1D transport problem start: the label axis, its families and start data.

The Lagrangian PINN (:mod:`.lpinn`) labels each characteristic by where it starts: on the initial slice
(label = initial position) or, on a bounded axis, at an inflow wall (labels beyond the wall, the start time
growing with the distance from it). This module decides the inflow walls from the equation's transport
speed at the wall data, the velocity scale of the position branch, and samples collocation points per family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .. import sampling
from ..expr import Expression
from ..nn.jet import Jet, JetBackend
from ..problem import Axis, Domain, Problem


class _Pointwise:
    """A Derivatives accessor with values only, to read an equation's velocity from known data."""

    def __init__(self, axis: str, u: Tensor, x: Tensor, t: Tensor):
        self.space = (axis,)
        self._u, self._coords = u, {axis: x, "t": t}

    def __call__(self, field: str, *axes: str) -> Tensor:
        if axes:
            raise ValueError(f"a characteristic speed that depends on derivatives {axes} is not a transport speed")
        return self._u

    def coord(self, name: str) -> Tensor:
        return self._coords[name]


def transport_speed(problem: Problem, u: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """The equation's characteristic speed at known states (float64), or None when it has no transport."""
    axis = problem.domain.space[0].name
    u_, x_, t_ = (torch.as_tensor(np.broadcast_to(a, np.broadcast_shapes(u.shape, x.shape, t.shape)).copy(), dtype=torch.float64)
                  for a in (u, x, t))
    f = problem.equation.velocity(_Pointwise(axis, u_, x_, t_), problem.coefficients)
    return None if f is None else np.broadcast_to(torch.as_tensor(f).double().numpy(), u_.shape)


def wall_value(problem: Problem, side: str) -> Expression | None:
    walls = [bc for bc in problem.boundary if bc.side == side and bc.kind == "dirichlet"]
    return walls[0].value if walls else None


def wall_speeds(problem: Problem, side: str, n: int = 65) -> np.ndarray:
    """The speed at the wall over time, from the wall data (or the initial state where there is none)."""
    ax = problem.domain.space[0]
    t0, t1 = problem.domain.time  # type: ignore[misc]
    x = ax.lo if side == "lo" else ax.hi
    t = np.linspace(t0, t1, n)
    g = wall_value(problem, side)
    if g is not None:
        u = g.numpy(t=t, **{ax.name: np.full_like(t, x)})
    else:
        u = np.full_like(t, float(problem.initial.values[problem.equation.fields[0]].numpy(**{ax.name: np.array([x])})[0]))  # type: ignore[union-attr]
    return transport_speed(problem, u, np.full_like(t, x), t)  # type: ignore[return-value]


def inflow_sides(problem: Problem) -> list[str]:
    """The walls through which characteristics enter (bounded axis), decided from the wall data."""
    if problem.domain.space[0].periodic:
        return []
    sides = []
    for side, sign in (("lo", 1.0), ("hi", -1.0)):
        inward = sign * wall_speeds(problem, side)
        if np.all(inward > 0):
            sides.append(side)
    return sides


@dataclass(frozen=True)
class Family:
    """Characteristics that start on one part of the boundary of space-time: labels ``s`` in [lo, hi].

    ``initial``: start at ``(x = s, t0)`` with ``u0(s)``; ``inflow`` at a wall: start at ``(wall, tau(s))``
    with the wall value, ``tau`` growing with the distance of ``s`` from the wall at the speed scale.
    """

    kind: Literal["initial", "inflow"]
    lo: float
    hi: float
    side: str = ""
    drift: float = 0.0  # the position branch's offset, in units of the speed scale (see Characteristics)

    @property
    def label(self) -> str:
        return self.kind if self.kind == "initial" else f"inflow@{self.side}"


class Characteristics:
    """Where characteristics start, for one problem: the label axis, the families and their start data.

    ``frame`` (periodic axes): ``"rest"`` starts every characteristic at rest, ``"mean"`` at the mean initial
    transport speed; see :class:`pdesolve.solvers.lpinn.LPINNOptions`.
    """

    def __init__(self, problem: Problem, frame: Literal["rest", "mean"] = "rest"):
        self.problem = problem
        ax = problem.domain.space[0]
        self.axis, self.field = ax, problem.equation.fields[0]
        self.t0, self.t1 = problem.domain.time  # type: ignore[misc]
        self.u0 = problem.initial.values[self.field]  # type: ignore[union-attr]
        s = np.linspace(ax.lo, ax.hi, 4097)
        initial_speed = transport_speed(problem, self.u0.numpy(**{ax.name: s}), s, np.full_like(s, self.t0))  # type: ignore[arg-type]
        speeds = [np.abs(initial_speed)]
        self.inflow = inflow_sides(problem)
        speeds += [np.abs(wall_speeds(problem, side)) for side in self.inflow]
        top = float(max(np.max(v) for v in speeds))
        self.speed = top if top > 0 else 1.0  # V: the velocity scale of the position branch
        reach = self.speed * (self.t1 - self.t0)
        # X = x_s + age V (N + drift): with drift 0, characteristics start at rest (dX/ds = 1); an inflow family
        # needs motion (at rest all its labels would sit on the wall, dX/ds = 0), so it enters at the speed
        # scale (dX/ds = 1 again); the initial family shares that drift so that X stays continuous where
        # the families meet (only with inflow through both walls does one junction take a jump)
        drift = 1.0 if "lo" in self.inflow else -1.0 if "hi" in self.inflow else 0.0
        if ax.periodic and frame == "mean":
            # no walls: move with the mean initial transport (a Galilean frame), so that the position branch
            # learns only the deviation from it (none at all for constant-speed convection)
            drift = float(np.mean(initial_speed[:-1])) / self.speed  # the periodic end point excluded
        self.families = [Family("initial", ax.lo, ax.hi, "", drift)]
        if "lo" in self.inflow:
            self.families.append(Family("inflow", ax.lo - reach, ax.lo, "lo", 1.0))
        if "hi" in self.inflow:
            self.families.append(Family("inflow", ax.hi, ax.hi + reach, "hi", -1.0))
        lo, hi = min(f.lo for f in self.families), max(f.hi for f in self.families)
        # the label axis: the periodic space axis itself, or the bounded axis extended beyond its inflow walls
        self.label_domain = Domain((Axis(ax.name, lo, hi, ax.periodic),), (self.t0, self.t1))

    def start_time(self, fam: Family, s: Any) -> Any:
        """``tau(s)``: when the characteristic with label ``s`` starts (numpy, tensor or jet)."""
        if fam.kind == "initial":
            return s * 0.0 + self.t0
        dist = (fam.hi - s) if fam.side == "lo" else (s - fam.lo)
        return dist * (1.0 / self.speed) + self.t0

    def start(self, fam: Family, s: Any) -> tuple[Any, Any, Any]:
        """``(x_s, tau_s, u_s)`` of the labels ``s`` ``[N]`` (a tensor or a jet)."""
        tau = self.start_time(fam, s)
        if fam.kind == "initial":
            x, u = s, self._eval(self.u0, s, {self.axis.name: s})
        else:
            x = s * 0.0 + (self.axis.lo if fam.side == "lo" else self.axis.hi)
            g = wall_value(self.problem, fam.side)
            u = self._eval(g, s, {"t": tau, self.axis.name: x})  # type: ignore[arg-type]
        return x, tau, u

    @staticmethod
    def _eval(expr: Expression, like: Any, env: dict[str, Any]) -> Any:
        out = expr.evaluate(JetBackend(), **env) if isinstance(like, Jet) else expr.torch(**env)
        return out if isinstance(out, (Jet, Tensor)) else like * 0.0 + float(out)

    def sample(self, n: int, sampler: str, rng: np.random.Generator) -> list[np.ndarray]:
        """Collocation points ``(t, s)`` per family, ``[n_f, 2]``, spread in proportion to each family's area."""
        T = self.t1 - self.t0
        areas = np.array([(f.hi - f.lo) * T * (1.0 if f.kind == "initial" else 0.5) for f in self.families])
        counts = np.maximum(1, np.round(n * areas / areas.sum()).astype(int))
        out = []
        for fam, m in zip(self.families, counts):
            unit = sampling.unit_samples(int(m), 2, sampler, rng)
            s = fam.lo + unit[:, 1] * (fam.hi - fam.lo)
            tau = self.start_time(fam, s)
            out.append(np.stack([tau + unit[:, 0] * (self.t1 - tau), s], axis=1))
        return out

    def labels(self, per_length: float) -> list[np.ndarray]:
        """Uniform labels per family for mapping back to a grid (the periodic end point excluded)."""
        out = []
        for fam in self.families:
            m = max(2, int(math.ceil((fam.hi - fam.lo) * per_length)))
            end = self.axis.periodic and fam.kind == "initial"
            out.append(np.linspace(fam.lo, fam.hi, m, endpoint=not end))
        return out
