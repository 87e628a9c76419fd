"""N:M sparse training (pdesolve.nn.sparsity): exact N:M masks, exact derivatives in consistent mode (autograd and the
PINN's jets against finite differences), BDWP's transposed-pruned backward product against a hand-built matrix,
the mask schedule, exact resume through pdesolve.train, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from pdesolve.config import ConfigError, load_run_config
from pdesolve.grid import Grid, GridAxis
from pdesolve.nn import sparsity as sp
from pdesolve.nn.mlp import MLP
from pdesolve.optim import make_optimizer
from pdesolve.rollout import Trajectories
from pdesolve.solvers.pinn import PINN, PINNModel, PINNOptions
from pdesolve.solvers.sinenet import SineNetSettings, SineNetSolver
from pdesolve.train import TrainSettings, seed_everything, train

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"


def _hand_mask(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the n largest |w| in each run of m consecutive entries of every row (a loop, independent of the library)."""
    out = np.zeros(w.shape, dtype=bool)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], m):
            order = np.argsort(-np.abs(w[r, g : g + m]), kind="stable")
            out[r, g + order[:n]] = True
    return out


@pytest.mark.parametrize("n,m", [(2, 4), (2, 8), (1, 4)])
def test_masks_are_exactly_n_of_m_and_keep_the_largest(n, m):
    torch.manual_seed(0)
    w = torch.randn(16, 24, dtype=torch.float64)
    fwd = sp.forward_mask(w, n, m)
    assert fwd.reshape(16, 24 // m, m).sum(-1).eq(n).all()
    np.testing.assert_array_equal(fwd.numpy(), _hand_mask(w.numpy(), n, m))
    bwd = sp.backward_mask(w, n, m)  # along the outputs: the rows of W^T
    assert bwd.T.reshape(24, 16 // m, m).sum(-1).eq(n).all()
    np.testing.assert_array_equal(bwd.numpy(), _hand_mask(w.numpy().T, n, m).T)
    # a convolution: per output channel, groups along (input channel x kernel); backward: along outputs per (input, tap)
    k = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    cf = sp.forward_mask(k, n, m) if 36 % m == 0 else None
    if cf is not None:
        np.testing.assert_array_equal(cf.reshape(8, 36).numpy(), _hand_mask(k.reshape(8, 36).numpy(), n, m))
    if 8 % m == 0:
        cb = sp.backward_mask(k, n, m)
        np.testing.assert_array_equal(cb.reshape(8, 36).numpy(), _hand_mask(k.reshape(8, 36).numpy().T, n, m).T)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch.func's own internals
def test_consistent_mode_autograd_derivatives_equal_finite_differences():
    torch.manual_seed(1)
    net = MLP(2, 1, width=16, depth=3, act="tanh").double()
    layers = sp.sparsify(net, sp.SparsityOptions(n=2, m=8, mode="consistent"))
    assert [s.name for s in layers] == ["layers.1", "layers.2"]
    w = net.layers[1].weight
    assert (w != 0).reshape(16, 2, 8).sum(-1).eq(2).all()  # the evaluated weight is the N:M one
    x = torch.rand(7, 2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    (gxx,) = torch.autograd.grad(g[:, 0].sum(), x)
    eps = 1e-5
    for i in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[i] = eps
        with torch.no_grad():
            fd = (net(x + e) - net(x - e)) / (2 * eps)
        torch.testing.assert_close(g[:, i : i + 1].detach(), fd, rtol=1e-7, atol=1e-9)
    e = torch.tensor([1e-4, 0.0], dtype=torch.float64)
    with torch.no_grad():
        fd2 = (net(x + e) - 2 * net(x) + net(x - e)) / 1e-8
    torch.testing.assert_close(gxx[:, :1], fd2, rtol=1e-4, atol=1e-6)
    # torch.func transforms see plain tensor operations (the parallel-in-time executors use jacrev and jvp)
    jac = torch.func.vmap(torch.func.jacrev(lambda p: net(p[None])[0]))(x.detach())  # [7, 1, 2]
    torch.testing.assert_close(jac[:, 0], g.detach())
    _, jv = torch.func.jvp(net, (x.detach(),), (torch.ones_like(x),))
    torch.testing.assert_close(jv, g.detach().sum(-1, keepdim=True))


def test_pinn_jets_in_consistent_mode_equal_finite_differences_of_the_forward_map():
    cfg = load_run_config(PROBLEMS / "burgers.yaml", ["solvers.pinn.hard_constraints=false", "solvers.pinn.width=16",
                                                        "solvers.pinn.sparsity={n: 2, m: 4, mode: consistent}"])
    torch.manual_seed(2)
    model = PINNModel(cfg.problem, cfg.solver_options).double()
    assert len(sp.masks(model)) == cfg.solver_options.depth - 1
    pts = torch.rand(9, 2, dtype=torch.float64) * 0.8 + 0.1
    jet = model.jet(pts, order=2)  # columns (t, x); second derivatives along x
    with torch.no_grad():
        torch.testing.assert_close(jet.v, model(pts), rtol=1e-12, atol=1e-12)
        for i, eps in enumerate([1e-5, 1e-5]):
            e = torch.zeros(2, dtype=torch.float64)
            e[i] = eps
            fd = (model(pts + e) - model(pts - e)) / (2 * eps)
            torch.testing.assert_close(jet.g[:, i], fd, rtol=1e-6, atol=1e-8)
        e = torch.tensor([0.0, 1e-4], dtype=torch.float64)
        fd2 = (model(pts + e) - 2 * model(pts) + model(pts - e)) / 1e-8
        torch.testing.assert_close(jet.h[:, 0], fd2, rtol=1e-4, atol=1e-5)


def test_bdwp_linear_backward_uses_the_transposed_pruned_weight_and_a_dense_weight_gradient():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 8), nn.Linear(8, 16), nn.Linear(16, 2)).double()
    sp.sparsify(net, sp.SparsityOptions(n=2, m=4, mode="bdwp"))
    layer = net[1]
    assert isinstance(layer, sp.BDWPLinear)
    dense = layer.parametrizations.weight.original
    wd = dense.detach().numpy()
    wf = wd * _hand_mask(wd, 2, 4)  # N:M along the inputs
    wb = wd * _hand_mask(wd.T, 2, 4).T  # W^T pruned N:M along its rows: the outputs
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(y, x @ torch.as_tensor(wf).T + layer.bias)
    g = torch.randn(5, 16, dtype=torch.float64)
    y.backward(g)
    torch.testing.assert_close(x.grad, g @ torch.as_tensor(wb))  # W^T g with the backward mask, not the forward one
    assert not torch.allclose(x.grad, g @ torch.as_tensor(wf))
    torch.testing.assert_close(dense.grad, g.T @ x.detach())  # dense, straight through both masks
    torch.testing.assert_close(layer.bias.grad, g.sum(0))
    assert not sp.BDWP.derivative_consistent and sp.Consistent.derivative_consistent


def test_bdwp_convolution_backward_uses_the_output_pruned_weight():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 1, 1)).double()
    sp.sparsify(net, sp.SparsityOptions(n=2, m=4, mode="bdwp"))
    conv = net[1]
    dense = conv.parametrizations.weight.original
    k = dense.detach()
    kb = k * torch.as_tensor(_hand_mask(k.reshape(8, 72).numpy().T, 2, 4).T).reshape(k.shape)
    kf = k * torch.as_tensor(_hand_mask(k.reshape(8, 72).numpy(), 2, 4)).reshape(k.shape)
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    y = conv(x)
    torch.testing.assert_close(y, F.conv2d(x, kf, conv.bias, padding=1))
    g = torch.randn_like(y)
    y.backward(g)
    ref = x.detach().requires_grad_(True)
    F.conv2d(ref, kb, padding=1).backward(g)  # the input gradient of a convolution with the backward-masked kernel
    torch.testing.assert_close(x.grad, ref.grad)
    ref_w = k.clone().requires_grad_(True)
    F.conv2d(x.detach(), ref_w, padding=1).backward(g)
    torch.testing.assert_close(dense.grad, ref_w.grad)  # dense weight gradient


