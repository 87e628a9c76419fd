"""Allen-Cahn: phase separation with a double-well reaction, ``u_t = eps u_xx + rho (u - u^3)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Derivatives, Equation, Parameter
from .split import LinearPart, Nonlinear, Split


class AllenCahn(Equation):
    """``u_t = eps u_xx + rho (u - u^3)`` (the PINN benchmark uses eps = 1e-4, rho = 5 on [-1, 1])."""

    name = "allen_cahn"
    parameters = {
        "eps": Parameter(None, 0.0, doc="a diffusivity cannot be negative"),
        "rho": Parameter(1.0, 0.0, doc="a reaction rate cannot be negative"),
    }
    linear = False

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        u = d("u")
        return (p["eps"] * d("u", d.space[0], d.space[0]) + p["rho"] * (u - u**3)).unsqueeze(-1)

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        return p["eps"] * grid.diff(u, grid.space[0].name, 2) + p["rho"] * (u - u**3)

    def split(self, p: Mapping[str, Any]) -> Split:
        rho = p["rho"]
        return Split(
            LinearPart(diffusion=p["eps"], growth=rho),
            Nonlinear(lambda u: -rho * u**3, 0, lambda umax, kmax: 3 * rho * max(umax, 1.0) ** 2),
        )
