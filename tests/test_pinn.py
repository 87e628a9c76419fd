"""The PINN baseline learns 1D diffusion to the required accuracy within the test budget."""

from pathlib import Path

import pytest

import pdesolve as ps

HEAT = Path(__file__).resolve().parents[1] / "problems" / "heat.yaml"


def test_pinn_reaches_one_percent_on_1d_diffusion(tmp_path):
    result = ps.solve(HEAT, steps=700, overrides=["train.optimizer.adam_steps=400"], out=tmp_path / "run", quiet=True, device="cpu")
    assert result.status.ok
    assert result.metrics["rel_l2"] < 1e-2
    assert result.metrics["violations"]["initial"] < 1e-6  # exact transform
    for name in (
        "config.yaml",
        "solution.h5",
        "metrics.json",
        "history.csv",
        "checkpoint.pt",
        "fields_u.png",
        "history.png",
        "residual.png",
    ):
        assert (tmp_path / "run" / name).exists(), name


def test_soft_constraints_and_a_python_built_problem(tmp_path):
    problem = ps.load_problem(HEAT)
    result = ps.solve(
        problem,
        "pinn",
        steps=60,
        options={"hard_constraints": False, "points": {"interior": 200}},
        out=tmp_path / "soft",
        quiet=True,
        device="cpu",
    )
    assert {"residual", "initial", "dirichlet:u@x.lo", "dirichlet:u@x.hi"} <= set(result.history[0])
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    again = ps.load_problem(tmp_path / "soft" / "config.yaml")
    assert again.coefficients == problem.coefficients and again.domain == problem.domain


def test_adaptive_refinement_adds_points(tmp_path):
    import torch

    from pdesolve.config import load_run_config
    from pdesolve.solvers.pinn import PINN

    cfg = load_run_config(HEAT, ["solvers.pinn.rar.every=5", "solvers.pinn.rar.add=7", "solvers.pinn.points.interior=50"])
    solver = PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    task = solver.task(lambda: {})
    task.before_step(5)
    task.before_step(10)
    assert len(task.interior) == 50 + 14


@pytest.mark.slow
def test_burgers_default_settings_reach_one_percent(tmp_path):
    result = ps.solve(Path(HEAT).with_name("burgers.yaml"), out=tmp_path / "b", quiet=True, device="cpu")
    assert result.metrics["rel_l2"] < 1e-2


@pytest.mark.parametrize("name", ["kdv", "kuramoto_sivashinsky", "allen_cahn"])
def test_the_pinn_residual_by_jets_equals_nested_autograd(name):
    """Third-order KdV, fourth-order Kuramoto-Sivashinsky (and a second-order equation) through the exact transform:
    jets equal reverse mode."""
    import torch

    from pdesolve.config import load_run_config
    from pdesolve.nn.jet import AutogradDerivatives
    from pdesolve.solvers.pinn import PINN

    torch.manual_seed(0)
    cfg = load_run_config(HEAT.parent / f"{name}.yaml", ["solvers.pinn.dtype=float64", "solvers.pinn.points.interior=64"])
    solver = PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    task = solver.task(lambda: {})
    pts = task.interior
    d = AutogradDerivatives(solver.model, pts, cfg.problem.equation.fields, cfg.problem.domain.names)
    want = cfg.problem.equation.residual(d, cfg.problem.coefficients, None)
    torch.testing.assert_close(task.residual(pts), want, rtol=1e-9, atol=1e-9)
