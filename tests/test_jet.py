"""Forward-mode jets agree with nested reverse-mode autograd."""

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
