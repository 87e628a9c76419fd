"""The PINN training methods (issue 17): what each computes, checked against its definition; resume is exact; refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pdesolve.config import load_run_config
from pdesolve.errors import UserError
from pdesolve.nn.gated import ModifiedMLP, PirateNet
from pdesolve.nn.jet import AutogradDerivatives, Jet, JetDerivatives
from pdesolve.nn.rwf import FactorizedLinear, factorize
from pdesolve.optim import make_optimizer
from pdesolve.solvers.base import SolverMismatch
from pdesolve.solvers.pinn import PINN
from pdesolve.solvers.pinn_training import (
    AdaptiveWeights,
    AdaptiveWeightsOptions,
    CausalOptions,
    CausalWeights,
    Curriculum,
    CurriculumOptions,
)
from pdesolve.train import TrainSettings, train

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"


def test_causal_weights_are_the_exponential_of_the_earlier_chunks_losses_and_anneal():
    causal = CausalWeights(CausalOptions(chunks=4, tolerances=[0.5, 2.0], threshold=0.9), 0.0, 1.0)
    t = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.9, 0.99], dtype=torch.float64)
    chunk = causal.chunk_of(t)
    assert chunk.tolist() == [0, 0, 1, 2, 3, 3]
    r2 = torch.tensor([1.0, 3.0, 4.0, 0.5, 0.2, 0.4], dtype=torch.float64, requires_grad=True)
    loss = causal.loss(r2, chunk)
    per_chunk = [2.0, 4.0, 0.5, 0.3]
    w = [math.exp(-0.5 * sum(per_chunk[:i])) for i in range(4)]
    assert loss.item() == pytest.approx(sum(a * b for a, b in zip(w, per_chunk)) / 4)
    torch.testing.assert_close(causal.weights, torch.tensor(w, dtype=torch.float64))
    loss.backward()  # no gradient through the weights: d loss / d r2 = w[chunk] / (4 * count)
    torch.testing.assert_close(r2.grad, torch.tensor([w[0] / 8, w[0] / 8, w[1] / 4, w[2] / 4, w[3] / 8, w[3] / 8], dtype=torch.float64))
    causal.after_step()
    assert causal.level == 0  # the last chunk's weight exp(-3.25) is far below the threshold
    causal.loss(torch.full((6,), 1e-3, dtype=torch.float64), chunk)
    causal.after_step()
    assert causal.level == 1 and causal.eps == 2.0
    causal.after_step()
    assert causal.level == 1  # the schedule's last tolerance stays


def test_grad_norm_weights_balance_the_terms_gradients():
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    terms = torch.stack([3 * p[0], 4 * p[1] * p[1]])  # gradient norms 3 and 16
    aw = AdaptiveWeights(AdaptiveWeightsOptions(method="grad_norm", momentum=0.0), ["a", "b"], torch.ones(2))
    aw.update([p], [], terms, seed=0)
    torch.testing.assert_close(aw.weights, torch.tensor([19 / 3, 19 / 16]))
    aw = AdaptiveWeights(AdaptiveWeightsOptions(method="grad_norm", momentum=0.9), ["a", "b"], torch.ones(2))
    aw.update([p], [], terms, seed=0)
    torch.testing.assert_close(aw.weights, 0.9 + 0.1 * torch.tensor([19 / 3, 19 / 16]))


def test_a_term_without_gradient_keeps_its_weight_instead_of_exploding():
    """An inactive penalty (relu of a positive quantity) has a zero gradient: sum / 0 would weight it by 1e30."""
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    terms = torch.stack([3 * p[0], 4 * p[1] * p[1], torch.relu(-p[0]) ** 2])
    aw = AdaptiveWeights(AdaptiveWeightsOptions(method="grad_norm", momentum=0.0), ["a", "b", "off"], torch.tensor([1.0, 1.0, 10.0]))
    aw.update([p], [], terms, seed=0)
    torch.testing.assert_close(aw.weights, torch.tensor([19 / 3, 19 / 16, 10.0]))


def test_ntk_weights_use_the_trace_of_each_terms_kernel():
    """With one point per term the random-sign estimate is exact: tr K_i = |grad v_i|^2."""
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    values = [(3 * p[0]).reshape(1), (p[0] + p[1] * p[1]).reshape(1)]  # |grad|^2 = 9 and 1 + 16
    terms = torch.stack([(v * v).mean() for v in values])
    aw = AdaptiveWeights(AdaptiveWeightsOptions(method="ntk", momentum=0.0, probes=3), ["a", "b"], torch.ones(2))
    aw.update([p], values, terms, seed=0)
    torch.testing.assert_close(aw.weights, torch.tensor([26 / 9, 26 / 17]))


def test_curriculum_steps_from_the_start_to_the_target():
    cur = Curriculum(CurriculumOptions(parameter="beta", start=1.0, steps=100, stages=4), 50.0)
    assert [cur.value(s) for s in (0, 24, 25, 50, 99, 100, 500)] == [1.0, 1.0, 13.25, 25.5, 37.75, 50.0, 50.0]
    log = Curriculum(CurriculumOptions(parameter="nu", start=1.0, steps=10, stages=2, scale="log"), 0.01)
    assert log.value(5) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="positive"):
        Curriculum(CurriculumOptions(parameter="nu", start=0.0, steps=10, scale="log"), 0.01)


@pytest.mark.parametrize("cls", [ModifiedMLP, PirateNet])
def test_gated_networks_on_jets_equal_autograd(cls):
    torch.manual_seed(0)
    net = cls(2, 2, 12, 2, "tanh").double()
    if isinstance(net, PirateNet):
        with torch.no_grad():
            net.alpha.fill_(0.4)  # the residual branches switched on
    c = torch.rand(12, 2, dtype=torch.float64)
    jet = net.forward_jet(Jet.stack(Jet.variables(c, 3, slice(1, 2))))
    torch.testing.assert_close(jet.v, net(c))
    jd, ad = JetDerivatives(jet, ["u", "v"], ["t", "x"], c), AutogradDerivatives(net, c, ["u", "v"], ["t", "x"])
    for axes in [("t",), ("x",), ("x", "x"), ("x", "x", "x")]:
        torch.testing.assert_close(jd("v", *axes), ad("v", *axes))


def test_pirate_net_starts_as_a_linear_map_of_its_lift():
    torch.manual_seed(0)
    net = PirateNet(3, 1, 8, 3, "tanh").double()
    x = torch.rand(5, 3, dtype=torch.float64)
    torch.testing.assert_close(net(x), net.out(net.lift(x)))


def test_weight_factorization_keeps_the_function_and_trains_scales():
    torch.manual_seed(0)
    net = ModifiedMLP(2, 1, 8, 2).double()
    x = torch.rand(7, 2, dtype=torch.float64)
    before = net(x)
    factorize(net, mu=1.0, sigma=0.1, seed=3)
    assert all(not isinstance(m, torch.nn.Linear) for m in net.modules())
    assert sum(isinstance(m, FactorizedLinear) for m in net.modules()) == 5
    torch.testing.assert_close(net(x), before)
    scales = [m.log_scale for m in net.modules() if isinstance(m, FactorizedLinear)]
    assert abs(float(torch.cat(scales).detach().mean()) - 1.0) < 0.1


def _solver(name, *overrides):
    cfg = load_run_config(PROBLEMS / f"{name}.yaml", ["solvers.pinn.points.interior=256", "solvers.pinn.width=16", *overrides])
    torch.manual_seed(cfg.seed)
    return cfg, PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))


ALL_ON = ["solvers.pinn.fourier_features={count: 8, sigma: 1.0}", "solvers.pinn.weight_factorization={mu: 0.5}",
          "solvers.pinn.causal={chunks: 8, tolerances: [0.01, 0.1], threshold: 0.5}", "solvers.pinn.hard_constraints=false",
          "solvers.pinn.adaptive_weights={method: ntk, every: 2}", "solvers.pinn.curriculum={parameter: beta, start: 1, steps: 4}"]


def _resumed_equals_whole(tmp_path, name, overrides, every, steps=6, rule=("adam", {"lr": 1e-3})):
    """Train ``steps`` steps straight, and stopped after ``every`` and resumed: the same losses and weights."""
    settings = dict(log_every=1, quiet=True, checkpoint_every=every)

    def run(n, checkpoint, resume=False):
        _, solver = _solver(name, *overrides)
        result = train(solver.task(lambda: {}), make_optimizer(*rule, steps), TrainSettings(steps=n, **settings),
                       checkpoint=checkpoint, resume=resume)
        return result, solver

    whole, full = run(steps, tmp_path / "a.pt")
    run(every, tmp_path / "b.pt")
    resumed, again = run(steps, tmp_path / "b.pt", resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    return whole, full


def test_every_method_at_once_resumes_exactly(tmp_path):
    whole, _ = _resumed_equals_whole(tmp_path, "convection", ALL_ON, 3)
    row = whole.history[-1]
    assert {"causal_eps", "causal_min_weight", "weight_residual", "weight_initial", "curriculum_beta"} <= set(row)
    chunks = [row[k] for k in sorted(row) if k.startswith("causal_w_")]  # every time chunk's weight, earliest first
    assert len(chunks) == 8 and chunks[0] == 1.0 and min(chunks) == row["causal_min_weight"]
    assert all(0.0 <= a and b <= a for a, b in zip(chunks, chunks[1:]))  # the weights never rise forward in time
    assert [r["curriculum_beta"] for r in whole.history[:5]] == [1.0, 1.8, 2.6, 3.4, 5.0]  # 5 stages over 4 steps, then beta = 5


@pytest.mark.parametrize("name, override, says", [
    ("convection", "solvers.pinn.curriculum={parameter: nu, start: 1, steps: 4}", "not a parameter"),
    ("heat", "solvers.pinn.curriculum={parameter: nu, start: -1, steps: 4}", "curriculum.start"),
])
def test_methods_that_do_not_fit_the_problem_are_refused(name, override, says):
    with pytest.raises(SolverMismatch, match=says):
        _solver(name, override)


def test_bad_method_options_name_the_key():
    with pytest.raises(UserError, match="solvers.pinn.causal: tolerances: expected positive"):
        load_run_config(PROBLEMS / "convection.yaml", ["solvers.pinn.causal={tolerances: [0.1, -1]}"])


def test_time_marching_windows_start_where_the_last_one_ends():
    cfg, solver = _solver("allen_cahn", "solvers.pinn.dtype=float64", "solvers.pinn.time_marching={windows: 3, steps: 2}")
    model = solver.model
    for k in (1, 2):
        with torch.no_grad():
            for p in model.network(k).parameters():
                p.add_(0.1 * torch.randn_like(p))  # the windows' networks differ
        x = torch.linspace(-1, 1, 9, dtype=torch.float64)
        at = torch.stack([torch.full_like(x, model.bounds[k]), x], dim=-1)
        cols = Jet.variables(at, 2, model.hess)
        torch.testing.assert_close(model.window_jet(k, cols).v, model.window_jet(k - 1, cols).v)
        # and the space derivatives along the shared face agree too
        torch.testing.assert_close(model.window_jet(k, cols).h, model.window_jet(k - 1, cols).h)
    late = torch.tensor([[0.9, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(model(late), model.window_jet(2, Jet.variables(late, 1, model.hess)).v)


def test_each_window_network_reads_its_window_stretched_onto_the_time_interval():
    """Window k's network sees t in [t_k, t_k+1] as the whole [t0, t1]: its raw output at (t_k, x) is the first window's
    network's at (t0, x) when the two networks share their weights."""
    _, solver = _solver("allen_cahn", "solvers.pinn.dtype=float64", "solvers.pinn.time_marching={windows: 4, steps: 2}")
    model = solver.model
    model.network(2).load_state_dict(model.network(0).state_dict())
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    for s in (0.0, 0.5, 1.0):
        t = model.bounds[2] + s * (model.bounds[3] - model.bounds[2])
        cols = Jet.variables(torch.stack([torch.full_like(x, t), x], -1), 1, model.hess)
        stretched = model.window_inputs(2, cols)[0].v
        torch.testing.assert_close(stretched, torch.full_like(x, model.bounds[0] + s * (model.bounds[-1] - model.bounds[0])))
        # d(stretched t)/dt is the stretch factor, so u_t carries the chain rule
        assert torch.allclose(model.window_inputs(2, cols)[0].g[:, 0], torch.full_like(x, 4.0))


