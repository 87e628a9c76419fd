"""The scalar transport / diffusion / reaction families of the foundation.

Each class reads like its equation: ``forcing`` is the right-hand side F of ``u_t = F`` at points, ``rhs``
the same F on a grid, and ``split`` its stiff constant-coefficient linear part and the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .base import Derivatives, Equation, Parameter, laplacian_grid, laplacian_points
from .split import LinearPart, Nonlinear, Split

_NU = Parameter(None, 0.0, doc="a viscosity / diffusivity cannot be negative")
_BETA = Parameter(None, doc="transport speed")
_RHO = Parameter(None, 0.0, doc="a reaction rate cannot be negative")


def _col(x: Any) -> Any:
    return x.unsqueeze(-1)


class Convection(Equation):
    """Linear advection ``u_t + beta u_x = 0``."""

    name = "convection"
    parameters = {"beta": _BETA}

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        return _col(-p["beta"] * d("u", d.space[0]))

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        return -p["beta"] * grid.diff(u, grid.space[0].name)

    def velocity(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        return torch.full_like(d("u"), p["beta"])

    def split(self, p: Mapping[str, Any]) -> Split:
        return Split(LinearPart(advection=(p["beta"],)))


class ConvectionDiffusion(Equation):
    """``u_t + beta u_x = nu u_xx``."""

    name = "convection_diffusion"
    parameters = {"beta": _BETA, "nu": _NU}

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        x = d.space[0]
        return _col(-p["beta"] * d("u", x) + p["nu"] * d("u", x, x))

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        x = grid.space[0].name
        return -p["beta"] * grid.diff(u, x) + p["nu"] * grid.diff(u, x, 2)

    def velocity(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        return torch.full_like(d("u"), p["beta"])

    def split(self, p: Mapping[str, Any]) -> Split:
        return Split(LinearPart(advection=(p["beta"],), diffusion=p["nu"]))


class Heat(Equation):
    """Heat / diffusion ``u_t = nu Laplacian(u)`` in one to three space dimensions."""

    name = "heat"
    parameters = {"nu": _NU}
    dims = (1, 2, 3)

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        return _col(p["nu"] * laplacian_points(d, "u"))

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        return p["nu"] * laplacian_grid(u, grid)

    def split(self, p: Mapping[str, Any]) -> Split:
        return Split(LinearPart(diffusion=p["nu"]))


class Burgers(Equation):
    """Viscous Burgers ``u_t + u u_x = nu u_xx``."""

    name = "burgers"
    parameters = {"nu": _NU}
    linear = False

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        x = d.space[0]
        return _col(-d("u") * d("u", x) + p["nu"] * d("u", x, x))

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        x = grid.space[0].name
        return -0.5 * grid.diff(u * u, x) + p["nu"] * grid.diff(u, x, 2)

    def velocity(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        return d("u")

    def split(self, p: Mapping[str, Any]) -> Split:
        return Split(LinearPart(diffusion=p["nu"]), Nonlinear(lambda u: -0.5 * u * u, 1, lambda umax, kmax: umax * kmax))


class Reaction(Equation):
    """Logistic reaction ``u_t = rho u (1 - u)`` (an ODE at every point)."""

    name = "reaction"
    parameters = {"rho": _RHO}
    linear = False
    max_space_order = 0
    dims = (1, 2, 3)

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        u = d("u")
        return _col(p["rho"] * u * (1 - u))

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        return p["rho"] * u * (1 - u)

    def split(self, p: Mapping[str, Any]) -> Split:
        rho = p["rho"]
        return Split(LinearPart(growth=rho), Nonlinear(lambda u: -rho * u * u, 0, lambda umax, kmax: 2 * rho * max(umax, 1.0)))


class ReactionDiffusion(Equation):
    """Fisher-KPP ``u_t = nu u_xx + rho u (1 - u)``."""

    name = "reaction_diffusion"
    parameters = {"nu": _NU, "rho": _RHO}
    linear = False

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        x = d.space[0]
        u = d("u")
        return _col(p["nu"] * d("u", x, x) + p["rho"] * u * (1 - u))

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        return p["nu"] * grid.diff(u, grid.space[0].name, 2) + p["rho"] * u * (1 - u)

    def split(self, p: Mapping[str, Any]) -> Split:
        rho = p["rho"]
        return Split(
            LinearPart(diffusion=p["nu"], growth=rho),
            Nonlinear(lambda u: -rho * u * u, 0, lambda umax, kmax: 2 * rho * max(umax, 1.0)),
        )
