"""Diffusion with Freundlich sorption (the PDEBench 1D diffusion-sorption problem).

``u_t = D / R(u) u_xx`` with the retardation factor ``R(u) = 1 + (1 - phi)/phi rho_s k_f n_f u^(n_f - 1)``.
Equivalently the total (dissolved + sorbed) concentration ``c(u) = u + (1 - phi)/phi rho_s k_f u^n_f``
obeys the conservation law ``c_t = D u_xx``, which is what the finite-volume simulator integrates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Derivatives, Equation, Parameter


def sorption_coefficient(p: Mapping[str, float]) -> float:
    """``a = (1 - phi)/phi rho_s k_f``: the sorbed mass per pore volume is ``a u^n_f``."""
    return (1 - p["porosity"]) / p["porosity"] * p["rho_s"] * p["k_f"]


def retardation(u: Any, p: Mapping[str, float]) -> Any:
    """``R(u) = 1 + a n_f u^(n_f - 1)``; infinite at u = 0 for n_f < 1 (the isotherm is vertical there)."""
    return 1 + sorption_coefficient(p) * p["n_f"] * u ** (p["n_f"] - 1)


class DiffusionSorption(Equation):
    """``u_t = D / R(u) u_xx`` on a bounded axis; defaults are PDEBench's constants."""

    name = "diffusion_sorption"
    parameters = {
        "D": Parameter(5e-4, 0.0, strict=True, doc="a diffusion coefficient must be positive"),
        "porosity": Parameter(0.29, 0.0, strict=True, doc="a porosity must be positive"),
        "rho_s": Parameter(2880.0, 0.0, doc="a bulk density cannot be negative"),
        "k_f": Parameter(3.5e-4, 0.0, doc="a Freundlich coefficient cannot be negative"),
        "n_f": Parameter(0.874, 0.0, strict=True, doc="a Freundlich exponent must be positive"),
    }
    linear = False

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        x = d.space[0]
        return (p["D"] * d("u", x, x) / retardation(d("u"), p)).unsqueeze(-1)

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        return p["D"] * grid.diff(u, grid.space[0].name, 2) / retardation(u, p)
