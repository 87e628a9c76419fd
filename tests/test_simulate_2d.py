"""2D simulators: heat (Crank-Nicolson), Navier-Stokes vorticity, advection-diffusion by a cellular flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from simulate_helpers import make_problem, slope, walls

from pdesolve.problem import Axis
from pdesolve.simulate import Numerics, SimulationError, simulate
from pdesolve.simulate.samplers import gaussian_random_field

XY = ("t", "x", "y")
BOX = [Axis("x", 0.0, 2 * math.pi, True), Axis("y", 0.0, 2 * math.pi, True)]
UNIT = [Axis("x", 0.0, 1.0), Axis("y", 0.0, 1.0)]


def heat(initial: str = "sin(pi*x)*sin(2*pi*y)", values=(0, 0, 0, 0), t1: float = 0.5):
    return make_problem("heat", {"nu": 0.1}, UNIT, t1, {"u": initial}, walls("x", *values[:2], XY) + walls("y", *values[2:], XY))


# ----------------------------------------------------------------------------------------------- heat
def test_heat_decaying_mode_second_order():
    p = heat()
    hs, errs = [], []
    for n in (17, 33, 65):
        g = p.domain.grid({"x": n, "y": n, "t": 3})
        m = g.mesh()
        exact = np.sin(np.pi * m["x"]) * np.sin(2 * np.pi * m["y"]) * np.exp(-0.1 * 5 * np.pi**2 * m["t"])
        errs.append(np.abs(simulate(p, g).numpy()[0, :, 0] - exact).max())
        hs.append(1 / (n - 1))
    assert 1.9 < slope(hs, errs) < 2.15, errs


def test_heat_crank_nicolson_is_second_order_in_time():
    """Against the semi-discrete exact decay of a discrete eigenmode: only the time error remains."""
    p = heat()
    g = p.domain.grid({"x": 33, "y": 33, "t": 2})
    h = 1 / 32
    lam = -0.1 * (4 / h**2) * (np.sin(np.pi * h / 2) ** 2 + np.sin(2 * np.pi * h / 2) ** 2)
    m = g.mesh()
    exact = np.sin(np.pi * m["x"][-1]) * np.sin(2 * np.pi * m["y"][-1]) * np.exp(lam * 0.5)
    dts = [0.05, 0.025, 0.0125]
    errs = [np.abs(simulate(p, g, numerics=Numerics(dt=dt)).numpy()[0, -1, 0] - exact).max() for dt in dts]
    assert 1.9 < slope(dts, errs) < 2.2, errs


def test_heat_walls_and_initial_temperature_per_trajectory():
    p = heat("300", (100, 500, 200, 400), t1=0.2)
    g = p.domain.grid({"x": 21, "y": 17, "t": 5})
    keys = ["boundary.x.lo", "boundary.x.hi", "boundary.y.lo", "boundary.y.hi"]
    a, b = np.array([100.0, 500, 200, 400, 300]), np.array([-50.0, 20, 10, 0, 70])

    def run(values: np.ndarray) -> np.ndarray:
        u0 = torch.full((1, 1, 21, 17), values[4], dtype=torch.float64)
        return simulate(p, g, u0=u0, params=dict(zip(keys, values[:4], strict=True))).numpy()[0]

    u0 = torch.stack([torch.full((1, 21, 17), v[4], dtype=torch.float64) for v in (a, b, a + b, np.full(5, 250.0))])
    batch = simulate(p, g, u0=u0, params={k: [a[i], b[i], a[i] + b[i], 250.0] for i, k in enumerate(keys)}).numpy()
    assert np.abs(batch[0] + batch[1] - batch[2]).max() < 1e-9  # the solution is linear in the parameters
    assert np.abs(batch[3] - 250.0).max() < 1e-9  # walls at the initial temperature: nothing moves
    assert np.abs(batch[0] - run(a)).max() < 1e-9
    interior = batch[0, :, 0, 1:-1, 1:-1]
    assert interior.min() > 100 - 1e-6 and interior.max() < 500 + 1e-6  # Rannacher start: no CN overshoot
    assert batch[0, -1, 0, 0, 5] == 100 and batch[0, -1, 0, 5, -1] == 400 and batch[0, -1, 0, 0, 0] == 150


def test_heat_rejects_per_trajectory_viscosity():
    p = heat()
    with pytest.raises(SimulationError, match="same nu"):
        simulate(p, p.domain.grid({"x": 9, "y": 9, "t": 2}), u0=torch.zeros(2, 1, 9, 9), params={"nu": [0.1, 0.2]})


# ------------------------------------------------------------------------------------- Navier-Stokes
def ns(initial: str, t1: float = 1.0, **params):
    return make_problem("navier_stokes", {"nu": 0.01, **params}, BOX, t1, {"w": initial})


def test_taylor_green_vortex_decays_exactly():
    p = ns("4*cos(2*x)*cos(2*y)", drag=0.1)
    g = p.domain.grid({"x": 32, "y": 32, "t": 11})
    m = g.mesh()
    exact = 4 * np.cos(2 * m["x"]) * np.cos(2 * m["y"]) * np.exp(-(2 * 0.01 * 4 + 0.1) * m["t"])
    assert np.abs(simulate(p, g, numerics=Numerics(dt=0.01)).numpy()[0, :, 0] - exact).max() < 1e-6


def test_kolmogorov_flow_spins_up_to_the_laminar_profile():
    """From rest, the forced shear flow's vorticity is -F/(nu k^2 + drag) k cos(k y) (1 - exp(-(nu k^2 + drag) t))."""
    p = ns("0", t1=5.0, forcing=0.5, forcing_k=2, drag=0.05)
    g = p.domain.grid({"x": 16, "y": 32, "t": 6})
    m = g.mesh()
    rate = 0.01 * 4 + 0.05
    exact = -0.5 * 2 / rate * np.cos(2 * m["y"]) * (1 - np.exp(-rate * m["t"]))
    assert np.abs(simulate(p, g, numerics=Numerics(dt=0.01)).numpy()[0, :, 0] - exact).max() < 1e-5
    # the automatic step counts the speed the forcing adds: from rest, it does not take one step per interval
    assert np.abs(simulate(p, g).numpy()[0, :, 0] - exact).max() < 1e-4


