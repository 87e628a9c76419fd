"""Korteweg-de Vries: nonlinear steepening balanced by dispersion, ``u_t + alpha u u_x + delta u_xxx = 0``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .base import Derivatives, Equation, Parameter
from .split import LinearPart, Nonlinear, Split


class KdV(Equation):
    """``u_t + alpha u u_x + delta u_xxx = 0``; a soliton of speed c is ``(3c/alpha) sech^2(sqrt(c/delta)/2 (x - ct))``."""

    name = "kdv"
    parameters = {
        "alpha": Parameter(1.0, doc="nonlinear steepening coefficient"),
        "delta": Parameter(None, doc="dispersion coefficient"),
    }
    linear = False
    max_space_order = 3

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        x = d.space[0]
        return (-p["alpha"] * d("u") * d("u", x) - p["delta"] * d("u", x, x, x)).unsqueeze(-1)

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        x = grid.space[0].name
        return -0.5 * p["alpha"] * grid.diff(u * u, x) - p["delta"] * grid.diff(u, x, 3)

    def velocity(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        return p["alpha"] * d("u")

    def split(self, p: Mapping[str, Any]) -> Split:
        alpha = p["alpha"]
        return Split(
            LinearPart(dispersion=p["delta"]),
            Nonlinear(lambda u: -0.5 * alpha * u * u, 1, lambda umax, kmax: abs(alpha) * umax * kmax),
        )


def soliton(x: Any, t: Any, speed: float, alpha: float, delta: float, x0: float = 0.0) -> Any:
    """The travelling soliton ``(3c/alpha) sech^2(sqrt(c/delta)/2 (x - x0 - c t))`` on numpy arrays."""
    import numpy as np

    z = 0.5 * math.sqrt(speed / delta) * (np.asarray(x) - x0 - speed * np.asarray(t))
    return (3 * speed / alpha) / np.cosh(z) ** 2
