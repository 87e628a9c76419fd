"""1D periodic pseudo-spectral ETDRK4 simulator: closed forms, spectral accuracy, fourth order in time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from simulate_helpers import PERIODIC_2PI, make_problem, slope

from pdesolve.equations.kdv import soliton
from pdesolve.problem import Axis
from pdesolve.reference import cole_hopf, splitting
from pdesolve.simulate import Numerics, SimulationError, simulate
from pdesolve.simulate.etdrk4 import ETDRK4


def test_convected_decaying_sine_is_exact():
    p = make_problem("convection_diffusion", {"beta": 1.3, "nu": 0.05}, [PERIODIC_2PI], 2.0, {"u": "sin(3*x)"})
    g = p.domain.grid({"x": 32, "t": 9})
    m = g.mesh()
    exact = np.sin(3 * (m["x"] - 1.3 * m["t"])) * np.exp(-0.05 * 9 * m["t"])
    assert np.abs(simulate(p, g).numpy()[0, :, 0] - exact).max() < 1e-12


def test_etdrk4_coefficients_match_phi_functions_away_from_zero():
    """The contour averages equal the closed forms where those are well conditioned."""
    z = torch.tensor([-3.0, -0.5 + 2j, 1.5, -20 + 0j], dtype=torch.complex128)
    c = ETDRK4.build(z, 1.0)
    e = torch.exp(z)
    f1 = (-4 - z + e * (4 - 3 * z + z**2)) / z**3
    f2 = (2 + z + e * (z - 2)) / z**3
    assert torch.allclose(c.f1, f1, atol=1e-13) and torch.allclose(c.f2, f2, atol=1e-13)
    assert torch.allclose(c.Q, (torch.exp(z / 2) - 1) / z, atol=1e-13)
    # at hL -> 0 the closed forms cancel catastrophically; the contour average gives the limits 1/6
    small = ETDRK4.build(torch.tensor([1e-12 + 0j], dtype=torch.complex128), 1.0)
    assert all(abs(c.item() - 1 / 6) < 1e-10 for c in (small.f1, small.f2, small.f3))
    assert abs(small.Q.item() - 0.5) < 1e-10


def test_burgers_spectral_accuracy_against_cole_hopf():
    p = make_problem("burgers", {"nu": 0.2}, [PERIODIC_2PI], 0.5, {"u": "sin(x) + 0.5"})
    ns, errs = [8, 16, 24, 32, 40, 48], []
    for n in ns:
        g = p.domain.grid({"x": n, "t": 2})
        errs.append(np.abs(simulate(p, g, numerics=Numerics(dt=1 / 256)).numpy()[0] - cole_hopf(p, g)).max())
    rate = np.polyfit(ns, np.log(errs), 1)[0]  # exponential convergence: log(err) linear in n
    local = [math.log(errs[i] / errs[i + 1]) / math.log(ns[i + 1] / ns[i]) for i in range(len(ns) - 1)]
    assert rate < -0.3, errs
    assert max(local[-3:]) > 9 and errs[-1] < 1e-6, (local, errs)


def test_etdrk4_is_fourth_order_in_time():
    p = make_problem("burgers", {"nu": 0.1}, [PERIODIC_2PI], 1.0, {"u": "sin(x) + 0.5"})
    g = p.domain.grid({"x": 64, "t": 3})
    ref = simulate(p, g, numerics=Numerics(dt=1 / 1024)).numpy()
    dts = [1 / 8, 1 / 16, 1 / 32, 1 / 64]
    errs = [np.abs(simulate(p, g, numerics=Numerics(dt=dt)).numpy() - ref).max() for dt in dts]
    assert 3.7 < slope(dts, errs) < 4.4, errs


def test_moving_shock_sin_plus_constant_matches_cole_hopf():
    """u0 = sin x + C: the shock forms at t = 1 and moves at speed C."""
    p = make_problem("burgers", {"nu": 0.02}, [PERIODIC_2PI], 2.0, {"u": "sin(x) + 0.5"})
    g = p.domain.grid({"x": 512, "t": 5})
    u = simulate(p, g).numpy()[0, :, 0]
    ref = cole_hopf(p, g)[:, 0]
    assert np.abs(u - ref).max() < 2e-4
    x = g.coords("x")
    # the shock (steepest descent) sits at pi + C t after it has formed
    for i in (3, 4):
        front = x[np.argmin(np.gradient(u[i], x))]
        assert abs(front - (math.pi + 0.5 * g.coords("t")[i])) < 0.05


def test_kdv_soliton_travels_unchanged():
    p = make_problem("kdv", {"alpha": 6.0, "delta": 1.0}, [Axis("x", -20.0, 20.0, True)], 1.0, {"u": "1/(cosh(sqrt(2)/2*x))**2"})
    g = p.domain.grid({"x": 256, "t": 5})
    exact = soliton(g.coords("x")[None, :], g.coords("t")[:, None], 2.0, 6.0, 1.0)
    assert np.abs(simulate(p, g).numpy()[0, :, 0] - exact).max() < 1e-6


def test_allen_cahn_converges_and_stays_in_the_wells():
    p = make_problem("allen_cahn", {"eps": 1e-4, "rho": 5.0}, [Axis("x", -1.0, 1.0, True)], 1.0, {"u": "x**2*cos(pi*x)"})
    fine = simulate(p, p.domain.grid({"x": 1024, "t": 3}), numerics=Numerics(dt=2e-3)).numpy()[0, -1, 0]
    coarse = simulate(p, p.domain.grid({"x": 512, "t": 3}), numerics=Numerics(dt=2e-3)).numpy()[0, -1, 0]
    assert np.abs(coarse - fine[::2]).max() < 1e-5
    assert np.abs(fine).max() < 1 + 1e-3 and np.abs(fine).max() > 0.95  # the solution settles into u = +-1


def test_fisher_kpp_matches_the_splitting_reference():
    p = make_problem("reaction_diffusion", {"nu": 0.01, "rho": 2.0}, [PERIODIC_2PI], 1.0, {"u": "0.2 + 0.1*sin(x)"})
    g = p.domain.grid({"x": 64, "t": 5})
    assert np.abs(simulate(p, g, numerics=Numerics(dt=0.01)).numpy()[0] - splitting(p, g)).max() < 1e-8


def test_batch_of_initial_states_and_per_trajectory_viscosity():
    p = make_problem("burgers", {"nu": 0.1}, [PERIODIC_2PI], 0.5, {"u": "sin(x)"})
    g = p.domain.grid({"x": 64, "t": 3})
    x = torch.as_tensor(g.coords("x"))
    u0 = torch.stack([torch.sin(x), 0.5 * torch.cos(2 * x), torch.sin(x)])[:, None]
    batch = simulate(p, g, u0=u0, params={"nu": [0.1, 0.1, 0.05]}, numerics=Numerics(dt=1 / 128)).numpy()
    for i, nu in enumerate((0.1, 0.1, 0.05)):
        q = make_problem("burgers", {"nu": nu}, [PERIODIC_2PI], 0.5, {"u": "sin(x)"})
        single = simulate(q, g, u0=u0[i], numerics=Numerics(dt=1 / 128)).numpy()[0]
        assert np.abs(batch[i] - single).max() < 1e-12
    assert not np.allclose(batch[0], batch[2])


def test_bad_inputs_are_told():
    p = make_problem("burgers", {"nu": 0.1}, [PERIODIC_2PI], 0.5, {"u": "sin(x)"})
    g = p.domain.grid({"x": 16, "t": 3})
    with pytest.raises(SimulationError, match="valid names"):
        simulate(p, g, params={"mu": 1.0})
    with pytest.raises(SimulationError, match="expected u0"):
        simulate(p, g, u0=torch.zeros(2, 1, 8))
    with pytest.raises(SimulationError, match="valid simulators"):
        simulate(p, g, simulator="nope")
    with pytest.raises(SimulationError, match="cannot run"):
        simulate(p, g, simulator="fv1d")
