"""Collocation samplers: shape, range, reproducibility and the space-filling property each one promises."""

import numpy as np
import pytest
from scipy.stats import qmc

from pdesolve.sampling import SAMPLERS, unit_samples


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samples_fill_the_unit_cube_and_repeat_for_the_same_generator(sampler):
    u = unit_samples(500, 2, sampler, np.random.default_rng(3))
    assert u.shape == (500, 2)
    assert np.all((u >= 0) & (u < 1))
    np.testing.assert_array_equal(u, unit_samples(500, 2, sampler, np.random.default_rng(3)))


@pytest.mark.parametrize("sampler", ["lhs", "sobol", "hammersley"])
def test_quasi_random_samplers_are_more_uniform_than_random_draws(sampler):
    rng = np.random.default_rng(0)
    random = np.median([qmc.discrepancy(unit_samples(1024, 2, "random", rng)) for _ in range(5)])
    assert qmc.discrepancy(unit_samples(1024, 2, sampler, rng)) < random / 5


def test_latin_hypercube_puts_one_point_in_every_stratum_of_every_axis():
    u = unit_samples(64, 3, "lhs", np.random.default_rng(1))
    for col in u.T:
        assert sorted(np.floor(col * 64).astype(int)) == list(range(64))


def test_hammersley_is_evenly_spaced_in_its_first_axis_and_shifted_by_the_generator():
    a = unit_samples(100, 2, "hammersley", np.random.default_rng(1))
    b = unit_samples(100, 2, "hammersley", np.random.default_rng(2))
    gaps = np.diff(np.sort(a[:, 0]))
    np.testing.assert_allclose(gaps, 0.01, atol=1e-12)
    assert not np.allclose(a, b)  # refinement rounds and restarts get fresh points


def test_unknown_sampler_names_the_valid_ones():
    with pytest.raises(KeyError, match="hammersley"):
        unit_samples(4, 2, "halton", np.random.default_rng(0))
