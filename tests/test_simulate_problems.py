"""Every shipped problem family has a trusted reference: a closed form, or a simulator that runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pdesolve.config import load_run_config
from pdesolve.problem import UnknownParameterError
from pdesolve.reference import reference_solution
from pdesolve.simulate import select_simulator
from pdesolve.simulate.api import SimulationError

PROBLEMS = sorted(p for p in (Path(__file__).resolve().parents[1] / "problems").glob("*.yaml")
                  if not p.stem.endswith("_online"))  # online-training study files, tested in test_online_*
SIMULATED = ["ns2d", "heat2d", "advection_diffusion2d", "allen_cahn", "kdv", "kuramoto_sivashinsky", "diffusion_sorption",
             "burgers_shock_periodic"]


@pytest.mark.parametrize("path", PROBLEMS, ids=[p.stem for p in PROBLEMS])
def test_every_problem_has_a_simulator(path):
    """Every time-dependent forward problem; a steady one is refused by name (its references are sparse_fd, fd_masked or
    exact), an inverse one is simulated at its true values (and refused without them); a reference read from a data file
    needs no simulator."""
    problem = load_run_config(path).problem
    if problem.domain.time is None:
        with pytest.raises(SimulationError, match="needs a time-dependent problem"):
            select_simulator(problem)
        return
    if problem.unknowns:
        if problem.truth() is None:
            with pytest.raises(UnknownParameterError, match="is an inverse problem"):
                select_simulator(problem)
            return
        problem = problem.truth()
    if problem.reference is not None and problem.reference.kind == "file":  # data on a grid (tests/test_inverse.py)
        return
    # a parametric family (params: {beta: {range: ...}}): the members at both ends of its ranges
    ends = [{k: float(r.value(g)) for k, r in problem.ranges.items()} for g in (0.0, 1.0)]
    members = [problem.member(values) for values in ends] if problem.is_family else [problem]
    for member in members:
        assert select_simulator(member).check(member) is None


@pytest.mark.parametrize("name", SIMULATED)
def test_reference_of_simulated_problems_on_a_small_grid(name):
    cfg = load_run_config(Path(__file__).resolve().parents[1] / "problems" / f"{name}.yaml")
    p = cfg.problem
    shape = {a.name: (17 if not a.periodic else 32) for a in p.domain.space}
    if p.equation.name in ("allen_cahn", "kdv", "burgers", "kuramoto_sivashinsky"):
        shape = {a: 256 for a in shape}  # sharp fronts: the spectral reference needs points to resolve them
    grid = p.domain.grid({**shape, "t": 5})
    ref = reference_solution(p, grid)
    assert ref.shape == (5, len(p.equation.fields)) + grid.space_shape and np.isfinite(ref).all()
    assert np.abs(ref[-1] - ref[0]).max() > 1e-3  # something happened


def test_kuramoto_sivashinsky_reference_converges_in_space_and_time():
    """ETDRK4 on the JAX-PI problem: 256 points at the automatic step against 512 points at a small fixed step
    (measured 2.6e-4 relative, the 256-point step's time error; 512 against 1024 points agree to 8e-9)."""
    from pdesolve.simulate.api import simulate
    from pdesolve.simulate.base import Numerics

    p = load_run_config(Path(__file__).resolve().parents[1] / "problems" / "kuramoto_sivashinsky.yaml").problem
    coarse = simulate(p, p.domain.grid({"x": 256, "t": 3}), simulator="spectral1d").values[0, :, 0]
    fine = simulate(p, p.domain.grid({"x": 512, "t": 3}), simulator="spectral1d", numerics=Numerics(dt=1e-4)).values[0, :, 0]
    assert np.abs(coarse - fine[..., ::2]).max() / np.abs(fine).max() < 1e-3
    assert np.abs(fine[-1] - fine[0]).max() > 0.5  # the front has moved and steepened
