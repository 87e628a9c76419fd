"""The PINN's training methods on the hard-constraint solvers (issue 17): each builds and trains with the conditions
still exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pdesolve.config import load_run_config
from pdesolve.nn.features import FourierFeatures
from pdesolve.nn.gated import ModifiedMLP, PirateNet
from pdesolve.nn.rwf import FactorizedLinear
from pdesolve.nn.shallow import ParallelMLP, ResidualMLP
from pdesolve.optim import make_optimizer
from pdesolve.solvers.hc import HC
from pdesolve.train import TrainSettings, train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
HEAT = ROOT / "problems" / "heat.yaml"
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


def test_the_methods_run_in_the_family_setting():
    """The sensors enter beside the (Fourier) coordinate features."""
    family = {"train": 4, "test": 1, "batch": 2, "sensors": 4, "parameters": {"initial.u": [0.0, 0.2]}}
    solver = build(HC, {"family": family, "network": "piratenet", "fourier_features": {"count": 4}})
    assert solver.model.basis.net.encode_u.in_features == 2 + 8 + 4
    result = steps(solver, 3)
    assert result.status.ok and np.isfinite([h["loss"] for h in result.history]).all()
    grid = solver.problem.domain.grid({"t": 5, "x": 9})
    assert np.isfinite(solver.predict_family(grid, "test")).all()
