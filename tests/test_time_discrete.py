"""Time-discrete residuals: a Crank-Nicolson simulator's own steps are CN steps to round-off, and the
residuals of accurate trajectories fall at the schemes' orders (CN second, IMEX Euler first)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from simulate_helpers import PERIODIC_2PI, make_problem, slope, walls

from pdesolve.equations import get_equation
from pdesolve.equations.time_discrete import crank_nicolson, grid_forcing, imex_euler, interior, trajectory_residual
from pdesolve.expr import Expression
from pdesolve.grid import Grid, GridAxis
from pdesolve.problem import Axis, Domain, InitialCondition, Problem
from pdesolve.simulate import Numerics, simulate


def _relative_cn_residual(problem, sol) -> float:
    """max |CN residual| over the steps after the two Rannacher start-up steps, relative to the terms' size."""
    u, grid = sol.values, sol.grid
    r = trajectory_residual(problem, u, grid, "crank_nicolson")[:, 2:]
    dudt = interior((u[:, 1:] - u[:, :-1]) / grid.time.spacing, grid)[:, 2:]
    scale = max(float(dudt.abs().max()), float(interior(grid_forcing(problem, u, grid), grid).abs().max()))
    return float(r.abs().max()) / scale


@pytest.mark.parametrize("dim", [1, 2])
def test_heat_cn_steps_are_crank_nicolson_steps_to_round_off(dim):
    axes = [Axis("x", 0.0, 1.0), Axis("y", 0.0, 2.0)][:dim]
    names = ("t", "x", "y")[: dim + 1]
    bcs = walls("x", 1.0, 3.0, names) + (walls("y", -2.0, 0.5, names) if dim == 2 else ())
    u0 = "2 + sin(pi*x) + 0.5*sin(3*pi*x)" if dim == 1 else "sin(pi*x)*cos(pi*y) + x*y"
    p = make_problem("heat", {"nu": 0.1}, axes, 0.5, {"u": u0}, bcs)
    grid = p.domain.grid({"x": 33, "y": 21, "t": 26} if dim == 2 else {"x": 33, "t": 26})
    sol = simulate(p, grid, numerics=Numerics(dt=grid.time.spacing), simulator="heat_cn")
    assert _relative_cn_residual(p, sol) < 1e-12


def _burgers_trajectory(frames: int):
    """Smooth periodic Burgers by the spectral simulator, far more accurate than the frame spacing."""
    p = make_problem("burgers", {"nu": 0.1}, [PERIODIC_2PI], 0.4, {"u": "0.5 + sin(x)"})
    grid = p.domain.grid({"x": 64, "t": frames})
    return p, simulate(p, grid, numerics=Numerics(dt=2.5e-4, dealias=False), simulator="spectral1d")


def test_residuals_of_an_accurate_trajectory_fall_at_the_schemes_orders():
    errs: dict[str, list[float]] = {"crank_nicolson": [], "imex_euler": []}
    dts = []
    for frames in (5, 9, 17, 33):
        p, sol = _burgers_trajectory(frames)
        dts.append(sol.grid.time.spacing)
        for scheme in errs:
            errs[scheme].append(float(trajectory_residual(p, sol.values, sol.grid, scheme).abs().max()))
    assert 1.9 < slope(dts, errs["crank_nicolson"]) < 2.1, errs
    assert 0.9 < slope(dts, errs["imex_euler"]) < 1.1, errs


def test_source_term_enters_at_the_frame_times():
    """u = sin(x) cos(t) solves u_t = nu u_xx + s with s = -sin(x) sin(t) + nu sin(x) cos(t)."""
    nu = 0.3
    source = Expression.parse(f"-sin(x)*sin(t) + {nu}*sin(x)*cos(t)", ("t", "x"))
    p = Problem(
        "forced", get_equation("heat"), {"nu": nu}, Domain((PERIODIC_2PI,), (0.0, 1.0)), InitialCondition.of({"u": "sin(x)"}, ("x",)),
        source=source,
    )  # fmt: skip
    errs: dict[str, list[float]] = {"crank_nicolson": [], "imex_euler": []}
    dts = []
    for frames in (6, 11, 21, 41):
        grid = p.domain.grid({"x": 32, "t": frames})
        m = grid.mesh()
        u = torch.as_tensor(np.sin(m["x"]) * np.cos(m["t"]))[None, :, None]
        dts.append(grid.time.spacing)
        for scheme in errs:
            errs[scheme].append(float(trajectory_residual(p, u, grid, scheme).abs().max()))
    assert 1.95 < slope(dts, errs["crank_nicolson"]) < 2.05, errs
    assert 0.95 < slope(dts, errs["imex_euler"]) < 1.05, errs
    with pytest.raises(ValueError, match="pass the time"):
        crank_nicolson(p, u[:, 0], u[:, 1], 0.1, grid)


def test_step_residuals_are_batched_differentiable_and_take_per_trajectory_coefficients():
    p = make_problem("convection_diffusion", {"beta": 1.0, "nu": 0.1}, [PERIODIC_2PI], 1.0, {"u": "sin(x)"})
    grid = Grid((GridAxis("x", 0.0, 2 * math.pi, 32, True),))
    x = torch.as_tensor(grid.coords("x"))
    u0 = torch.stack([torch.sin(x), torch.cos(2 * x)])[:, None]  # [batch 2, channel, x]
    u1 = (0.9 * u0).requires_grad_(True)
    nu = torch.tensor([0.1, 0.2], dtype=torch.float64)
    for scheme in (crank_nicolson, imex_euler):
        r = scheme(p, u0, u1, 0.01, grid, p={"nu": nu})
        assert r.shape == u0.shape
        (grad,) = torch.autograd.grad(r.square().sum(), u1)
        assert torch.isfinite(grad).all() and grad.abs().max() > 0
        # trajectory 1 with nu = 0.2 is the same as a batch of one with the number 0.2
        alone = scheme(p, u0[1:], u1[1:], 0.01, grid, p={"nu": 0.2})
        torch.testing.assert_close(r[1:], alone, rtol=0, atol=1e-13)


def test_imex_needs_a_split():
    p = make_problem("diffusion_sorption", {}, [Axis("x", 0.0, 1.0)], 1.0, {"u": "0.5"}, walls("x", 1.0, 0.0, ("t", "x")))
    grid = Grid((GridAxis("x", 0.0, 1.0, 9),))
    u = torch.full((1, 1, 9), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="states none"):
        imex_euler(p, u, u, 0.1, grid)
    assert crank_nicolson(p, u, u, 0.1, grid).shape == (1, 1, 7)  # interior points only
