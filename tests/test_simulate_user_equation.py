"""A user's own Equation subclass, defined here and not registered, through the simulators.

Its faces are what it implements; the generic method of lines runs its grid form (periodic axes spectrally,
Dirichlet walls by finite differences, a source term, per-trajectory coefficients); stating its split puts
it on the spectral simulator; the shipped problems keep their specialised simulators.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from simulate_helpers import PERIODIC_2PI, slope, walls

from pdesolve.config import load_run_config
from pdesolve.equations import EQUATIONS, Equation, LinearPart, Parameter, Split
from pdesolve.expr import Expression
from pdesolve.problem import Axis, Domain, InitialCondition, Problem
from pdesolve.simulate import Numerics, SimulationError, select_simulator, simulate

ROOT = Path(__file__).resolve().parents[1]


class Drift(Equation):
    """``u_t = nu Lap u - c u_x`` (the drift along the first axis), grid face only."""

    name = "drift"
    parameters = {"nu": Parameter(None, 0.0), "c": Parameter(0.0)}
    dims = (1, 2)

    def rhs(self, u: Any, grid: Any, p: Any) -> Any:
        lap = sum(grid.diff(u, a.name, 2) for a in grid.space)
        return p["nu"] * lap - p["c"] * grid.diff(u, grid.space[0].name)


class SplitDrift(Drift):
    """The same physics, with its split stated: the spectral simulator takes it."""

    def split(self, p: Any) -> Split:
        return Split(LinearPart(advection=(p["c"],), diffusion=p["nu"]))


class PointsOnly(Equation):
    name = "points_only"
    parameters = {"nu": Parameter(None, 0.0)}

    def forcing(self, d: Any, p: Any) -> Any:
        return (p["nu"] * d("u", d.space[0], d.space[0])).unsqueeze(-1)


def _problem(eq: Equation, params: dict, axes: list[Axis], u0: str, t1: float = 1.0, boundary=(), source=None) -> Problem:
    names = [a.name for a in axes]
    initial = InitialCondition.of({"u": u0}, names)
    return Problem(eq.name, eq, params, Domain(tuple(axes), (0.0, t1)), initial, tuple(boundary), None, source)


def _drift_exact(x: np.ndarray, t: np.ndarray, nu: float, c: float) -> np.ndarray:
    return np.exp(-nu * t) * np.sin(x - c * t) + 0.5 * np.exp(-9 * nu * t) * np.cos(3 * (x - c * t))


def test_faces_are_what_a_class_implements():
    assert "drift" not in EQUATIONS
    assert (Drift.grid_form, Drift.pointwise) == (True, False)
    assert (PointsOnly.grid_form, PointsOnly.pointwise) == (False, True)
    assert all(cls.pointwise and cls.grid_form for name, cls in EQUATIONS.items() if name != "navier_stokes")
    with pytest.raises(NotImplementedError, match="no grid face"):
        PointsOnly().rhs(None, None, {})


def test_periodic_drift_diffusion_against_the_exact_modal_solution():
    """Spectral derivatives are exact for these modes: the error is the integrator's, set by its tolerance."""
    p = _problem(Drift(), {"nu": 0.1, "c": 0.7}, [PERIODIC_2PI], "sin(x) + 0.5*cos(3*x)")
    assert select_simulator(p).name == "method_of_lines"
    g = p.domain.grid({"x": 32, "t": 5})
    x, t = g.coords("x")[None], g.coords("t")[:, None]
    exact = _drift_exact(x, t, 0.1, 0.7)
    errs = [np.abs(simulate(p, g, numerics=Numerics(rtol=r, atol=r * 1e-2)).numpy()[0, :, 0] - exact).max() for r in (1e-5, 1e-8, 1e-11)]
    assert errs[-1] < 1e-9 and errs[0] > errs[1] > errs[2], errs
    # per-trajectory coefficients, batched in one solve
    u0 = np.repeat(p.initial_numpy(g)[None], 2, axis=0)
    both = simulate(p, g, u0=u0, params={"nu": [0.1, 0.3], "c": [0.7, -0.4]}, numerics=Numerics(rtol=1e-11, atol=1e-13)).numpy()
    for b, (nu, c) in enumerate([(0.1, 0.7), (0.3, -0.4)]):
        assert np.abs(both[b, :, 0] - _drift_exact(x, t, nu, c)).max() < 1e-9


def test_dirichlet_walls_are_held_and_the_error_is_second_order():
    """Heat between walls 1 and 3: ``u = 1 + 2x + exp(-nu pi^2 t) sin(pi x)``; three-point differences, O(h^2)."""
    nu = 0.1
    p = _problem(Drift(), {"nu": nu}, [Axis("x", 0.0, 1.0)], "1 + 2*x + sin(pi*x)", 0.5, walls("x", 1.0, 3.0, ("t", "x")))
    hs, errs = [], []
    for n in (9, 17, 33, 65):
        g = p.domain.grid({"x": n, "t": 3})
        m = g.mesh()
        u = simulate(p, g, numerics=Numerics(rtol=1e-12, atol=1e-14)).numpy()[0, :, 0]
        np.testing.assert_array_equal(u[:, [0, -1]], np.broadcast_to([1.0, 3.0], (3, 2)))
        errs.append(np.abs(u - (1 + 2 * m["x"] + np.exp(-nu * math.pi**2 * m["t"]) * np.sin(math.pi * m["x"]))).max())
        hs.append(1 / (n - 1))
    assert 1.95 < slope(hs, errs) < 2.05, errs