NS_W0 = "sin(x)*cos(2*y) + 0.5*cos(3*x + y) + 0.3*sin(x - 2*y)"


def test_ns_time_order_two():
    p = ns(NS_W0)
    g = p.domain.grid({"x": 32, "y": 32, "t": 2})
    ref = simulate(p, g, numerics=Numerics(dt=1 / 512)).numpy()[0, -1]
    dts = [1 / 16, 1 / 32, 1 / 64]
    errs = [np.abs(simulate(p, g, numerics=Numerics(dt=dt)).numpy()[0, -1] - ref).max() for dt in dts]
    assert 1.9 < slope(dts, errs) < 2.6, errs


def test_ns_spectral_accuracy_in_space():
    p = ns(NS_W0, t1=0.5, nu=0.05)
    ref = simulate(p, p.domain.grid({"x": 96, "y": 96, "t": 2}), numerics=Numerics(dt=1 / 64)).numpy()[0, -1, 0]
    sizes, errs = [16, 24, 32, 48], []
    for n in sizes:
        u = simulate(p, p.domain.grid({"x": n, "y": n, "t": 2}), numerics=Numerics(dt=1 / 64)).numpy()[0, -1, 0]
        errs.append(np.abs(u - ref[:: 96 // n, :: 96 // n]).max())
    rate = np.polyfit(sizes, np.log(errs), 1)[0]  # exponential convergence: log(err) linear in n
    order = math.log(errs[-2] / errs[-1]) / math.log(sizes[-1] / sizes[-2])
    assert rate < -0.3 and order > 10 and errs[-1] < 1e-7, errs


def test_ns_conserves_mean_vorticity_and_dissipates_enstrophy():
    p = ns("0", t1=2.0, nu=1e-3)
    g = p.domain.grid({"x": 64, "y": 64, "t": 9})
    w0 = gaussian_random_field(g, 2, np.random.default_rng(0), alpha=2.5, tau=3.0, sigma=2.0) + np.array([0.0, 0.7])[:, None, None]
    w = simulate(p, g, u0=torch.as_tensor(w0)[:, None]).numpy()[:, :, 0]
    mean = w.mean(axis=(2, 3))
    assert np.abs(mean - mean[:, :1]).max() < 1e-12
    enstrophy = ((w - mean[..., None, None]) ** 2).mean(axis=(2, 3))
    assert (np.diff(enstrophy, axis=1) <= 1e-12).all()  # unforced, undamped except viscosity
    assert enstrophy[:, -1].min() > 0.5 * enstrophy[:, 0].max() / 4  # but the flow is alive


# ------------------------------------------------------------------------------ advection-diffusion
def test_convected_sine_is_exact():
    p = make_problem("advection_diffusion", {"kappa": 0.05, "cx": 1.0, "cy": -0.5, "amplitude": 0.0}, BOX, 1.0, {"c": "sin(x + 2*y)"})
    g = p.domain.grid({"x": 16, "y": 16, "t": 6})
    m = g.mesh()
    exact = np.sin(m["x"] - m["t"] + 2 * (m["y"] + 0.5 * m["t"])) * np.exp(-0.05 * 5 * m["t"])
    assert np.abs(simulate(p, g).numpy()[0, :, 0] - exact).max() < 1e-12


def test_scalar_on_the_streamlines_only_diffuses():
    """c0 = sin x sin y is constant along the cellular streamlines: advection does nothing, c decays as exp(-2 kappa t)."""
    p = make_problem("advection_diffusion", {"kappa": 0.02, "amplitude": 1.5}, BOX, 2.0, {"c": "sin(x)*sin(y)"})
    g = p.domain.grid({"x": 32, "y": 32, "t": 5})
    m = g.mesh()
    exact = np.sin(m["x"]) * np.sin(m["y"]) * np.exp(-2 * 0.02 * m["t"])
    assert np.abs(simulate(p, g).numpy()[0, :, 0] - exact).max() < 1e-12


def test_cellular_advection_conserves_the_mean_and_is_fourth_order():
    p = make_problem("advection_diffusion", {"kappa": 0.01, "amplitude": 1.0, "cx": 0.3}, BOX, 1.0, {"c": "exp(-((x-3)**2 + (y-2)**2))"})
    g = p.domain.grid({"x": 48, "y": 48, "t": 2})
    ref = simulate(p, g, numerics=Numerics(dt=1 / 256)).numpy()[0]
    c0 = ref[0, 0]
    assert abs(ref[-1, 0].mean() - c0.mean()) < 1e-13
    dts = [1 / 4, 1 / 8, 1 / 16]
    errs = [np.abs(simulate(p, g, numerics=Numerics(dt=dt)).numpy()[0, -1] - ref[-1]).max() for dt in dts]
    assert 3.6 < slope(dts, errs) < 4.5, errs


def test_cell_wave_number_must_fit_the_box():
    p = make_problem("advection_diffusion", {"kappa": 0.01, "k": 1.5}, BOX, 1.0, {"c": "sin(x)"})
    with pytest.raises(SimulationError, match="must fit"):
        simulate(p, p.domain.grid({"x": 8, "y": 8, "t": 2}))
