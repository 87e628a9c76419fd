"""Bounded 1D finite-volume simulators: Burgers between walls and PDEBench diffusion-sorption."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from simulate_helpers import make_problem, slope, walls

from pdesolve.equations.diffusion_sorption import sorption_coefficient
from pdesolve.expr import Expression
from pdesolve.problem import Axis, BoundaryCondition
from pdesolve.reference import cole_hopf
from pdesolve.simulate import Numerics, simulate
from pdesolve.simulate.api import SIMULATORS, _params
from pdesolve.simulate.diffusion_sorption import dissolved, integrate, total_concentration

TIGHT = Numerics(rtol=1e-10, atol=1e-12)
X = ("t", "x")


def burgers(nu: float, t1: float = 0.5):
    return make_problem("burgers", {"nu": nu}, [Axis("x", -1.0, 1.0)], t1, {"u": "-sin(pi*x)"}, walls("x", 0, 0, X))


def sorption(t1: float = 100.0, beta: float = 5e-4):
    bcs = (
        BoundaryCondition("dirichlet", "x", "lo", Expression.parse(1.0, X)),
        BoundaryCondition("robin", "x", "hi", Expression.parse(0.0, X), alpha=1.0, beta=beta),
    )
    return make_problem("diffusion_sorption", {}, [Axis("x", 0.0, 1.0)], t1, {"u": "0.1"}, bcs)


def test_burgers_fv_is_second_order_against_cole_hopf():
    p = burgers(0.1)
    hs, errs = [], []
    for n in (33, 65, 129, 257):
        g = p.domain.grid({"x": n, "t": 3})
        u = simulate(p, g, numerics=TIGHT).numpy()[0, -1, 0]
        errs.append(np.sqrt(np.mean((u - cole_hopf(p, g)[-1, 0]) ** 2)))
        hs.append(g.space[0].spacing)
    assert 1.85 < slope(hs, errs) < 2.2, errs


def test_burgers_fv_resolves_the_raissi_shock():
    """nu = 0.01/pi: the front is thinner than the grid at 257 points, yet the error halves twice per refinement."""
    p = burgers(0.01 / math.pi, t1=1.0)
    errs = []
    for n in (257, 513):
        g = p.domain.grid({"x": n, "t": 5})
        errs.append(np.abs(simulate(p, g).numpy()[0] - cole_hopf(p, g)).mean())
    assert errs[0] < 1e-3 and errs[0] / errs[1] > 3.3, errs


def test_burgers_fv_wall_values_per_trajectory():
    p = burgers(0.05)
    g = p.domain.grid({"x": 65, "t": 4})
    u0 = torch.full((3, 1, 65), 0.3, dtype=torch.float64)
    u0[1] = -0.2
    out = simulate(p, g, u0=u0, params={"boundary.x.lo": [0.3, -0.2, 0.5], "boundary.x.hi": [0.3, -0.2, 0.0]}).numpy()
    assert np.abs(out[0] - 0.3).max() < 1e-12 and np.abs(out[1] + 0.2).max() < 1e-12  # constant states stay
    assert out[2, -1, 0, 0] == 0.5 and out[2, -1, 0, -1] == 0.0 and out[2, 0, 0, 5] == 0.3


def test_total_concentration_inverse():
    p = {"porosity": 0.29, "rho_s": 2880.0, "k_f": 3.5e-4, "n_f": 0.874}
    a = np.array([[sorption_coefficient(p)]])
    u = np.concatenate([[0.0, 1e-12, 1e-6], np.linspace(0, 2, 50), [-0.01]])[None]
    c = total_concentration(u, a, np.array([[0.874]]))
    assert np.abs(dissolved(c, a, np.array([[0.874]])) - u).max() < 1e-13


def test_sorption_mass_balance_against_boundary_fluxes():
    p = sorption(t1=100.0)
    g = p.domain.grid({"x": 129, "t": 101})
    params = _params(p, SIMULATORS["diffusion_sorption_fv"], {}, 2, torch.device("cpu"))
    u0 = torch.tensor([[0.02], [0.15]], dtype=torch.float64).expand(2, 129)[:, None].clone()
    u, bal = integrate(p, g, g.coords("t"), u0, params, TIGHT)
    # conservation: the mass in the control volumes changes only by what crosses the walls
    change = bal.mass - bal.mass[:, :1]
    assert np.abs(change - (bal.inflow - bal.outflow)).max() < 1e-9 * np.abs(bal.mass).max()
    # the wall fluxes recomputed from the saved solution (trapezoid in time) tell the same story once the
    # initial boundary layers (fluxes ~ 1/sqrt(t) where u0 meets the wall conditions) have passed
    h, D, k = g.space[0].spacing, 5e-4, 10
    v = u.numpy()[:, :, 0]
    q = -D * (v[:, :, 1] - v[:, :, 0]) / h - v[:, :, -1]  # inflow at x = 0 minus outflow -D u_x = u at x = 1
    net = np.cumsum(0.5 * (q[:, k + 1 :] + q[:, k:-1]), axis=1)
    assert np.abs(net - (change[:, k + 1 :] - change[:, k : k + 1])).max() < 2e-3 * np.abs(change).max()
    assert (bal.inflow[:, -1] > 0).all() and (bal.outflow[:, -1] >= 0).all()
    assert v.min() > -1e-9 and v.max() <= 1.0 + 1e-12  # no new extrema


def test_sorption_fv_is_second_order():
    p = sorption(t1=100.0)
    ref = simulate(p, p.domain.grid({"x": 1025, "t": 3}), numerics=TIGHT).numpy()[0, -1, 0]
    hs, errs = [], []
    for n in (65, 129, 257):
        u = simulate(p, p.domain.grid({"x": n, "t": 3}), numerics=TIGHT).numpy()[0, -1, 0]
        errs.append(np.sqrt(np.mean((u - ref[:: 1024 // (n - 1)]) ** 2)))
        hs.append(1 / (n - 1))
    assert 1.85 < slope(hs, errs) < 2.2, errs


def test_sorption_batch_equals_single_runs():
    p = sorption(t1=50.0)
    g = p.domain.grid({"x": 65, "t": 3})
    u0 = torch.stack([torch.full((65,), v, dtype=torch.float64) for v in (0.02, 0.1, 0.19)])[:, None]
    batch = simulate(p, g, u0=u0, numerics=TIGHT).numpy()
    for i in range(3):
        assert np.abs(batch[i] - simulate(p, g, u0=u0[i], numerics=TIGHT).numpy()[0]).max() < 1e-8


def test_sorption_warns_about_the_feeding_robin_sign():
    p = sorption(t1=1.0, beta=-5e-4)  # u(1) = +D u_x(1): the wall feeds mass in proportion to u
    with pytest.warns(UserWarning, match="growing"):
        simulate(p, p.domain.grid({"x": 17, "t": 2}))