def test_masks_refresh_on_schedule_from_the_dense_weights():
    torch.manual_seed(5)
    net = MLP(2, 1, width=8, depth=2).double()
    sp.sparsify(net, sp.SparsityOptions(n=2, m=4, refresh_every=10))
    (layer, mask), = sp.masks(net)
    dense = layer.parametrizations.weight.original
    before = mask.mask.clone()
    with torch.no_grad():
        dense.copy_(torch.randn_like(dense))
    sp.before_step(net, 7)
    assert torch.equal(mask.mask, before)  # not due
    sp.before_step(net, 20)
    assert torch.equal(mask.mask, sp.forward_mask(dense, 2, 4)) and not torch.equal(mask.mask, before)
    # straight-through: pruned dense weights get gradients too, so they can grow back
    net(torch.rand(4, 2, dtype=torch.float64)).sum().backward()
    assert (dense.grad[~mask.mask] != 0).all()


def _pinn_task(sets):
    cfg = load_run_config(PROBLEMS / "heat.yaml", ["solvers.pinn.points.interior=32", "solvers.pinn.width=8", *sets])
    return PINN(cfg.problem, cfg.solver_options, torch.device("cpu")).task(lambda: {})


def _run(make, steps, ckpt, resume=False):
    seed_everything(0)
    task = make()
    rule = make_optimizer("adam", {"lr": 1e-2}, 8)
    train(task, rule, TrainSettings(steps=steps, log_every=1, checkpoint_every=1000, quiet=True), checkpoint=ckpt, resume=resume)
    return task


