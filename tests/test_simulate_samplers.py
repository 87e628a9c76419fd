"""Initial-condition and parameter samplers: statistics, structure, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from pdesolve.grid import Grid, GridAxis
from pdesolve.simulate.samplers import gaussian_random_field, sample_parameters, sine_sum
from pdesolve.simulate.settings import SimulateSettings

PERIODIC = Grid((GridAxis("x", 0.0, 2 * math.pi, 256, True),))


def test_grf_has_the_requested_mean_variance_and_correlation_length():
    ell = 0.3
    u = gaussian_random_field(PERIODIC, 400, np.random.default_rng(0), length_scale=ell, sigma=2.0, mean=1.5)
    assert np.abs(u.mean(axis=1) - 1.5).max() < 1e-12  # the mean is exact (the zero mode is left out)
    assert abs(u.var() / 4.0 - 1) < 0.05
    # squared-exponential spectrum S(k) = exp(-k^2 l^2 / 2) without its k = 0 mode: on the periodic line the
    # correlation is sum_{k != 0} S(k) cos(k r) / sum_{k != 0} S(k), close to exp(-r^2 / (2 l^2)) - 0.12
    h = PERIODIC.space[0].spacing
    k = np.arange(1, 129)
    spectrum = np.exp(-0.5 * (k * ell) ** 2)
    for lag in (5, 10, 15):
        corr = np.mean((u - 1.5) * (np.roll(u, lag, axis=1) - 1.5)) / np.mean((u - 1.5) ** 2)
        assert abs(corr - (spectrum * np.cos(k * lag * h)).sum() / spectrum.sum()) < 0.02


def test_grf_matern_spectrum_and_seeding():
    g = Grid((GridAxis("x", 0.0, 2 * math.pi, 64, True), GridAxis("y", 0.0, 2 * math.pi, 64, True)))
    a = gaussian_random_field(g, 200, np.random.default_rng(1), alpha=2.0, tau=2.0)
    b = gaussian_random_field(g, 200, np.random.default_rng(1), alpha=2.0, tau=2.0)
    assert a.shape == (200, 64, 64) and np.array_equal(a, b)
    power = (np.abs(np.fft.fft2(a)) ** 2).mean(axis=0)
    ratio = power[4, 0] / power[1, 0]  # (tau^2 + k^2)^(-alpha): (4 + 16)^-2 / (4 + 1)^-2 = 1/16
    assert abs(ratio * 16 - 1) < 0.2


def test_grf_on_bounded_axes_is_not_periodic():
    g = Grid((GridAxis("x", 0.0, 1.0, 65),))
    u = gaussian_random_field(g, 300, np.random.default_rng(2), length_scale=0.1)
    assert u.shape == (300, 65)
    assert np.corrcoef(u[:, 0], u[:, -1])[0, 1] < 0.2  # ends a full length apart are (nearly) uncorrelated
    assert abs(u.var() - 1) < 0.1
    with pytest.raises(ValueError, match="exactly one"):
        gaussian_random_field(g, 1, np.random.default_rng(0))


def test_sine_sum_is_a_sum_of_few_integer_modes():
    u = sine_sum(PERIODIC, 50, np.random.default_rng(3), modes=2, k_max=4, amplitude=1.0)
    spec = np.abs(np.fft.rfft(u, axis=1)) / 128
    assert (spec[:, 5:] < 1e-12).all() and (spec[:, 0] < 1e-12).all()
    assert ((spec[:, 1:5] > 1e-12).sum(axis=1) <= 2).all()
    assert np.abs(u).max() <= 2.0
    g2 = Grid((GridAxis("x", 0.0, 1.0, 32, True), GridAxis("y", 0.0, 2.0, 16, True)))
    v = sine_sum(g2, 3, np.random.default_rng(3), modes=3, k_max=2)
    assert v.shape == (3, 32, 16) and np.abs(np.fft.fft2(v)[:, 3:-2, :]).max() < 1e-9


def test_parameter_designs():
    rng = np.random.default_rng(4)
    lhs = sample_parameters({"nu": (1e-5, 1e-3, True), "T": (100.0, 500.0, False)}, 20, "lhs", rng)
    # a Latin hypercube puts exactly one point in each of the n strata of every parameter
    assert sorted(np.floor((lhs["T"] - 100) / 400 * 20).astype(int)) == list(range(20))
    assert sorted(np.floor(np.log(lhs["nu"] / 1e-5) / np.log(100) * 20).astype(int)) == list(range(20))
    sob = sample_parameters({"a": (0.0, 1.0, False)}, 16, "sobol", np.random.default_rng(5))
    assert sorted(np.floor(sob["a"] * 16).astype(int)) == list(range(16))  # balanced 2^m points
    again = sample_parameters({"a": (0.0, 1.0, False)}, 16, "sobol", np.random.default_rng(5))
    assert np.array_equal(sob["a"], again["a"])
    with pytest.raises(ValueError, match="log range"):
        sample_parameters({"a": (0.0, 1.0, True)}, 4, "random", rng)


def test_settings_validate():
    s = SimulateSettings.model_validate(
        {"trajectories": 4, "resolution": {"x": 32, "y": 16}, "initial": {"kind": "grf", "alpha": 2.5}, "parameters": {"nu": [1e-3, 1e-2]}}
    )
    assert s.shape(("x", "y")) == {"x": 32, "y": 16, "t": 101}
    assert s.parameters["nu"].low == 1e-3 and s.numerics().cfl == 0.5
    for bad in (
        {"trajectory": 3},
        {"initial": {"kind": "grf"}},
        {"initial": {"kind": "white"}},
        {"parameters": {"nu": [2, 1]}},
        {"resolution": 1},
    ):
        with pytest.raises(ValidationError):
            SimulateSettings.model_validate(bad)
    with pytest.raises(ValueError, match="expected one entry"):
        s.shape(("x",))