def test_cosine_restarts_decays_over_each_cycle_and_starts_again():
    from pdesolve.optim.backprop import AdamOptions, scheduled_lr

    o = AdamOptions(lr=1e-2, schedule="cosine_restarts", steps=10, min_lr=1e-4)
    lrs = [scheduled_lr(o, s, 100) for s in range(30)]
    assert lrs[0] == lrs[10] == lrs[20] == 1e-2
    assert lrs[5] == pytest.approx(0.5 * (1e-2 + 1e-4))
    assert all(a > b for a, b in zip(lrs[:9], lrs[1:10]))  # decreasing within a cycle


@pytest.mark.parametrize("every", [2, 3])  # a checkpoint at a window's first step, and one inside a window
def test_time_marching_resumes_exactly(tmp_path, every):
    marching = ["solvers.pinn.time_marching={windows: 3, steps: 2}", "solvers.pinn.points.resample_every=1"]
    _, full = _resumed_equals_whole(tmp_path, "allen_cahn", marching, every)
    assert full.model.active == 2


def test_time_marching_needs_the_exact_initial_transform():
    with pytest.raises(SolverMismatch, match="hard_constraints: true"):
        _solver("allen_cahn", "solvers.pinn.hard_constraints=false", "solvers.pinn.time_marching={windows: 2, steps: 2}")


def test_time_marching_with_lbfgs_in_every_window_lowers_each_windows_loss_and_resumes_exactly(tmp_path):
    """``adam_lbfgs`` with ``cycle`` = the window's steps: Adam then L-BFGS in each window, from fresh state."""
    marching = ["solvers.pinn.time_marching={windows: 3, steps: 10}"]
    rule = ("adam_lbfgs", {"adam_steps": 5, "cycle": 10, "lr": 1e-3})
    whole, full = _resumed_equals_whole(tmp_path, "allen_cahn", marching, 15, steps=30, rule=rule)
    assert full.model.active == 2
    losses = [r["loss"] for r in whole.history]
    for k in range(3):  # the L-BFGS half of each window ends below where Adam left it
        assert losses[10 * k + 9] < losses[10 * k + 5]
    assert [r["lr"] for r in whole.history[:10]] == [1e-3] * 5 + [1.0] * 5
