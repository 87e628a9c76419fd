"""Residual and parallel-shallow networks (pdesolve.nn.shallow): the formulas, the first-order truncation, equal
parameters, jets against finite differences, blocks and jet blocks, and the PINN's ``network`` option (mlp unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pdesolve.config import load_run_config
from pdesolve.nn.blocks import compose
from pdesolve.nn.jet import Jet
from pdesolve.nn.jet_blocks import JetCarry, compose_jets
from pdesolve.nn.mlp import MLP
from pdesolve.nn.shallow import NETWORKS, ParallelMLP, ResidualMLP
from pdesolve.solvers.pinn import PINNModel

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"


def _nets(width=8, depth=4, act="tanh"):
    out = {}
    for name, cls in NETWORKS.items():
        torch.manual_seed(0)
        out[name] = cls(3, 2, width, depth, act).double()
    return out


def test_equal_parameters_and_initial_values_at_equal_width_and_depth():
    nets = _nets()
    counts = {k: sum(p.numel() for p in n.parameters()) for k, n in nets.items()}
    assert len(set(counts.values())) == 1 and counts["mlp"] == 3 * 8 + 8 + 3 * (8 * 8 + 8) + 8 * 2 + 2
    for name in ("residual", "parallel"):
        for a, b in zip(nets["mlp"].parameters(), nets[name].parameters()):
            assert torch.equal(a, b)


def test_the_formulas_and_the_first_order_truncation():
    nets = _nets()
    x = torch.randn(5, 3, dtype=torch.float64)
    first, *hidden, last = nets["mlp"].layers
    h0 = torch.tanh(first(x))
    h = h0
    for layer in hidden:
        h = h + torch.tanh(layer(h))
    torch.testing.assert_close(nets["residual"](x), last(h))
    torch.testing.assert_close(nets["parallel"](x), last(h0 + sum(torch.tanh(layer(h0)) for layer in hidden)))

    # with branches eps f_k, residual - parallel = O(eps^2): halving eps quarters the difference
    def gap(eps):
        res, par = ResidualMLP(3, 2, 8, 4).double(), ParallelMLP(3, 2, 8, 4).double()
        for net in (res, par):
            torch.manual_seed(1)
            for layer in net.layers:
                torch.nn.init.normal_(layer.weight)
                torch.nn.init.normal_(layer.bias)
            with torch.no_grad():
                for layer in net.layers[1:-1]:  # f_k(h) = tanh(eps (W h + b)) ~ eps (W h + b)
                    layer.weight.mul_(eps)
                    layer.bias.mul_(eps)
        with torch.no_grad():
            return float((res(x) - par(x)).abs().max())

    ratio = gap(1e-2) / gap(5e-3)
    assert 3.8 < ratio < 4.2, ratio


def test_depth_one_networks_are_the_mlp():
    nets = _nets(depth=1)
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(nets["mlp"](x), nets["residual"](x)) and torch.equal(nets["mlp"](x), nets["parallel"](x))


@pytest.mark.parametrize("name", ["residual", "parallel"])
def test_jets_equal_finite_differences_and_blocks_compose(name):
    net = _nets(act="sin")[name]
    x = torch.rand(6, 3, dtype=torch.float64)
    jet = net.forward_jet(Jet.stack(Jet.variables(x, order=2)))
    with torch.no_grad():
        torch.testing.assert_close(jet.v, net(x), rtol=1e-12, atol=1e-12)
        for i in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[i] = 1e-5
            torch.testing.assert_close(jet.g[:, i], (net(x + e) - net(x - e)) / 2e-5, rtol=1e-6, atol=1e-8)
            e[i] = 1e-4
            torch.testing.assert_close(jet.h[:, i], (net(x + e) - 2 * net(x) + net(x - e)) / 1e-8, rtol=1e-4, atol=1e-5)
    assert torch.equal(compose(net.blocks(), x), net(x))  # bit for bit
    cols = Jet.variables(x, order=2)
    out = compose_jets(net.jet_blocks(), JetCarry(Jet.stack(cols), tuple(cols)))
    for a, b in zip(out.rows(), jet.rows()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_pinn_network_option_keeps_mlp_bit_for_bit_and_selects_the_others():
    cfg = load_run_config(PROBLEMS / "burgers.yaml")
    assert cfg.solver_options.network == "mlp"
    torch.manual_seed(3)
    model = PINNModel(cfg.problem, cfg.solver_options)
    torch.manual_seed(3)
    plain = MLP(model.features.size, 1, cfg.solver_options.width, cfg.solver_options.depth, cfg.solver_options.activation)
    assert type(model.net) is MLP
    pts = torch.rand(10, 2)
    assert torch.equal(model.net(model.features(pts)), plain(model.features(pts)))
    for name in ("residual", "parallel"):
        cfg = load_run_config(PROBLEMS / "burgers.yaml", [f"solvers.pinn.network={name}"])
        model = PINNModel(cfg.problem, cfg.solver_options).double()
        assert type(model.net) is NETWORKS[name]
        p = pts.double()
        jet = model.jet(p, order=2)
        blocks = compose_jets(model.jet_blocks(), model.jet_input(p, 2, model.frame(p, 2)))
        for a, b in zip(blocks.rows(), jet.rows()):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
