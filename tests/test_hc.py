"""Hard-constraint solvers (hc, moe_hc): exact conditions, the linear solve equals a direct solve, K = 1 equals hc, refusals."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import pdesolve as ps
from pdesolve.config import load_run_config
from pdesolve.equations.families import Heat
from pdesolve.reference import reference_solution
from pdesolve.simulate.family import InitialConditionFamily
from pdesolve.simulate.settings import ParameterRange
from pdesolve.solvers import SolverMismatch
from pdesolve.solvers.hc import HC, MoEHC

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"
HEAT, DS = PROBLEMS / "heat.yaml", PROBLEMS / "diffusion_sorption.yaml"
SMALL = {"points": {"solve": 96, "loss": 96}}


def build(path, cls, options=None, family=None):
    cfg = load_run_config(path, [f"solver={cls.name}"])
    torch.manual_seed(0)
    return cls(cfg.problem, cls.Options(**{**SMALL, **(options or {})}), torch.device("cpu"), family=family)


def constraint_values(solver, w):
    """alpha u + beta du/dn at the constraint points for every expert's weights, [K, p]."""
    cpts = torch.as_tensor(solver.constraints.points, dtype=solver.dtype)
    C = solver.constraints.rows(solver.model.basis.features(cpts)).double()
    return w.double() @ C.T


def test_moe_with_one_expert_equals_hc():
    hc = build(HEAT, HC)
    moe = build(HEAT, MoEHC, {"experts": {"t": 1, "x": 1}})
    w_hc, _ = hc.weights()
    w_moe, _ = moe.weights()
    assert torch.equal(w_hc, w_moe)
    grid = hc.problem.domain.grid({"t": 11, "x": 21})
    np.testing.assert_array_equal(hc.predict(grid).numpy(), moe.predict(grid).numpy())
    torch.manual_seed(1)
    loss_hc, _ = hc.task(lambda: {}).loss()
    torch.manual_seed(1)
    loss_moe, _ = moe.task(lambda: {}).loss()
    assert float(loss_hc) == float(loss_moe)


def test_experts_tile_the_domain_and_own_their_points():
    solver = build(HEAT, MoEHC, {"experts": {"t": 2, "x": 4}})
    boxes = solver.boxes
    assert boxes.count == 8
    assert np.isclose(np.prod(boxes.hi - boxes.lo, axis=1).sum(), 1.0)  # heat domain is [0, 1] x [0, 1]
    pts = solver.model.solve_points.double().numpy()
    owner = boxes.expert_of(pts.reshape(-1, 2)).reshape(pts.shape[:2])
    assert (owner == np.arange(8)[:, None]).all()


def test_hc_learns_1d_heat(tmp_path):
    exact = {"points": {"solve": 128, "loss": 128}, "constraint_weight": None}  # the file weights the conditions
    result = ps.solve(HEAT, "hc", steps=150, options=SMALL | exact,
                      overrides=["train.optimizer={name: adam, lr: 1.0e-2}"], out=tmp_path / "run", quiet=True, device="cpu")
    assert result.status.ok
    assert result.metrics["rel_l2"] < 0.15  # measured 0.103; the untrained basis solve is at ~1
    assert result.metrics["violations"]["constraints_max"] < 1e-8  # exact at the constraint points once trained
    for name in ("solution.h5", "metrics.json", "checkpoint.pt"):
        assert (tmp_path / "run" / name).exists()


class OpaqueHeat(Heat):
    """A nonlinear-declared heat whose forcing leaves torch (numpy): no Jacobian path."""

    name = "opaque_heat"
    linear = False

    def forcing(self, d, p):
        return torch.as_tensor(np.asarray(d("u", "x", "x").detach()) * p["nu"]).unsqueeze(-1)


