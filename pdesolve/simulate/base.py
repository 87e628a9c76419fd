"""The simulator interface and the one entry point :func:`simulate`.

A simulator advances a batch of initial states ``u0 [batch, channel, *space]`` on a Grid to a list of
output times and returns ``[batch, time, channel, *space]``. Coefficients may differ per trajectory:
``params`` maps an equation parameter (``"nu"``) or, where a simulator supports it, a wall value
(``"boundary.x.lo"``) to one value per trajectory.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..equations import Equation
from ..grid import Grid, GridAxis
from ..problem import Problem


class SimulationError(ValueError):
    """A simulator asked to do something it cannot (wrong family, boundary, grid or parameters)."""


@dataclass(frozen=True)
class Numerics:
    """Time-stepping controls shared by the simulators; each uses the ones that apply to its scheme.

    ``dt``: the largest internal step (None: chosen from ``cfl`` and the state); ``rtol``/``atol``: the
    tolerances of scipy's adaptive integrators (method-of-lines simulators); ``dealias``: the 2/3 rule on
    the nonlinear terms of the pseudo-spectral simulators; ``method``: the scipy ``solve_ivp`` method of
    the method-of-lines simulators (None: the simulator's default, a stiff one where the problem is stiff).
    """

    dt: float | None = None
    cfl: float = 0.5
    rtol: float = 1e-8
    atol: float = 1e-10
    dealias: bool = True
    method: str | None = None

    def __post_init__(self) -> None:
        if self.dt is not None and not self.dt > 0:
            raise SimulationError(f"dt must be positive, got {self.dt}")
        if not self.cfl > 0:
            raise SimulationError(f"cfl must be positive, got {self.cfl}")


Params = dict[str, torch.Tensor]  # name -> [batch] values, float64 on the simulation device


class Simulator(abc.ABC):
    """One numerical scheme for some problem families. Subclasses are small and final."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abc.abstractmethod
    def check(self, problem: Problem) -> str | None:
        """Why this simulator cannot run ``problem`` (None if it can)."""

    def boundary_keys(self, problem: Problem) -> tuple[str, ...]:
        """Wall values that may vary per trajectory, as ``boundary.<axis>.<side>`` keys."""
        return ()

    @abc.abstractmethod
    def run(
        self, problem: Problem, grid: Grid, times: np.ndarray, u0: torch.Tensor, params: Params, numerics: Numerics
    ) -> torch.Tensor:
        """``u0 [batch, channel, *space]`` at ``t0`` -> ``[batch, len(times), channel, *space]``."""


# ------------------------------------------------------------------------------------------ helpers
def family_reason(problem: Problem, families: tuple[type[Equation], ...], ndim: int | None, periodic: bool | None) -> str | None:
    """Why ``problem``'s equation is not one of ``families`` (or a subclass), or its layout does not fit (:func:`layout_reason`)."""
    eq = problem.equation
    if not isinstance(eq, families):
        return f"handles {[f.name for f in families]}, not {eq.name!r}"
    return layout_reason(problem, ndim, periodic)


def layout_reason(problem: Problem, ndim: int | None, periodic: bool | None) -> str | None:
    """Why ``problem`` does not have ``ndim`` space axes, all (non-)periodic, and no source term (None: it does)."""
    space = problem.domain.space
    if ndim is not None and len(space) != ndim:
        return f"needs {ndim} space axes, got {len(space)}"
    if periodic is not None and not all(a.periodic == periodic for a in space):
        return f"needs {'periodic' if periodic else 'bounded'} space axes"
    if problem.source is not None:
        return "handles problems without a source term"
    return None


def substeps(times: np.ndarray, t0: float, dt_max: float | None) -> list[tuple[int, float]]:
    """For each output interval (from ``t0``): the number of equal sub-steps and their size."""
    out, now = [], t0
    for t in times:
        span = float(t - now)
        if span < -1e-12 * max(1.0, abs(t)):
            raise SimulationError(f"output times must be increasing and >= t0={t0}, got {t} after {now}")
        if span <= 0:
            out.append((0, 0.0))
        else:
            n = 1 if dt_max is None else max(1, math.ceil(span / dt_max - 1e-9))
            out.append((n, span / n))
        now = float(t)
    return out


def wall_value(problem: Problem, params: Params, axis: str, side: str, batch: int, t: float = 0.0) -> torch.Tensor | None:
    """A Dirichlet wall's constant value per trajectory ``[batch]`` (None where the wall is not Dirichlet).

    A ``boundary.<axis>.<side>`` entry of ``params`` overrides the problem's value.
    """
    key = f"boundary.{axis}.{side}"
    if key in params:
        return params[key]
    bc = boundary_condition(problem, axis, side)
    if bc is None or bc.kind != "dirichlet":
        return None
    if not bc.value.is_constant():
        raise SimulationError(f"{bc.label}: expected a constant wall value, got {bc.value.text!r}")
    return torch.full((batch,), bc.value.value(), dtype=torch.float64)


def boundary_condition(problem: Problem, axis: str, side: str, field: str | None = None) -> Any:
    for bc in problem.boundary:
        if bc.axis == axis and bc.side == side and (field is None or bc.field == field):
            return bc
    return None


def dirichlet_walls_reason(problem: Problem) -> str | None:
    """Why not every bounded axis has constant Dirichlet values on both walls (None if it has)."""
    for ax in problem.domain.space:
        if ax.periodic:
            continue
        for side in ("lo", "hi"):
            bc = boundary_condition(problem, ax.name, side)
            if bc is None or bc.kind != "dirichlet":
                return f"needs a Dirichlet condition on {ax.name}.{side}, got {bc.kind if bc else 'none'}"
            if not bc.value.is_constant():
                return f"needs a constant value on {ax.name}.{side}, got {bc.value.text!r}"
    return None


def per_batch(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """``[batch]`` -> ``[batch, 1, ..., 1]`` with ``ndim`` trailing singleton dimensions."""
    return values.reshape((-1,) + (1,) * ndim)


def is_uniform(values: torch.Tensor) -> bool:
    return bool(torch.all(values == values.reshape(-1)[0]))


def time_axis(times: np.ndarray) -> GridAxis:
    """The uniform time axis through ``times`` (the Solution's time axis)."""
    if len(times) < 2:
        raise SimulationError(f"expected at least 2 output times, got {len(times)}")
    steps = np.diff(times)
    if not np.allclose(steps, steps[0], rtol=1e-9, atol=1e-12 * max(1.0, abs(times[-1]))):
        raise SimulationError(f"expected uniformly spaced output times, got steps from {steps.min()} to {steps.max()}")
    return GridAxis("t", float(times[0]), float(times[-1]), len(times))