def test_pinn_sparse_training_resumes_exactly_and_refreshes_masks(tmp_path):
    def make():
        return _pinn_task(["solvers.pinn.sparsity={n: 2, m: 4, refresh_every: 3}"])

    straight = _run(make, 8, tmp_path / "a.pt")
    _run(make, 4, tmp_path / "b.pt")
    resumed = _run(make, 8, tmp_path / "b.pt", resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert any("mask" in k for k in a)  # the masks are model state: checkpoints carry them
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fresh = make().model
    changed = [not torch.equal(m.mask, f.mask) for (_, m), (_, f) in zip(sp.masks(straight.model), sp.masks(fresh))]
    assert any(changed)  # the schedule refreshed them during training


def _stepper(sets):
    cfg = load_run_config(PROBLEMS / "convection.yaml", [
        "solver=sinenet", "solvers.sinenet.width=4", "solvers.sinenet.waves=1", "solvers.sinenet.history=1",
        "solvers.sinenet.channel_mults=[1, 2]", "solvers.sinenet.batch_size=4", *sets])
    solver = SineNetSolver(cfg.problem, cfg.solver_options, torch.device("cpu"))
    f0 = np.random.default_rng(0).standard_normal((4, 1, 16))
    frames = np.stack([np.roll(f0, k, axis=-1) for k in range(6)], axis=1)
    a = cfg.problem.domain.space[0]
    grid = Grid((GridAxis(a.name, a.lo, a.hi, 16, True),), GridAxis("t", 0.0, 0.5, 6))
    data = Trajectories(torch.as_tensor(frames, dtype=torch.float32), grid, ("u",), tuple(range(4)))
    return solver.data_task(data, lambda: {})


def test_sinenet_bdwp_trains_and_resumes_exactly(tmp_path):
    def make():
        return _stepper(["solvers.sinenet.sparsity={n: 2, m: 4, mode: bdwp, refresh_every: 2}"])

    task = make()
    convs = sp.masks(task.model)
    assert len(convs) == len(sp.weight_layers(task.model)) - 2  # all but the lift and the projection
    assert all(isinstance(m, sp.BDWP) for _, m in convs)
    straight = _run(make, 5, tmp_path / "a.pt")
    _run(make, 2, tmp_path / "b.pt")
    resumed = _run(make, 5, tmp_path / "b.pt", resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert all(torch.isfinite(v).all() for v in a.values() if v.is_floating_point())


def test_refusals_name_the_key_and_the_layer():
    with pytest.raises(ValidationError, match="not derivative-consistent"):
        PINNOptions(sparsity={"n": 2, "m": 4, "mode": "bdwp"})
    with pytest.raises(ValidationError, match="sparsity.m=8 must divide width=20"):
        PINNOptions(sparsity={"n": 2, "m": 8})
    with pytest.raises(ValidationError, match="cannot be combined"):
        PINNOptions(width=8, sparsity={"n": 2, "m": 4}, weight_factorization={})
    with pytest.raises(ValidationError, match="n must be smaller than m"):
        sp.SparsityOptions(n=4, m=4)
    with pytest.raises(ValidationError, match="extra"):
        sp.SparsityOptions(n=2, m=4, every=3)
    with pytest.raises(ConfigError) as err:  # pdesolve validate reads the file the same way
        load_run_config(PROBLEMS / "heat.yaml", ["solvers.pinn.sparsity={n: 2, m: 4, mode: bdwp}"])
    assert "sparsity" in str(err.value) and "derivative-consistent" in str(err.value)
    with pytest.raises(sp.SparsityError, match=r"layer 'layers.1' has fan-in 6"):
        sp.sparsify(MLP(2, 1, width=6, depth=2), sp.SparsityOptions(n=2, m=4))
    with pytest.raises(sp.SparsityError, match=r"layer '1' has 6 outputs"):
        sp.sparsify(nn.Sequential(nn.Linear(2, 8), nn.Linear(8, 6), nn.Linear(6, 1)), sp.SparsityOptions(n=2, m=4, mode="bdwp"))
    with pytest.raises(ValidationError, match="not a multiple of m=8"):
        SineNetSettings(width=4, channel_mults=(1, 2), sparsity={"n": 2, "m": 8})
    with pytest.raises(ValidationError, match="linearizes the stepper"):
        SineNetSettings(width=4, channel_mults=(1, 2), train_unroll=2, unroll_executor={"method": "newton"},
                        sparsity={"n": 2, "m": 4, "mode": "bdwp"})


def test_theoretical_flops_count_the_pruned_products():
    net = MLP(2, 1, width=16, depth=3)
    opts = sp.SparsityOptions(n=2, m=4, mode="bdwp")
    dense_layers = 2 * (2 * 16 + 16 * 1)  # per point: first and last
    sparse_layers = 2 * (2 * 16 * 16)
    f = sp.training_flops(net, lambda: net(torch.zeros(10, 2)), opts)
    assert f.forward == 10 * (dense_layers + sparse_layers)
    assert f.sparse_forward == 10 * (dense_layers + 0.5 * sparse_layers) == f.sparse_input_grad
    c = sp.training_flops(net, lambda: net(torch.zeros(10, 2)), sp.SparsityOptions(n=2, m=4))
    assert c.sparse_input_grad == c.input_grad  # consistent: W^T has no N:M structure along its reduction
    assert sp.jet_flops(net, 10 * 4, opts).forward == 4 * f.forward
