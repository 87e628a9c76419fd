"""Hard-constraint solvers (hc, moe_hc): exact conditions, the linear solve equals a direct solve, K = 1 equals hc, refusals."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import pdesolve as ps
from pdesolve.config import load_run_config
from pdesolve.equations.families import Heat
from pdesolve.solvers import SolverMismatch
from pdesolve.solvers.hc import HC, MoEHC

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"
HEAT, DS = PROBLEMS / "heat.yaml", PROBLEMS / "diffusion_sorption.yaml"
SMALL = {"points": {"solve": 96, "loss": 96}}


def build(path, cls, options=None):
    cfg = load_run_config(path, [f"solver={cls.name}"])
    torch.manual_seed(0)
    return cls(cfg.problem, cls.Options(**{**SMALL, **(options or {})}), torch.device("cpu"))


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
    result = ps.solve(HEAT, "hc", steps=150, options=SMALL | {"points": {"solve": 128, "loss": 128}},
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

    import pdesolve.constrained.convex as convex

    def missing(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(convex.importlib, "import_module", missing)
    with pytest.raises(SolverMismatch, match="cvxpy"):
        HC(cfg.problem, HC.Options(bounds=(-2.0, 2.0)), torch.device("cpu"))
