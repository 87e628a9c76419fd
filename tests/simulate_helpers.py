"""Small builders shared by the simulator tests."""

from __future__ import annotations

import math

import numpy as np

from pdesolve.equations import get_equation
from pdesolve.expr import Expression
from pdesolve.problem import Axis, BoundaryCondition, Domain, InitialCondition, Problem

PERIODIC_2PI = Axis("x", 0.0, 2 * math.pi, True)


def make_problem(equation: str, params: dict, axes: list[Axis], t1: float, initial: dict, boundary=()) -> Problem:
    names = [a.name for a in axes]
    return Problem(
        equation, get_equation(equation), params, Domain(tuple(axes), (0.0, t1)), InitialCondition.of(initial, names), tuple(boundary)
    )


def walls(axis: str, lo: float, hi: float, variables: tuple[str, ...]) -> tuple[BoundaryCondition, ...]:
    return (
        BoundaryCondition("dirichlet", axis, "lo", Expression.parse(lo, variables)),
        BoundaryCondition("dirichlet", axis, "hi", Expression.parse(hi, variables)),
    )


def slope(h: list[float], err: list[float]) -> float:
    """Least-squares slope of log(err) against log(h): the observed order of convergence."""
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])
