"""Every shipped problem family has a trusted reference: a closed form, or a simulator that runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pdesolve.config import load_run_config
from pdesolve.reference import reference_solution
from pdesolve.simulate import select_simulator

PROBLEMS = sorted(p for p in (Path(__file__).resolve().parents[1] / "problems").glob("*.yaml")
                  if not p.stem.endswith("_online"))  # online-training study files, tested in test_online_*
SIMULATED = ["ns2d", "heat2d", "advection_diffusion2d", "allen_cahn", "kdv", "diffusion_sorption", "burgers_shock_periodic"]


@pytest.mark.parametrize("path", PROBLEMS, ids=[p.stem for p in PROBLEMS])
def test_every_problem_has_a_simulator(path):
    problem = load_run_config(path).problem
    assert select_simulator(problem).check(problem) is None


@pytest.mark.parametrize("name", SIMULATED)
def test_reference_of_simulated_problems_on_a_small_grid(name):
    cfg = load_run_config(Path(__file__).resolve().parents[1] / "problems" / f"{name}.yaml")
    p = cfg.problem
    shape = {a.name: (17 if not a.periodic else 32) for a in p.domain.space}
    if p.equation.name in ("allen_cahn", "kdv", "burgers"):
        shape = {a: 256 for a in shape}  # sharp fronts: the spectral reference needs points to resolve them
    grid = p.domain.grid({**shape, "t": 5})
    ref = reference_solution(p, grid)
    assert ref.shape == (5, len(p.equation.fields)) + grid.space_shape and np.isfinite(ref).all()
    assert np.abs(ref[-1] - ref[0]).max() > 1e-3  # something happened
