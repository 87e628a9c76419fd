"""The PINN's training methods on the hard-constraint solvers (issue 17): each builds and trains with the conditions
still exact, causal weights change the loss as defined, resume is exact, and what does not fit is refused at validate time."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pdesolve as ps
from pdesolve.config import load_run_config
from pdesolve.nn.features import FourierFeatures
from pdesolve.nn.gated import ModifiedMLP, PirateNet
from pdesolve.nn.rwf import FactorizedLinear
from pdesolve.nn.shallow import ParallelMLP, ResidualMLP
from pdesolve.optim import make_optimizer
from pdesolve.solvers import SolverMismatch
from pdesolve.solvers.hc import HC, MoEHC
from pdesolve.train import TrainSettings, train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
HEAT = ROOT / "problems" / "heat.yaml"
COUPLED = ROOT / "problems" / "coupled_reaction_diffusion.yaml"  # two fields, nonlinear (Levenberg-Marquardt)
# exact conditions (constraint_weight unset): 6 initial + 2 x 3 wall points on 24 basis functions
TINY = {"width": 32, "depth": 3, "basis": 24, "constraint_weight": None,
        "points": {"solve": 64, "loss": 64, "initial": 6, "boundary": 3}}


def build(cls=HC, options=None, path=HEAT):
    cfg = load_run_config(path, [f"solver={cls.name}"])
    torch.manual_seed(0)
    return cls(cfg.problem, cls.Options(**{**TINY, **(options or {})}), torch.device("cpu"))


def steps(solver, n):
    return train(solver.task(lambda: {}), make_optimizer("adam", {"lr": 1e-3}, n), TrainSettings(steps=n, log_every=1, quiet=True))


def condition_misfit(solver) -> float:
    """max |alpha u + beta du/dn - value| at the constraint points, from the basis directly (one expert)."""
    w, _ = solver.weights()
    con = solver.constraints
    with torch.no_grad():
        C = con.rows(solver.model.basis.features(torch.as_tensor(con.points, dtype=solver.dtype))).double()
    return float((C @ w[0].double() - con.target).abs().max())


OPTIONS = {
    "residual": ({"network": "residual"}, lambda net: type(net.net) is ResidualMLP),
    "parallel": ({"network": "parallel"}, lambda net: type(net.net) is ParallelMLP),
    "modified_mlp": ({"network": "modified_mlp"}, lambda net: type(net.net) is ModifiedMLP),
    "piratenet": ({"network": "piratenet"}, lambda net: type(net.net) is PirateNet),
    "fourier_features": ({"fourier_features": {"count": 8, "sigma": 1.0}},
                         lambda net: isinstance(net.features_in, FourierFeatures) and net.net.layers[0].in_features == 2 + 16),
    "weight_factorization": ({"weight_factorization": {"mu": 0.5}},
                             lambda net: sum(isinstance(m, FactorizedLinear) for m in net.modules()) == 4),
    "causal": ({"causal": {"chunks": 4}}, lambda net: True),
    "curriculum": ({"curriculum": {"parameter": "nu", "start": 0.01, "steps": 3}}, lambda net: True),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_method_builds_trains_and_keeps_the_conditions_exact(name):
    options, built = OPTIONS[name]
    solver = build(HC, options)
    assert built(solver.model.basis)
    before = [p.detach().clone() for p in solver.model.parameters()]
    result = steps(solver, 5)
    losses = [h["loss"] for h in result.history]
    assert result.status.ok and np.isfinite(losses).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, solver.model.parameters()))
    # the KKT solve holds the conditions whatever the backbone (the untrained PirateNet is affine in its input: rank 3)
    assert condition_misfit(solver) < 1e-8
    row = result.history[-1]
    if name == "causal":
        assert {"causal_eps", "causal_min_weight"} <= set(row)
    if name == "curriculum":  # 5 stages over 3 steps, then nu = 0.1 (the problem's) from step 3 on, in the solves too
        assert [h["curriculum_nu"] for h in result.history] == pytest.approx([0.01, 0.028, 0.064, 0.1, 0.1])
        assert solver.pde.params["nu"] == 0.1


def _loss(solver, causal_level=None):
    task = solver.task(lambda: {})
    if causal_level is not None:
        task.causal.level = causal_level
    task.rng = np.random.default_rng(7)
    loss, info = task.loss()
    return task, loss.detach(), info


@pytest.mark.parametrize("cls, extra, path", [(HC, {}, HEAT), (MoEHC, {"experts": {"t": 2, "x": 2}}, HEAT),
                                               (HC, {"nonlinear": {"max_iter": 3}}, COUPLED)], ids=["hc", "moe_hc", "hc_system"])
def test_causal_weights_all_one_give_the_plain_loss_and_a_huge_tolerance_only_the_first_chunk(cls, extra, path):
    plain = build(cls, extra, path)
    _, loss, info = _loss(plain)
    # a tolerance so small that every weight is 1: the mean of the chunks' means, the plain mean (LHS: 16 points per chunk)
    causal = build(cls, {**extra, "causal": {"chunks": 4, "tolerances": [1e-12, 1e9]}}, path)
    task, loss_1, info_1 = _loss(causal)
    assert float(loss_1) == pytest.approx(float(loss), rel=1e-10)
    assert info_1["causal_min_weight"] == pytest.approx(1.0) and info_1["causal_eps"] == 1e-12
    # so large that only the first chunk counts: its mean square residual over the chunks' count
    task, loss_2, info_2 = _loss(causal, causal_level=1)
    assert task.causal.weights[0] == 1.0 and float(task.causal.weights[1:].max()) < 1e-30
    rng = np.random.default_rng(7)
    w, _ = causal.weights()  # the solve points are fixed: the loss's weights
    pts = causal.loss_points(rng)  # [K, m, d], as the task drew them
    r = causal.residual(w, causal.row_features(pts, None, torch.zeros(len(pts), dtype=torch.long)), pts)
    r2 = r.reshape(len(r), -1, pts.shape[1]).square().sum(1)  # [K, m]: a system's squared residuals summed, as in the plain loss
    t0, t1 = causal.problem.domain.time
    first = pts[..., 0] < t0 + (t1 - t0) / 4
    assert float(loss_2) == pytest.approx(float(r2[first].mean()) / 4, rel=1e-10)
    assert float(loss_2) < float(loss_1)


def test_causal_tolerance_anneals_and_every_method_at_once_resumes_exactly(tmp_path):
    options = {"experts": {"t": 2}, "network": "modified_mlp", "fourier_features": {"count": 4}, "weight_factorization": {},
               "causal": {"chunks": 4, "tolerances": [1e-4, 1e-3, 1e-2], "threshold": 0.5},
               "curriculum": {"parameter": "nu", "start": 0.05, "steps": 4, "stages": 2}}

    def run(n, checkpoint, resume=False):
        solver = build(MoEHC, options)
        result = train(solver.task(lambda: {}), make_optimizer("adam", {"lr": 1e-3}, 6),
                       TrainSettings(steps=n, log_every=1, quiet=True, checkpoint_every=3), checkpoint=checkpoint, resume=resume)
        return result, solver

    whole, full = run(6, tmp_path / "a.pt")
    run(3, tmp_path / "b.pt")
    resumed, again = run(6, tmp_path / "b.pt", resume=True)
    assert resumed.resumed_from == 3
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    # every weight near 1 at these tolerances: one step up the schedule per step, then the last one stays
    assert [r["causal_eps"] for r in whole.history] == [1e-4, 1e-3, 1e-2, 1e-2, 1e-2, 1e-2]
    assert [r["curriculum_nu"] for r in whole.history] == pytest.approx([0.05, 0.05, 0.075, 0.075, 0.1, 0.1])


def test_the_methods_run_in_the_family_setting():
    """The sensors enter beside the (Fourier) coordinate features; causal chunks take every initial condition's points."""
    family = {"train": 4, "test": 1, "batch": 2, "sensors": 4, "parameters": {"initial.u": [0.0, 0.2]}}
    solver = build(HC, {"family": family, "network": "piratenet", "fourier_features": {"count": 4}, "causal": {"chunks": 4}})
    assert solver.model.basis.net.encode_u.in_features == 2 + 8 + 4
    result = steps(solver, 3)
    assert result.status.ok and np.isfinite([h["loss"] for h in result.history]).all()
    grid = solver.problem.domain.grid({"t": 5, "x": 9})
    assert np.isfinite(solver.predict_family(grid, "test")).all()


