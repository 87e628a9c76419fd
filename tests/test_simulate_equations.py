"""The new equation families: the pointwise face (autograd) and the grid face agree, and the NS simulator's
packed-FFT right-hand side equals the equation's advective-form ``rhs``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdesolve.equations import get_equation
from pdesolve.grid import Grid, GridAxis
from pdesolve.nn.jet import AutogradDerivatives
from pdesolve.simulate.ns2d import VorticityStepper

L = 2 * math.pi


def field_1d(c: torch.Tensor) -> torch.Tensor:
    x = c[:, 1]
    return (0.5 + 0.2 * torch.sin(x) + 0.1 * torch.cos(2 * x)).unsqueeze(-1)  # positive: R(u) is singular at 0


def field_2d(c: torch.Tensor) -> torch.Tensor:
    x, y = c[:, 1], c[:, 2]
    return (0.4 + 0.3 * torch.sin(x) * torch.cos(2 * y) + 0.1 * torch.cos(x + y)).unsqueeze(-1)


CASES = [
    ("allen_cahn", {"eps": 0.01, "rho": 2.0}, 1),
    ("kdv", {"alpha": 1.5, "delta": 0.02}, 1),
    ("diffusion_sorption", {"D": 5e-4, "porosity": 0.29, "rho_s": 2880.0, "k_f": 3.5e-4, "n_f": 0.874}, 1),
    ("advection_diffusion", {"kappa": 0.05, "cx": 0.3, "cy": -0.2, "amplitude": 0.7, "k": 1.0}, 2),
]


@pytest.mark.parametrize("name,params,dim", CASES, ids=[c[0] for c in CASES])
def test_pointwise_and_grid_faces_agree(name, params, dim):
    eq = get_equation(name)
    p = {**{k: s.default for k, s in eq.parameters.items() if s.default is not None}, **params}
    n = 64
    grid = Grid(tuple(GridAxis(a, 0.0, L, n, True) for a in "xy"[:dim]))
    mesh = np.meshgrid(*(a.coords for a in grid.space), indexing="ij")
    coords = torch.tensor(np.stack([np.zeros(mesh[0].size)] + [m.reshape(-1) for m in mesh], axis=1))
    model = field_1d if dim == 1 else field_2d
    d = AutogradDerivatives(model, coords, eq.fields, ("t",) + tuple("xy"[:dim]))
    pointwise = eq.forcing(d, p)[:, 0].detach().reshape(grid.space_shape)
    u = model(coords)[:, 0].detach().reshape((1, 1) + grid.space_shape)
    on_grid = eq.rhs(u, grid, p)[0, 0]
    assert torch.allclose(pointwise, on_grid, atol=1e-10 * max(1.0, float(on_grid.abs().max())))


def test_navier_stokes_stepper_rhs_equals_the_equation_rhs():
    eq = get_equation("navier_stokes")
    grid = Grid((GridAxis("x", 0.0, L, 32, True), GridAxis("y", 0.0, L, 48, True)))
    p = {"nu": 0.01, "drag": 0.1, "forcing": 0.5, "forcing_k": 2.0}
    m = grid.mesh()
    w = torch.tensor(np.sin(m["x"]) * np.cos(2 * m["y"]) + 0.5 * np.cos(3 * m["x"] + m["y"]))[None, None]
    stepper = VorticityStepper(grid, {k: torch.tensor([v], dtype=torch.float64) for k, v in p.items()}, torch.device("cpu"))
    w_hat = torch.fft.rfft2(w[:, 0])
    packed = torch.fft.irfft2(stepper.nonlinear(w_hat) + stepper.f_hat + stepper.L * w_hat, s=grid.space_shape)
    assert torch.allclose(packed, eq.rhs(w, grid, p)[:, 0], atol=1e-11)  # band-limited w: the 2/3 rule cuts nothing


def test_vorticity_has_no_pointwise_face():
    eq = get_equation("navier_stokes")
    assert not eq.pointwise and eq.grid_form  # derived from what the class implements
    with pytest.raises(NotImplementedError, match="no pointwise face"):
        eq.forcing(None, {"nu": 0.1})