def test_source_term_and_a_stiff_method():
    """``u = sin(x) cos(t)`` solves ``u_t = nu u_xx + s`` with ``s = -sin(x) sin(t) + nu sin(x) cos(t)``."""
    nu = 0.2
    source = Expression.parse(f"-sin(x)*sin(t) + {nu}*sin(x)*cos(t)", ("t", "x"))
    p = _problem(Drift(), {"nu": nu}, [PERIODIC_2PI], "sin(x)", 2.0, source=source)
    g = p.domain.grid({"x": 16, "t": 5})
    m = g.mesh()
    for method in ("RK45", "BDF"):
        u = simulate(p, g, numerics=Numerics(method=method, rtol=1e-10, atol=1e-12)).numpy()[0, :, 0]
        assert np.abs(u - np.sin(m["x"]) * np.cos(m["t"])).max() < 1e-7, method


def test_two_dimensions_with_walls_agree_with_the_heat_simulator():
    """The shipped 2D heat problem (four different wall temperatures): the same five-point semi-discrete system."""
    heat = load_run_config(ROOT / "problems" / "heat2d.yaml").problem
    p = Problem("heat2d_drift", Drift(), {"nu": 0.1}, heat.domain, heat.initial, heat.boundary)
    g = p.domain.grid({"x": 17, "y": 17, "t": 5})
    ours = simulate(p, g, numerics=Numerics(rtol=1e-10, atol=1e-8)).numpy()
    theirs = simulate(heat, g, numerics=Numerics(dt=1e-4)).numpy()
    assert np.abs(ours - theirs).max() < 1e-7 * np.abs(theirs).max()


def test_a_stated_split_selects_the_spectral_simulator():
    p = _problem(SplitDrift(), {"nu": 0.1, "c": 0.7}, [PERIODIC_2PI], "sin(x) + 0.5*cos(3*x)")
    assert select_simulator(p).name == "spectral1d"
    g = p.domain.grid({"x": 32, "t": 5})
    exact = _drift_exact(g.coords("x")[None], g.coords("t")[:, None], 0.1, 0.7)
    assert np.abs(simulate(p, g).numpy()[0, :, 0] - exact).max() < 1e-12


def test_an_equation_without_a_grid_form_is_refused():
    p = _problem(PointsOnly(), {"nu": 0.1}, [PERIODIC_2PI], "sin(x)")
    with pytest.raises(SimulationError, match="implements no rhs"):
        simulate(p, p.domain.grid({"x": 16, "t": 3}), simulator="method_of_lines")
    with pytest.raises(SimulationError, match="no simulator can run"):
        select_simulator(p)


SHIPPED = sorted(p for p in (ROOT / "problems").glob("*.yaml") if not p.stem.endswith("_online"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_problems_keep_their_specialised_simulators(path):
    """The generic method of lines only where no specialised scheme fits by design: an equation written as expressions with
    a space-dependent speed (custom_equation) or two coupled fields (coupled_reaction_diffusion). Steady problems, inverse
    ones without their true values and problems whose reference is a data file have nothing to simulate
    (tests/test_simulate_problems.py)."""
    problem = load_run_config(path).problem
    if problem.unknowns:
        problem = problem.truth()
    if problem is None or problem.domain.time is None or problem.reference.kind == "file":  # type: ignore[union-attr]
        return
    if problem.is_family:  # a parametric family: each member (here its first held-out one) is simulated
        problem = problem.member(load_run_config(path).eval_params[0])
    generic = path.stem in {"custom_equation", "coupled_reaction_diffusion"}
    assert (select_simulator(problem).name == "method_of_lines") == generic


def test_the_method_of_lines_runs_a_shipped_problem_by_name():
    """Burgers with zero walls (smooth viscosity) by finite differences, against the Cole-Hopf reference."""
    from pdesolve.reference import reference_solution

    p = load_run_config(ROOT / "problems" / "burgers_smooth.yaml").problem
    g = p.domain.grid({"x": 129, "t": 5})
    u = simulate(p, g, simulator="method_of_lines").numpy()[0]
    assert np.abs(u - reference_solution(p, g)).max() < 5e-3


def test_the_first_frame_holds_the_walls_like_every_other_frame():
    """heat2d's walls differ from its initial temperature: both simulators save the initial state inside and the wall
    values on the walls at t0, so a stepper started there sees the boundary data."""
    heat = load_run_config(ROOT / "problems" / "heat2d.yaml").problem
    drift = Problem("heat2d_drift", Drift(), {"nu": 0.1}, heat.domain, heat.initial, heat.boundary)
    g = heat.domain.grid({"x": 9, "y": 9, "t": 3})
    for p in (heat, drift):
        u = simulate(p, g, numerics=Numerics(rtol=1e-8, atol=1e-8)).numpy()[0, :, 0]  # [time, x, y]
        walls = np.ones((9, 9), bool)
        walls[1:-1, 1:-1] = False
        assert np.allclose(u[0][walls], u[1][walls]) and np.allclose(u[0][~walls], u[0][4, 4]), p.name
        assert not np.allclose(u[0][walls], u[0][4, 4]), p.name  # the walls really differ from the initial temperature
