"""The trusted references against closed forms, published values and their own convergence."""

import math
from pathlib import Path

import numpy as np
import pytest

from pdesolve.equations import get_equation
from pdesolve.grid import Grid, GridAxis
from pdesolve.problem import Axis, BoundaryCondition, Domain, InitialCondition, Problem, Reference
from pdesolve.reference import ReferenceError, cole_hopf_burgers, reference_solution

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "burgers_shock.mat"


def _burgers(reference="cole_hopf"):
    return Problem(
        "burgers",
        get_equation("burgers"),
        {"nu": 0.01 / math.pi},
        Domain((Axis("x", -1.0, 1.0),), (0.0, 1.0)),
        InitialCondition.of({"u": "-sin(pi*x)"}, ("x",)),
        BoundaryCondition.dirichlet_walls("x", ("t", "x")),
        Reference(reference),
    )


def test_cole_hopf_matches_the_published_shock_gradient():
    """Basdevant et al. (1986): at t = 1.6037/pi, du/dx(0) = -152.00516 for nu = 0.01/pi."""
    ux = cole_hopf_burgers(
        lambda y: -np.sin(np.pi * y), 0.01 / np.pi, np.array([0.0]), np.array([1.6037 / np.pi]), -1.0, 2.0, derivative=True
    )
    assert ux[0, 0] == pytest.approx(-152.00516, abs=2e-5)


@pytest.mark.skipif(not SHARED.exists(), reason="shared reference data not present (../shared/data)")
def test_cole_hopf_matches_the_pinn_papers_burgers_data():
    from scipy.io import loadmat

    data = loadmat(SHARED)
    x, t, usol = data["x"].ravel(), data["t"].ravel(), data["usol"]
    grid = Grid((GridAxis("x", float(x[0]), float(x[-1]), len(x)),), GridAxis("t", float(t[0]), float(t[-1]), len(t)))
    np.testing.assert_allclose(grid.coords("x"), x, atol=1e-12)
    ref = reference_solution(_burgers(), grid)[:, 0]
    assert np.abs(ref - usol.T).max() < 1e-6


def test_cole_hopf_periodic_mean_flow_is_galilean_shifted():
    """u0 = sin x + C: Burgers is Galilean invariant, so u(x, t) = v(x - C t, t) + C with v from u0 = sin x."""
    nu, c = 0.05, 0.7
    x, t = np.linspace(0, 2 * np.pi, 40, endpoint=False), np.array([0.3, 1.0])
    u = cole_hopf_burgers(lambda y: np.sin(y) + c, nu, x, t, 0.0, 2 * np.pi)
    for i, ti in enumerate(t):
        v = cole_hopf_burgers(np.sin, nu, x - c * ti, np.array([ti]), 0.0, 2 * np.pi)[0]
        np.testing.assert_allclose(u[i], v + c, atol=1e-10)


def _periodic(equation, params, u0, t1=1.0, reference="spectral"):
    return Problem(
        equation,
        get_equation(equation),
        params,
        Domain((Axis("x", 0.0, 2 * math.pi, True),), (0.0, t1)),
        InitialCondition.of({"u": u0}, ("x",)),
        (),
        Reference(reference),
    )


def test_spectral_reference_against_closed_forms():
    g = Grid((GridAxis("x", 0.0, 2 * math.pi, 64, True),), GridAxis("t", 0.0, 1.0, 5))
    x, t = g.coords("x")[None], g.coords("t")[:, None]
    ref = reference_solution(_periodic("convection_diffusion", {"beta": 2.0, "nu": 0.3}, "sin(x) + 0.5*cos(3*x)"), g)[:, 0]
    exact = np.exp(-0.3 * t) * np.sin(x - 2 * t) + 0.5 * np.exp(-0.3 * 9 * t) * np.cos(3 * (x - 2 * t))
    np.testing.assert_allclose(ref, exact, atol=1e-12)
    conv = reference_solution(_periodic("convection", {"beta": 30.0}, "sin(x)", reference="characteristics"), g)[:, 0]
    np.testing.assert_allclose(conv, np.sin(x - 30 * t), atol=1e-12)


