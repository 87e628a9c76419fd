"""PDE families by name. Adding a PDE: one module here, one entry in EQUATIONS, one YAML in problems/."""

from __future__ import annotations

from .base import Derivatives, Equation, Parameter
from .families import Burgers, Convection, ConvectionDiffusion, Heat, Reaction, ReactionDiffusion

EQUATIONS: dict[str, type[Equation]] = {
    cls.name: cls for cls in (Convection, ConvectionDiffusion, Heat, Burgers, Reaction, ReactionDiffusion)
}


def get_equation(name: str) -> Equation:
    """The equation family called ``name``; an unknown name lists the valid ones."""
    try:
        return EQUATIONS[name]()
    except KeyError:
        raise KeyError(f"unknown equation {name!r}; valid equations are {sorted(EQUATIONS)}") from None


__all__ = ["EQUATIONS", "Derivatives", "Equation", "Parameter", "get_equation"]