def test_a_causal_run_draws_its_weights_in_the_run_folder(tmp_path):
    ps.solve(HEAT, "hc", steps=3, options={**TINY, "causal": {"chunks": 4}}, overrides=["evaluate.grid={t: 6, x: 11}"],
             out=tmp_path / "run", quiet=True, device="cpu")
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"causal_eps", "causal_min_weight"} <= set(rows[0]) and float(rows[-1]["causal_min_weight"]) <= 1.0
    assert (tmp_path / "run" / "history.png").exists()  # its "training methods" panel


def test_what_does_not_fit_the_problem_is_refused():
    with pytest.raises(SolverMismatch, match=r"solvers.hc.curriculum.parameter: 'beta' is not a parameter of the 'heat'"):
        build(HC, {"curriculum": {"parameter": "beta", "start": 1.0, "steps": 4}})
    with pytest.raises(SolverMismatch, match=r"solvers.moe_hc.curriculum.start"):
        build(MoEHC, {"curriculum": {"parameter": "nu", "start": -1.0, "steps": 4}})


def test_causal_on_a_steady_problem_is_refused_at_validate_time():
    r = subprocess.run([sys.executable, "-m", "pdesolve", "validate", "problems/poisson2d.yaml", "--solver", "hc",
                        "--set", "solvers.hc.causal={chunks: 4}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "solvers.hc.causal weights the residual over time, and the problem has no time axis" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
