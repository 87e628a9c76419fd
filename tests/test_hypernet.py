"""Hypernetwork PINNs over parametric families (solver hyper_pinn, docs/hypernetworks.md)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pdesolve.config import ConfigError, load_run_config, problem_to_dict, validate_file
from pdesolve.nn.hypernet import HyperNetwork, batched_mlp, batched_mlp_jet, mip_encoding
from pdesolve.nn.jet import Jet
from pdesolve.nn.mlp import MLP
from pdesolve.optim import make_optimizer
from pdesolve.parametric import HeldOut
from pdesolve.problem import ParametricFamilyError
from pdesolve.reference import reference_solution
from pdesolve.solvers import SOLVERS
from pdesolve.solvers.base import SolverMismatch
from pdesolve.solvers.hyper_pinn import HyperPINN, HyperPINNOptions
from pdesolve.solvers.pinn import PINN, PINNModel, PINNOptions
from pdesolve.train import TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]
CONVECTION = ROOT / "problems" / "convection_parametric.yaml"
HEAT = ROOT / "problems" / "heat_parametric.yaml"


def test_mip_encoding_has_constant_norm_and_naive_does_not():
    g = torch.rand(50, 3, dtype=torch.float64)
    norms = mip_encoding(g).norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, math.sqrt(3)), atol=1e-12)
    hyper = HyperNetwork(1, [2, 4, 1], encoding="naive").double()
    values = torch.tensor([[1.0], [30.0]], dtype=torch.float64)
    raw = hyper.encode(values, torch.zeros_like(values)).norm(dim=-1)
    assert raw[1] / raw[0] == pytest.approx(30.0)  # the naive input's magnitude is the parameter's


@pytest.mark.parametrize("encoding", ["mip", "naive"])
def test_batched_primary_equals_plain_mlp_with_the_generated_weights(encoding):
    torch.manual_seed(0)
    sizes = [3, 7, 7, 2]
    hyper = HyperNetwork(1, sizes, width=16, depth=2, encoding=encoding).double()
    values = torch.tensor([[1.5], [4.0], [9.0]], dtype=torch.float64)
    weights = hyper(values, values / 10)
    n = 11
    coords = torch.rand(3 * n, 2, dtype=torch.float64)
    feats = lambda c: torch.stack([torch.sin(c[:, 0]), c[:, 1], c[:, 0] * c[:, 1]], -1)  # noqa: E731
    jet_feats = lambda cols: Jet.stack([cols[0].sin(), cols[1], cols[0] * cols[1]])  # noqa: E731
    out = batched_mlp(feats(coords), weights, torch.tanh)
    jet = batched_mlp_jet(jet_feats(Jet.variables(coords, 2)), weights, "tanh")
    for s in range(3):
        mlp = MLP(3, 2, 7, 2, "tanh").double()
        with torch.no_grad():
            for layer, (w, b) in zip(mlp.layers, weights):
                layer.weight.copy_(w[s])
                layer.bias.copy_(b[s])
        rows = slice(s * n, (s + 1) * n)
        ref = mlp.forward_jet(jet_feats(Jet.variables(coords[rows], 2)))
        assert torch.allclose(out[rows], mlp(feats(coords[rows])), atol=1e-13)
        assert torch.allclose(jet.v[rows], ref.v, atol=1e-13)
        assert torch.allclose(jet.g[rows], ref.g, atol=1e-13)
        assert torch.allclose(jet.h[rows], ref.h, atol=1e-13)


def test_batched_jet_derivatives_equal_autograd():
    torch.manual_seed(1)
    hyper = HyperNetwork(2, [2, 5, 1], encoding="mip").double()
    values = torch.rand(2, 2, dtype=torch.float64)
    weights = [(w.detach(), b.detach()) for w, b in hyper(values, values)]
    coords = torch.rand(2 * 6, 2, dtype=torch.float64, requires_grad=True)
    jet = batched_mlp_jet(Jet.stack(Jet.variables(coords, 2)), weights, "tanh")
    u = batched_mlp(coords, weights, torch.tanh)[:, 0]
    (grad,) = torch.autograd.grad(u.sum(), coords, create_graph=True)
    second = [torch.autograd.grad(grad[:, i].sum(), coords, retain_graph=True)[0][:, i] for i in range(2)]
    assert torch.allclose(jet.g[:, :, 0], grad, atol=1e-12)
    assert torch.allclose(jet.h[:, :, 0], torch.stack(second, -1), atol=1e-12)


def test_hyper_pinn_at_a_fixed_parameter_is_the_pinn_with_the_generated_weights():
    """The whole model (features, exact transform, jets) against PINNModel holding the generated weights."""
    cfg = load_run_config(CONVECTION, ["solvers.hyper_pinn.width=8", "solvers.hyper_pinn.depth=2"])
    torch.manual_seed(0)
    solver = HyperPINN(cfg.problem, cfg.solver_options, torch.device("cpu"), torch.float64)
    member = cfg.problem.member({"beta": 12.0})
    pinn = PINNModel(member, PINNOptions(width=8, depth=2)).double()
    values = torch.tensor([[12.0]], dtype=torch.float64)
    weights = solver.model.weights(values)
    with torch.no_grad():
        for layer, (w, b) in zip(pinn.net.layers, weights):
            layer.weight.copy_(w[0])
            layer.bias.copy_(b[0])
    coords = torch.rand(40, 2, dtype=torch.float64) * torch.tensor([1.0, 2 * math.pi], dtype=torch.float64)
    a, b = solver.model.jet(coords, weights, 2), pinn.jet(coords, 2)
    for x, y in ((a.v, b.v), (a.g, b.g), (a.h, b.h)):
        assert torch.allclose(x, y, atol=1e-12)
    assert torch.allclose(solver.model(coords, values), pinn(coords), atol=1e-12)


def test_only_a_parametric_solver_takes_a_range(tmp_path):
    text = CONVECTION.read_text().replace("solver: hyper_pinn", "solver: pinn")
    path = tmp_path / "family_pinn.yaml"
    path.write_text(text)
    errors = validate_file(path)
    assert any("params.beta" in e and "'pinn'" in e and "hyper_pinn" in e for e in errors), errors
    assert not [s for s, c in SOLVERS.items() if c.parametric and s != "hyper_pinn"]
    family = load_run_config(CONVECTION).problem
    with pytest.raises(SolverMismatch, match="span ranges"):
        PINN(family, PINNOptions(), torch.device("cpu"))
    with pytest.raises(ParametricFamilyError, match="parametric family"):
        family.coefficients  # noqa: B018 - a single-valued use is refused
    plain = load_run_config(ROOT / "problems" / "convection.yaml")
    assert plain.eval_params == () and plain.problem.ranges == {}
    with pytest.raises(SolverMismatch, match="parametric families"):
        HyperPINN(plain.problem, HyperPINNOptions(), torch.device("cpu"))


@pytest.mark.parametrize("change, message", [
    ("evaluate.params.beta=[2, 40]", "outside the trained range"),
    ("evaluate.params={nu: [0.1]}", "exactly the ranged parameters"),
    ("params.beta={range: [5, 1]}", "lo < hi"),
    ("solvers.hyper_pinn.encoding=plain", "encoding"),
])
def test_family_settings_errors_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(CONVECTION, [change])


def test_drawn_held_out_members_and_round_trip():
    cfg = load_run_config(HEAT, ["evaluate.params=null", "evaluate.draw={count: 5, seed: 3}"])
    nus = [m["nu"] for m in cfg.eval_params]
    assert len(nus) == 5 and all(0.01 <= v <= 0.1 for v in nus)
    assert nus == [m["nu"] for m in load_run_config(HEAT, ["evaluate.params=null", "evaluate.draw={count: 5, seed: 3}"]).eval_params]
    again = problem_to_dict(cfg.problem)
    assert again["params"]["nu"] == {"range": [0.01, 0.1], "scale": "log"}
    member = cfg.problem.member({"nu": nus[0]})
    grid = member.domain.grid({"t": 5, "x": 17})
    t, x = np.meshgrid(grid.coords("t"), grid.coords("x"), indexing="ij")
    exact = np.exp(-nus[0] * np.pi**2 * t) * np.sin(np.pi * x) + 0.5 * np.exp(-9 * nus[0] * np.pi**2 * t) * np.sin(3 * np.pi * x)
    assert np.allclose(reference_solution(member, grid)[:, 0], exact, atol=1e-10)


def _tiny(path: Path, *extra: str):
    return load_run_config(path, ["solvers.hyper_pinn.width=16", "solvers.hyper_pinn.depth=2", "solvers.hyper_pinn.hyper_width=16",
                                  "solvers.hyper_pinn.samples=4", "solvers.hyper_pinn.points=64", *extra])


def _task(cfg, grid_shape):
    torch.manual_seed(cfg.seed)
    solver = HyperPINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    held = HeldOut.of(cfg.problem, cfg.eval_params, cfg.problem.domain.grid(grid_shape), "test")
    task = solver.task(lambda: HeldOut.scalars(held.metrics(held.predict(solver).numpy())))
    return solver, task


def test_checkpoint_resume_is_exact(tmp_path):
    cfg = _tiny(HEAT)
    settings = dict(log_every=1, quiet=True, checkpoint_every=3)

    def rule():
        return make_optimizer("adam", cfg.optimizer_options, 6)

    _, full = _task(cfg, {"t": 5, "x": 9})
    whole = train(full, rule(), TrainSettings(steps=6, **settings), checkpoint=tmp_path / "a.pt")
    _, first = _task(cfg, {"t": 5, "x": 9})
    train(first, rule(), TrainSettings(steps=3, **settings), checkpoint=tmp_path / "b.pt")
    _, second = _task(cfg, {"t": 5, "x": 9})
    resumed = train(second, rule(), TrainSettings(steps=6, **settings), checkpoint=tmp_path / "b.pt", resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, second.model.state_dict()[k]), k


@pytest.mark.parametrize("encoding", ["mip", "naive"])
def test_a_tiny_parametric_convection_run_lowers_the_held_out_error(encoding):
    cfg = _tiny(CONVECTION, "params.beta={range: [1, 4]}", "evaluate.params={beta: [1.5, 2.5, 3.5]}",
                f"solvers.hyper_pinn.encoding={encoding}")
    solver, task = _task(cfg, {"t": 11, "x": 32})
    before = task.evaluate()["rel_l2"]
    result = train(task, make_optimizer("adam", cfg.optimizer_options.model_copy(update={"lr": 3e-3}), 300),
                   TrainSettings(steps=300, log_every=50, quiet=True))
    after = result.history[-1]["rel_l2"]
    assert result.status.ok and after < 0.5 * before, (before, after)