def test_sine_modes_for_heat_in_2d_with_zero_walls():
    walls = BoundaryCondition.dirichlet_walls("x", ("t", "x", "y")) + BoundaryCondition.dirichlet_walls("y", ("t", "x", "y"))
    p = Problem(
        "heat2d",
        get_equation("heat"),
        {"nu": 0.05},
        Domain((Axis("x", 0.0, 1.0), Axis("y", 0.0, 2.0)), (0.0, 1.0)),
        InitialCondition.of({"u": "sin(pi*x)*sin(pi*y/2) + 0.3*sin(2*pi*x)*sin(3*pi*y/2)"}, ("x", "y")),
        walls,
        Reference("spectral"),
    )
    g = Grid((GridAxis("x", 0.0, 1.0, 17), GridAxis("y", 0.0, 2.0, 21)), GridAxis("t", 0.0, 1.0, 4))
    m = g.mesh()
    lam1, lam2 = 0.05 * (math.pi**2 + (math.pi / 2) ** 2), 0.05 * ((2 * math.pi) ** 2 + (3 * math.pi / 2) ** 2)
    exact = np.exp(-lam1 * m["t"]) * np.sin(math.pi * m["x"]) * np.sin(math.pi * m["y"] / 2) + 0.3 * np.exp(-lam2 * m["t"]) * np.sin(
        2 * math.pi * m["x"]
    ) * np.sin(3 * math.pi * m["y"] / 2)
    np.testing.assert_allclose(reference_solution(p, g)[:, 0], exact, atol=1e-12)


def test_logistic_closed_form_and_splitting_order():
    p = _periodic("reaction", {"rho": 5.0}, "exp(-(x-pi)**2/(2*(pi/4)**2))", reference="logistic")
    g = Grid((GridAxis("x", 0.0, 2 * math.pi, 32, True),), GridAxis("t", 0.0, 1.0, 3))
    u = reference_solution(p, g)[:, 0]
    u0 = np.exp(-((g.coords("x") - math.pi) ** 2) / (2 * (math.pi / 4) ** 2))
    # the logistic solution solves u_t = rho u (1 - u): check by a centred difference in time
    from pdesolve.reference import logistic

    g2 = Grid(g.space, GridAxis("t", 0.5 - 1e-5, 0.5 + 1e-5, 3))
    v = logistic(p, g2)[:, 0]
    np.testing.assert_allclose((v[2] - v[0]) / 2e-5, 5.0 * v[1] * (1 - v[1]), rtol=1e-6)
    np.testing.assert_allclose(u[0], u0, atol=1e-15)
    # Strang splitting: second order in the splitting step
    rd = _periodic("reaction_diffusion", {"nu": 0.5, "rho": 5.0}, "exp(-(x-pi)**2/(2*(pi/4)**2))", t1=0.5, reference="splitting")
    g3 = Grid((GridAxis("x", 0.0, 2 * math.pi, 32, True),), GridAxis("t", 0.0, 0.5, 2))
    from pdesolve.reference import splitting

    fine = splitting(rd, g3, steps_per_unit=4000)[-1, 0]
    errs = [np.abs(splitting(rd, g3, steps_per_unit=n)[-1, 0] - fine).max() for n in (20, 40, 80)]
    slopes = np.diff(np.log(errs)) / np.log(0.5)
    assert np.all((slopes > 1.8) & (slopes < 2.3)), slopes


def test_references_refuse_problems_they_do_not_fit():
    g = Grid((GridAxis("x", -1.0, 1.0, 8),), GridAxis("t", 0.0, 1.0, 3))
    with pytest.raises(ReferenceError, match="linear equation with constant coefficients"):
        reference_solution(_burgers("spectral"), g)
    with pytest.raises(ReferenceError, match="unknown reference"):
        reference_solution(_burgers("nope"), g)


def test_a_simulator_reference_without_a_simulator_is_a_reference_error():
    from pdesolve.config import load_run_config
    from pdesolve.reference import ReferenceError, reference_solution

    cfg = load_run_config(Path(__file__).resolve().parents[1] / "problems" / "reaction_diffusion.yaml",
                          ["reference=simulator", "domain.x=[0, 1]", "boundary=[{kind: neumann, axis: x, side: both}]"])
    with pytest.raises(ReferenceError, match="no simulator can run problem"):
        reference_solution(cfg.problem, cfg.problem.domain.grid({"t": 3, "x": 9}))
