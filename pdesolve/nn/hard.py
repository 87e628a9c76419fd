"""Exact imposition of the initial condition and Dirichlet walls by an output transform.

Built automatically from a Problem's declared conditions. For each field, the constrained axes are
the time axis (the initial condition on ``t = t0``) and every space axis with a Dirichlet wall on one or
both sides. The network output ``N`` becomes

    u = G + phi N

- ``phi`` is a product of per-axis distances (``s`` or ``1 - s`` for one constrained side,
  ``4 s (1 - s)`` for two, with ``s`` the axis coordinate scaled to [0, 1]): zero on every
  constrained face, smooth everywhere;
- ``G`` is the transfinite (Coons) interpolant of the face data: the Boolean sum
  ``1 - prod_a (1 - P_a)`` of per-axis projectors ``P_a F = (1 - s_a) F|lo + s_a F|hi`` (or
  ``F|face`` for one side). It equals the data on every face when the data agree where faces meet
  (an initial condition that matches the wall values), and it is a polynomial blend of the data, so
  derivatives stay bounded up to the corners.

Neumann and Robin walls are left to loss terms.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np

from ..expr import Expression
from ..problem import Problem
from .jet import Jet, JetBackend


@dataclass(frozen=True)
class ConstrainedAxis:
    """An axis with exact data on one or both of its faces."""

    name: str
    lo: float
    hi: float
    faces: dict[str, Expression]  # side ("lo" | "hi") -> value expression
    labels: tuple[str, ...]


class HardConstraint:
    """The transform ``(coordinate jets, network jet) -> u`` for one problem."""

    def __init__(self, problem: Problem, initial: bool = True, dirichlet: bool = True):
        dom = problem.domain
        self.names = dom.names
        self.fields = problem.equation.fields
        bounds = dom.bounds
        self.axes: dict[str, list[ConstrainedAxis]] = {f: [] for f in self.fields}
        for f in self.fields:
            if initial and dom.time is not None and problem.initial is not None and f in problem.initial.values:
                t0, t1 = bounds["t"]
                self.axes[f].append(ConstrainedAxis("t", t0, t1, {"lo": problem.initial.values[f]}, (f"initial:{f}",)))
            if not dirichlet:
                continue
            for name in dom.space_names:
                walls = [bc for bc in problem.boundary if bc.kind == "dirichlet" and bc.axis == name and bc.field == f]
                if walls:
                    lo, hi = bounds[name]
                    faces = {bc.side: bc.value for bc in walls}
                    self.axes[f].append(ConstrainedAxis(name, lo, hi, faces, tuple(bc.label for bc in walls)))
        self.notes: list[str] = []
        for f in self.fields:
            mismatch = _corner_mismatch(problem, self.axes[f])
            if mismatch:
                self.axes[f] = [ax for ax in self.axes[f] if ax.name != "t"]
                self.notes.append(f"field {f!r}: the initial condition differs from the Dirichlet wall value where they meet "
                                  f"({mismatch}); no exact transform holds both, so the initial condition is a loss term "
                                  "(the walls stay exact)")
        for note in self.notes:
            warnings.warn(note, stacklevel=2)

    @property
    def active(self) -> bool:
        return any(self.axes.values())

    def enforced(self) -> set[str]:
        return {label for axes in self.axes.values() for ax in axes for label in ax.labels}

    def frame(self, cols: list[Jet]) -> list[tuple[Jet, Jet] | None]:
        """``(G, phi)`` per field (None where a field is free): they depend on the points only, so a solver
        with fixed collocation points computes them once instead of at every step."""
        env = dict(zip(self.names, cols))
        return [(_blend(self.axes[f], env, cols[0]), _distance(self.axes[f], env)) if self.axes[f] else None for f in self.fields]

    def __call__(self, cols: list[Jet], out: Jet, frame: list[tuple[Jet, Jet] | None] | None = None) -> Jet:
        """``u = G + phi N``. ``cols``: coordinate jets in (t, x, ...) order; ``out``: network jet ``[N, channels]``;
        ``frame``: :meth:`frame` of the same ``cols``, if the caller kept it."""
        frame = self.frame(cols) if frame is None else frame
        columns = []
        for c, gp in enumerate(frame):
            n = out[..., c]
            columns.append(n if gp is None else gp[0] + gp[1] * n)
        return Jet.stack(columns)


def _scaled(ax: ConstrainedAxis, env: dict[str, Jet]) -> Jet:
    return (env[ax.name] - ax.lo) * (1.0 / (ax.hi - ax.lo))


def _distance(axes: list[ConstrainedAxis], env: dict[str, Jet]) -> Jet:
    phi = None
    for ax in axes:
        s = _scaled(ax, env)
        if len(ax.faces) == 2:
            d = s * (1.0 - s) * 4.0
        else:
            d = s if "lo" in ax.faces else 1.0 - s
        phi = d if phi is None else phi * d
    return phi  # type: ignore[return-value]


def _weights(ax: ConstrainedAxis, env: dict[str, Jet]) -> dict[str, Jet | float]:
    if len(ax.faces) == 1:
        return {next(iter(ax.faces)): 1.0}
    s = _scaled(ax, env)
    return {"lo": 1.0 - s, "hi": s}


def _blend(axes: list[ConstrainedAxis], env: dict[str, Jet], like: Jet) -> Jet:
    """The Boolean sum of the per-axis projectors applied to the face data."""
    backend = JetBackend()
    weights = [_weights(ax, env) for ax in axes]
    total: Jet | None = None
    for size in range(1, len(axes) + 1):
        sign = 1.0 if size % 2 else -1.0
        for subset in itertools.combinations(range(len(axes)), size):
            for sides in itertools.product(*(list(axes[i].faces) for i in subset)):
                fixed = dict(env)
                weight: Jet | float = sign
                for i, side in zip(subset, sides):
                    ax = axes[i]
                    fixed[ax.name] = _constant(like, ax.lo if side == "lo" else ax.hi)
                    weight = weight * weights[i][side]
                first = axes[subset[0]]
                value = first.faces[sides[0]].evaluate(backend, **fixed)
                if not isinstance(value, Jet) and float(value) == 0.0:
                    continue  # homogeneous data adds nothing
                term = _as_jet(weight, like) * _as_jet(value, like)
                total = term if total is None else total + term
    return total if total is not None else _constant(like, 0.0)


def _constant(like: Jet, value: float) -> Jet:
    return like * 0.0 + value


def _as_jet(value: object, like: Jet) -> Jet:
    return value if isinstance(value, Jet) else _constant(like, float(value))  # type: ignore[arg-type]


def _corner_mismatch(problem: Problem, axes: list[ConstrainedAxis]) -> str:
    """Where the initial face and a wall face of one field disagree at t0 (checked on 9 points per wall), else ''."""
    initial = next((ax for ax in axes if ax.name == "t"), None)
    if initial is None:
        return ""
    dom, t0 = problem.domain, initial.lo
    bounds = dom.bounds
    samples = {n: np.linspace(*bounds[n], 9) for n in dom.space_names}
    for ax in axes:
        if ax.name == "t":
            continue
        for side, value in ax.faces.items():
            at = {n: samples[n] for n in dom.space_names}
            at[ax.name] = np.full(9, ax.lo if side == "lo" else ax.hi)
            u0 = initial.faces["lo"].numpy(t=np.full(9, t0), **at)
            wall = value.numpy(t=np.full(9, t0), **at)
            gap = np.abs(u0 - wall)
            if gap.max() > 1e-6 * (1 + np.abs(wall).max()):
                i = int(gap.argmax())
                return f"{ax.name} = {at[ax.name][i]:g}: initial {u0[i]:.4g}, wall {wall[i]:.4g}"
    return ""
