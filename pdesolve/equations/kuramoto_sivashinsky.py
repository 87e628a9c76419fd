"""Kuramoto-Sivashinsky: chaotic flame fronts, ``u_t + alpha u u_x + beta u_xx + gamma u_xxxx = 0``.

Long waves grow (the anti-diffusion ``beta u_xx``), short waves are damped (the hyperdiffusion
``gamma u_xxxx``) and the nonlinearity carries energy between them. The PINN benchmark of Wang, Sankaran and
Perdikaris ("Respecting causality", 2022; JAX-PI) uses alpha = 100/16, beta = 100/16^2, gamma = 100/16^4 on
x in [0, 2 pi] (periodic), t in [0, 1], u0 = cos(x) (1 + sin(x)); its data were made by ETDRK4, as here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Derivatives, Equation, Parameter
from .split import LinearPart, Nonlinear, Split


class KuramotoSivashinsky(Equation):
    """``u_t = -alpha u u_x - beta u_xx - gamma u_xxxx`` on one periodic space axis."""

    name = "kuramoto_sivashinsky"
    parameters = {
        "alpha": Parameter(100 / 16, doc="nonlinear advection coefficient"),
        "beta": Parameter(100 / 16**2, 0.0, doc="anti-diffusion coefficient (long waves grow); cannot be negative"),
        "gamma": Parameter(100 / 16**4, 0.0, strict=True, doc="hyperdiffusion coefficient (short waves decay); must be positive"),
    }
    linear = False
    max_space_order = 4

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        x = d.space[0]
        u = d("u")
        return (-p["alpha"] * u * d("u", x) - p["beta"] * d("u", x, x) - p["gamma"] * d("u", x, x, x, x)).unsqueeze(-1)

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        x = grid.space[0].name
        return -0.5 * p["alpha"] * grid.diff(u * u, x) - p["beta"] * grid.diff(u, x, 2) - p["gamma"] * grid.diff(u, x, 4)

    def velocity(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        return p["alpha"] * d("u")

    def split(self, p: Mapping[str, Any]) -> Split:
        alpha = p["alpha"]
        return Split(
            LinearPart(diffusion=-p["beta"], hyperdiffusion=p["gamma"]),
            Nonlinear(lambda u: -0.5 * alpha * u * u, 1, lambda umax, kmax: abs(alpha) * umax * kmax),
        )
