"""An Equation written in a user's script (not registered) solves through ``ps.solve`` with no YAML round trip:
with the PINN, the Lagrangian PINN (it states a transport speed) and the hard-constraint solver, against the
reference its own grid form gives through the generic simulator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import pdesolve as ps
from pdesolve.cli import main
from pdesolve.equations import Equation, Parameter
from pdesolve.problem import Axis, Domain, InitialCondition, Problem, Reference
from pdesolve.simulate import select_simulator


class Drift(Equation):
    """``u_t + c u_x = nu u_xx``, written by a user: both faces and a transport speed."""

    name = "my_drift"
    parameters = {"c": Parameter(None, doc="speed"), "nu": Parameter(None, 0.0, doc="diffusivity")}

    def forcing(self, d, p):
        x = d.space[0]
        return (-p["c"] * d("u", x) + p["nu"] * d("u", x, x)).unsqueeze(-1)

    def rhs(self, u, grid, p):
        x = grid.space[0].name
        return -p["c"] * grid.diff(u, x) + p["nu"] * grid.diff(u, x, 2)

    def velocity(self, d, p):
        return torch.full_like(d("u"), p["c"])


C, NU = 1.0, 0.1


def drift_problem() -> Problem:
    return Problem(
        name="drift", equation=Drift(), params={"c": C, "nu": NU},
        domain=Domain((Axis("x", 0.0, 2 * math.pi, periodic=True),), (0.0, 1.0)),
        initial=InitialCondition.of({"u": "sin(x)"}, ("x",)), reference=Reference("simulator"),
    )


def exact(grid) -> np.ndarray:
    t, x = np.meshgrid(grid.coords("t"), grid.coords("x"), indexing="ij")
    return np.exp(-NU * t) * np.sin(x - C * t)


SETTINGS = {"evaluate": {"grid": {"t": 11, "x": 32}}, "device": "cpu"}


def test_its_grid_form_runs_through_the_generic_simulator():
    problem = drift_problem()
    assert Drift.pointwise and Drift.grid_form and "my_drift" not in ps.EQUATIONS
    assert select_simulator(problem).name == "method_of_lines"
    grid = problem.domain.grid({"t": 11, "x": 32})
    ref = ps.reference_solution(problem, grid)[:, 0]
    assert np.abs(ref - exact(grid)).max() < 1e-6


@pytest.mark.parametrize("solver, options, steps, tolerance", [
    ("pinn", {"width": 16, "depth": 2, "points": {"interior": 400}}, 400, 0.03),  # measured 1.1e-2
    ("lpinn", {"width": 16, "depth": 2, "labels": 256, "points": {"interior": 100}}, 150, 0.02),  # 6.4e-3
    ("hc", {"width": 32, "depth": 2, "basis": 24, "constraint_weight": 10.0, "points": {"solve": 128, "loss": 64}}, 60, 0.01),  # 2.7e-3
])
def test_an_unregistered_equation_solves_through_ps_solve(solver, options, steps, tolerance, tmp_path):
    torch.manual_seed(0)
    result = ps.solve(drift_problem(), solver, steps=steps, options=options,
                      settings={**SETTINGS, "train": {"optimizer": {"name": "adam", "lr": 3e-3}}}, out=tmp_path / "run", quiet=True)
    assert result.status.ok
    err = np.linalg.norm(result.solution.field("u")[0] - exact(result.solution.grid)) / np.linalg.norm(exact(result.solution.grid))
    assert err < tolerance, err
    assert result.metrics["rel_l2"] == pytest.approx(err, rel=1e-3)  # the metrics used the simulator's reference
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "equation: python:test_user_equation_api.Drift" in config


def test_its_run_folder_says_it_needs_python(tmp_path, capsys):
    ps.solve(drift_problem(), "pinn", steps=2, options={"width": 4, "depth": 1, "points": {"interior": 16}}, settings=SETTINGS,
             out=tmp_path / "run", quiet=True)
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "test_user_equation_api.Drift is a class defined in Python" in err and "pdesolve.solve" in err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["solver"] == "pinn"