def test_refusals_say_what_to_change(monkeypatch):
    cfg = load_run_config(HEAT, ["solver=hc"])
    opaque = replace(cfg.problem, equation=OpaqueHeat())
    with pytest.raises(SolverMismatch, match="no Jacobian path"):
        HC(opaque, HC.Options(**SMALL), torch.device("cpu"))
    with pytest.raises(SolverMismatch, match="expected basis <= width"):
        HC(cfg.problem, HC.Options(width=16, basis=32), torch.device("cpu"))
    with pytest.raises(SolverMismatch, match="raise basis or lower"):
        HC(cfg.problem, HC.Options(basis=8, width=16), torch.device("cpu"))
    with pytest.raises(SolverMismatch, match="expected axes among"):
        MoEHC(cfg.problem, MoEHC.Options(experts={"y": 2}), torch.device("cpu"))
    ds = load_run_config(DS, ["solver=hc"]).problem
    with pytest.raises(SolverMismatch, match="drop solvers.hc.bounds"):
        HC(ds, HC.Options(bounds=(0.0, 1.0)), torch.device("cpu"))
    with pytest.raises(SolverMismatch, match=r"solvers.hc.family.parameters: got \['D'\], expected only initial values"):
        HC(ds, HC.Options(family={"parameters": {"D": [1e-4, 1e-3]}}), torch.device("cpu"))
    with pytest.raises(SolverMismatch, match="nothing to draw"):
        HC(ds, HC.Options(family={"train": 2}), torch.device("cpu"))

    import pdesolve.constrained.convex as convex

    def missing(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(convex.importlib, "import_module", missing)
    with pytest.raises(SolverMismatch, match="cvxpy"):
        HC(cfg.problem, HC.Options(bounds=(-2.0, 2.0)), torch.device("cpu"))


# ----------------------------------------------------------------------------- weighted conditions, diffusion-sorption
DS_FAST = {"constraint_weight": 10.0, "points": {"solve": 128, "loss": 128}, "nonlinear": {"u_floor": 1e-3, "max_iter": 8, "tol": 1e-6}}


def test_hc_learns_diffusion_sorption():
    """Weighted conditions and the floored retardation: from ~80 % (untrained) to well under 15 % in 40 steps."""
    result = ps.solve(DS, "hc", steps=40, options=DS_FAST, overrides=["evaluate.grid={t: 11, x: 64}",
                      "train.optimizer={name: adam, lr: 3.0e-3}"], quiet=True, device="cpu")
    assert result.status.ok
    assert result.metrics["rel_l2"] < 0.12  # measured 0.085; u = 0.1 everywhere gives 0.835, the untrained basis 0.80
    history = [h for h in result.history if "residual" in h]
    assert np.isfinite([h["loss"] for h in history]).all()


def test_soft_baselines_stay_finite():
    """Without the floor, u < 0 makes u^(n_f - 1) NaN in the soft PINN; with it both soft baselines train."""
    for solver, options in [("pinn", {"width": 32, "depth": 3, "hard_constraints": False, "u_floor": 1e-3, "points": {"interior": 256}}),
                            ("hc", {**DS_FAST, "soft": True})]:
        result = ps.solve(DS, solver, steps=15, options=options, overrides=["evaluate.grid={t: 11, x: 32}",
                          "train.optimizer={name: adam, lr: 1.0e-2}"], quiet=True, device="cpu")
        assert result.status.ok, (solver, result.status)
        assert np.isfinite(result.metrics["rel_l2"])


# ----------------------------------------------------------------------------- the family of problems
FAMILY = {"train": 6, "test": 2, "batch": 3, "sensors": 8, "parameters": {"initial.u": [0.0, 0.2]}}


def test_family_draws_and_batches_like_separate_solves():
    """S initial conditions solved as one batch equal S separate solves; draws lie in the range, splits are disjoint."""
    solver = build(HEAT, HC, {"family": FAMILY, "tikhonov": 0.0})  # a Tikhonov weight scaled by the batch would differ
    fam = solver.ic_family
    assert fam.count == 8 and set(fam.split("train")).isdisjoint(fam.split("test"))
    const = fam.values.reshape(fam.count, -1)
    assert np.ptp(const, axis=1).max() == 0 and (const >= 0).all() and (const <= 0.2).all()
    index = fam.split("train")[:3]
    ics = solver.family_ics(index)
    n0 = solver.constraints.n_initial
    np.testing.assert_allclose(ics.targets[:, :n0].numpy(), np.repeat(const[index, :1], n0, axis=1))
    w_batch, _ = solver.weights(ics)
    for j, i in enumerate(index):
        w_one, _ = solver.weights(solver.family_ics(np.array([i])))
        torch.testing.assert_close(w_batch[j:j + 1], w_one, rtol=1e-8, atol=1e-8)


def test_family_reference_is_the_simulator_from_that_initial_condition():
    """A drawn IC equal to the problem's own (u = 0.1) gets the problem's simulator reference."""
    solver = build(DS, HC, {**DS_FAST, "family": FAMILY})
    grid = solver.problem.domain.grid({"t": 11, "x": 33})
    solver.ic_family.values[0] = 0.1
    ours = solver.ic_family.reference(0, grid)
    theirs = reference_solution(solver.problem, grid)[None]
    np.testing.assert_allclose(ours, theirs, atol=1e-8)
    pred = solver.predict_family(grid, "test")
    assert pred.shape == (2, 11, 1, 33) and np.isfinite(pred).all()


def problem_family(path=DS, **changes):
    """The problem's initial-condition family as the runner builds it (its simulate: section, the run's seed)."""
    cfg = load_run_config(path, ["solver=hc"])
    return replace(InitialConditionFamily.from_settings(cfg.problem, cfg.simulate, cfg.seed), **changes)


def test_family_without_draws_takes_the_problems_simulate_section():
    """No initial/parameters under family: the problem's simulate: draws (diffusion-sorption: initial.u in [0, 0.2],
    seed 0), as if written out in the options; a seed there replaces the section's."""
    sizes = {"train": 3, "test": 1, "batch": 2, "sensors": 4}
    passed = build(DS, HC, {**DS_FAST, "family": sizes}, family=problem_family()).ic_family
    written = build(DS, HC, {**DS_FAST, "family": {**sizes, "parameters": {"initial.u": [0.0, 0.2]}, "seed": 0}}).ic_family
    np.testing.assert_array_equal(passed.values, written.values)
    reseeded = build(DS, HC, {**DS_FAST, "family": {**sizes, "seed": 5}}, family=problem_family()).ic_family
    again = build(DS, HC, {**DS_FAST, "family": {**sizes, "parameters": {"initial.u": [0.0, 0.2]}, "seed": 5}}).ic_family
    np.testing.assert_array_equal(reseeded.values, again.values)
    assert not np.array_equal(reseeded.values, passed.values)
    own = build(DS, HC, {**DS_FAST, "family": {**sizes, "parameters": {"initial.u": [0.1, 0.3]}}}, family=problem_family()).ic_family
    assert own.draws.parameters["initial.u"].low == 0.1 and own.draws.seed == 1  # the options' own draws win
    assert build(DS, HC, DS_FAST, family=problem_family()).ic_family is None  # no family: section, a single problem
    assert HC.needs_family(HC.Options(family=sizes)) and not HC.needs_family(HC.Options(family={**sizes, "seed": 2, "initial": {
        "kind": "grf", "length_scale": 0.1}})) and not HC.needs_family(HC.Options())


def test_the_runner_passes_the_problems_family(tmp_path):
    """Through the runner, family: without draws equals family: with the simulate: section's draws written out."""
    sizes = {"train": 2, "test": 1, "batch": 2, "sensors": 4}
    runs = [ps.solve(DS, "hc", steps=1, options={**DS_FAST, "family": family}, overrides=["evaluate.grid={t: 6, x: 16}"],
                     quiet=True, device="cpu")
            for family in (sizes, {**sizes, "parameters": {"initial.u": [0.0, 0.2]}, "seed": 0})]
    assert runs[0].metrics["family"] == runs[1].metrics["family"] and runs[0].metrics["rel_l2"] == runs[1].metrics["rel_l2"]


def test_family_refuses_what_the_simulate_section_cannot_give():
    varied = {"initial.u": ParameterRange(low=0, high=0.2), "D": ParameterRange(low=1e-4, high=1e-3)}
    with pytest.raises(SolverMismatch, match=r"solvers.hc.family: the problem's simulate.parameters vary \['D'\], expected only"):
        build(DS, HC, {"family": {"train": 2}}, family=problem_family(parameters=varied))
    with pytest.raises(SolverMismatch, match=r"solvers.hc.family \(from the problem's simulate: section\): nothing to draw"):
        build(DS, HC, {"family": {"train": 2}}, family=problem_family(parameters={}))


def test_time_slab_experts_start_from_the_previous_slab():
    """With experts along t, slab j's initial rows are slab j-1's solution at t_j: the jump there is the violation of those rows."""
    solver = build(HEAT, MoEHC, {"experts": {"t": 4, "x": 1}, "tikhonov": 0.0,
                                 "points": {"solve": 96, "loss": 96, "initial": 6, "boundary": 3}})
    w, status = solver.weights()
    n0 = solver.constraints.n_initial
    for j in range(1, 4):
        pts = solver.constraints.points[:n0].copy()
        pts[:, 0] = j / 4  # heat's t is [0, 1]
        f = solver.model.basis(torch.as_tensor(pts, dtype=solver.dtype))
        jump = float(((f * w[j - 1]).sum(-1) - (f * w[j]).sum(-1)).abs().max())
        # the basis is evaluated here in the solver's float32: its rounding (1e-7 of u ~ 1) bounds the agreement
        assert jump <= float(status.constraint_violation[j]) * (1 + 1e-6) + 1e-6
        assert jump < 1e-3  # measured 2e-5..9e-5 (the KKT solve on an untrained, nearly collinear basis)


def test_run_metrics_report_the_constrained_solve(tmp_path):
    """metrics.json of an hc run carries the solve's status next to the errors."""
    import json

    run = ps.solve(DS, "hc", steps=1, out=tmp_path / "run", quiet=True, device="cpu")
    solve = json.loads((run.run_dir / "metrics.json").read_text())["solve"]
    assert set(solve) == {"converged_fraction", "iterations_max", "residual_max", "constraint_violation_max"}
    assert 0.0 <= solve["converged_fraction"] <= 1.0 and solve["iterations_max"] >= 1
