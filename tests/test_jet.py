"""Forward-mode jets agree with nested reverse-mode autograd."""

import pytest
import torch

from pdesolve.expr import Expression
from pdesolve.nn.features import CoordinateFeatures
from pdesolve.nn.jet import AutogradDerivatives, Jet, JetBackend, JetDerivatives
from pdesolve.nn.mlp import MLP
from pdesolve.problem import Axis, Domain


def test_jet_derivatives_equal_autograd_through_network_features_and_expressions():
    torch.manual_seed(0)
    dom = Domain((Axis("x", 0.0, 6.0, periodic=True), Axis("y", -1.0, 2.0)), (0.0, 1.0))
    feats = CoordinateFeatures(dom, periodic_modes=2)
    for act in ("tanh", "sin", "gelu", "silu", "sigmoid"):
        net = MLP(feats.size, 2, 16, 3, act).double()
        e = Expression.parse("sin(pi*x)*exp(-t) + y**3/(2+t) + sqrt(1+x*x) + 2**y + tanh(x*y)", ("t", "x", "y"))

        def f_tensor(c, net=net, e=e):
            t, x, y = c.unbind(-1)
            return net(feats(c)) * (t * y).unsqueeze(-1) + e.torch(t=t, x=x, y=y).unsqueeze(-1)

        def f_jet(c, net=net, e=e):
            cols = Jet.variables(c, hess=slice(1, 3))
            t, x, y = cols
            g = e.evaluate(JetBackend(), t=t, x=x, y=y)
            return net.forward_jet(feats.jet(cols)) * Jet.stack([t * y, t * y]) + Jet.stack([g, g])

        c = torch.rand(40, 3, dtype=torch.float64) * torch.tensor([1.0, 6.0, 3.0]) + torch.tensor([0.0, 0.0, -1.0])
        jd = JetDerivatives(f_jet(c), ["u", "v"], ["t", "x", "y"], c)
        ad = AutogradDerivatives(f_tensor, c, ["u", "v"], ["t", "x", "y"])
        for field in ("u", "v"):
            for axes in [(), ("t",), ("x",), ("y",), ("x", "x"), ("y", "y")]:
                torch.testing.assert_close(jd(field, *axes), ad(field, *axes), rtol=1e-10, atol=1e-10)


def test_option_models_offer_exactly_the_known_activations():
    from typing import get_args

    from pdesolve.nn.mlp import ACTIVATIONS, Activation

    assert set(get_args(Activation)) == set(ACTIVATIONS)


def test_third_and_fourth_order_jets_equal_nested_autograd():
    """Taylor-mode orders 3 and 4 (KdV, Kuramoto-Sivashinsky) through every activation and expression function."""
    torch.manual_seed(1)
    dom = Domain((Axis("x", 0.0, 6.0, periodic=True), Axis("y", 0.5, 2.0)), (0.0, 1.0))
    feats = CoordinateFeatures(dom, periodic_modes=2)
    e = Expression.parse("sin(pi*x)*exp(-t) + y**3/(2+t) + sqrt(1+x*x) + 2**y + tanh(x*y) + tan(0.3*x) + log(y) + sinh(0.5*x)"
                         " + cosh(y) + arctan(x - y) + y**2.5 + cos(x)*y", ("t", "x", "y"))
    c = torch.rand(30, 3, dtype=torch.float64) * torch.tensor([1.0, 6.0, 1.5]) + torch.tensor([0.0, 0.0, 0.5])
    for act in ("tanh", "sin", "gelu", "silu", "sigmoid"):
        net = MLP(feats.size, 2, 12, 2, act).double()

        def f_tensor(c, net=net):
            t, x, y = c.unbind(-1)
            return net(feats(c)) * (t * y).unsqueeze(-1) + e.torch(t=t, x=x, y=y).unsqueeze(-1)

        def f_jet(c, net=net, order=4):
            cols = Jet.variables(c, order, hess=slice(1, 3))
            t, x, y = cols
            g = e.evaluate(JetBackend(), t=t, x=x, y=y)
            return net.forward_jet(feats.jet(cols)) * Jet.stack([t * y, t * y]) + Jet.stack([g, g])

        ad = AutogradDerivatives(f_tensor, c, ["u", "v"], ["t", "x", "y"])
        for order in (3, 4):
            jd = JetDerivatives(f_jet(c, order=order), ["u", "v"], ["t", "x", "y"], c)
            for field in ("u", "v"):
                for axes in [("t",), ("x", "x"), ("y", "y"), ("x",) * 3, ("y",) * 3] + ([("x",) * 4, ("y",) * 4] if order == 4 else []):
                    torch.testing.assert_close(jd(field, *axes), ad(field, *axes), rtol=1e-9, atol=1e-9)
        third = JetDerivatives(f_jet(c, order=3), ["u", "v"], ["t", "x", "y"], c)
        with pytest.raises(ValueError, match="order 4"):
            third("u", "x", "x", "x", "x")
        with pytest.raises(ValueError, match="pure derivatives"):
            third("u", "x", "y")


def test_fourth_order_jet_matches_finite_differences_of_the_forward_map():
    """The jets differentiate the function the network evaluates: central differences of the forward map agree."""
    torch.manual_seed(2)
    net = MLP(2, 1, 20, 3, "tanh").double()
    c = torch.rand(16, 2, dtype=torch.float64)
    jet = net.forward_jet(Jet.stack(Jet.variables(c, 4, slice(1, 2))))
    h = 1e-2
    shift = torch.tensor([0.0, h], dtype=torch.float64)
    f = [net(c + k * shift)[:, 0] for k in (-2, -1, 0, 1, 2)]
    d3 = (f[4] - 2 * f[3] + 2 * f[1] - f[0]) / (2 * h**3)
    d4 = (f[4] - 4 * f[3] + 6 * f[2] - 4 * f[1] + f[0]) / h**4
    torch.testing.assert_close(jet.hi[0][:, 0, 0], d3, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(jet.hi[1][:, 0, 0], d4, rtol=1e-3, atol=1e-3)
