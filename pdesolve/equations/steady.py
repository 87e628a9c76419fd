"""Steady (elliptic) families: ``0 = F(u) + source`` on a domain without a time axis.

- ``poisson``: ``-Laplacian u = f``, so ``F = Laplacian u`` (1D to 3D);
- ``helmholtz``: ``-Laplacian u - k^2 u = f``, so ``F = Laplacian u + k^2 u``;
- ``darcy``: ``-div(K grad u) = f`` with a permeability ``K(x) > 0`` given as an expression of the coordinates
  (``functions: {K: "1 + 0.5*sin(pi*x)*sin(pi*y)"}``), so ``F = K Laplacian u + grad K . grad u``.

``f`` is the problem's ``source``. Both faces: at points (the PINN's jets; K and grad K by autograd on the exact
expression, so no finite-difference error enters the pointwise residual) and on a grid (second-order differences of
:meth:`pdesolve.grid.Grid.diff`, K and grad K evaluated exactly at the nodes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .base import Derivatives, Equation, Parameter, laplacian_grid, laplacian_points

_DIMS = (1, 2, 3)


def _col(x: Any) -> Any:
    return x.unsqueeze(-1)


class Poisson(Equation):
    """Poisson ``-Laplacian u = f``."""

    name = "poisson"
    steady = True
    dims = _DIMS

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        return _col(laplacian_points(d, "u"))

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        return laplacian_grid(u, grid)


class Helmholtz(Equation):
    """Helmholtz ``-Laplacian u - k^2 u = f`` (wavenumber ``k``)."""

    name = "helmholtz"
    steady = True
    dims = _DIMS
    parameters = {"k": Parameter(None, 0.0, doc="a wavenumber cannot be negative")}

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        return _col(laplacian_points(d, "u") + p["k"] ** 2 * d("u"))

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        return laplacian_grid(u, grid) + p["k"] ** 2 * u


def value_and_gradient(expr: Any, coords: Mapping[str, torch.Tensor], axes: tuple[str, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """An expression of the coordinates and its gradient along ``axes`` at points ``coords`` (name -> arrays of one
    shape), by forward-mode differentiation of the expression itself (exact, elementwise; it holds no trained parameter,
    and works inside other function transforms such as the ``sparse_fd`` reference's Jacobian products)."""
    env = {n: c.detach().clone() for n, c in coords.items() if n in expr.variables}  # own memory (meshes are views)
    like = next(iter(coords.values())).detach()
    k = expr.torch(**env) if env else expr.torch(x=like) * 0 + expr.torch()
    grads = []
    for a in axes:
        if a not in env or not expr.depends_on(a):
            grads.append(torch.zeros_like(like))
            continue
        _, g = torch.func.jvp(lambda xa, a=a: expr.torch(**{**env, a: xa}), (env[a],), (torch.ones_like(env[a]),))
        grads.append(g)
    return k.expand(like.shape), grads


class Darcy(Equation):
    """Darcy flow ``-div(K grad u) = f`` with a spatially varying permeability ``K(x) > 0``."""

    name = "darcy"
    steady = True
    dims = _DIMS
    functions = {"K": "the permeability, > 0 on the domain"}

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        coords = {a: d.coord(a) for a in d.space}
        k, grad_k = value_and_gradient(self.function("K"), coords, d.space)
        flux_div = k * laplacian_points(d, "u") + sum(g * d("u", a) for g, a in zip(grad_k, d.space))
        return _col(flux_div)

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        names = tuple(a.name for a in grid.space)
        mesh = torch.meshgrid(*(torch.as_tensor(a.coords, dtype=u.dtype, device=u.device) for a in grid.space), indexing="ij")
        k, grad_k = value_and_gradient(self.function("K"), dict(zip(names, mesh)), names)
        return k * laplacian_grid(u, grid) + sum(g * grid.diff(u, a) for g, a in zip(grad_k, names))

    def function_errors(self, coords: Mapping[str, Any]) -> list[tuple[str, str]]:
        found = super().function_errors(coords)
        if found or "K" not in self.bound_functions:
            return found
        expr = self.function("K")
        with np.errstate(all="ignore"):
            values = np.broadcast_to(expr.numpy(**{k: v for k, v in coords.items() if k in expr.variables}),
                                     np.broadcast_shapes(*(np.shape(v) for v in coords.values())))
        if values.min() <= 0:
            i = int(values.argmin())
            at = {k: round(float(np.broadcast_to(v, values.shape).flat[i]), 6) for k, v in coords.items()}
            found.append(("K", f"{expr.text!r} must be > 0 on the domain; it is {values.flat[i]:.4g} at {at}"))
        return found
