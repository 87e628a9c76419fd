"""PDE families by name. Adding a PDE: one module here, one entry in EQUATIONS, one YAML in problems/.

An Equation subclass that is not registered (a user's own, in their script) works wherever a problem
takes an Equation object: it declares its faces by implementing ``forcing`` and/or ``rhs``, and its
split (:mod:`.split`) for the spectral simulators and IMEX residuals (:mod:`.time_discrete`).
"""

from __future__ import annotations

from .advection_diffusion import AdvectionDiffusion2D
from .allen_cahn import AllenCahn
from .base import Derivatives, Equation, Parameter
from .diffusion_sorption import DiffusionSorption
from .families import Burgers, Convection, ConvectionDiffusion, Heat, Reaction, ReactionDiffusion
from .kdv import KdV
from .kuramoto_sivashinsky import KuramotoSivashinsky
from .navier_stokes import NavierStokes2D
from .split import LinearPart, Nonlinear, Remainder, Split
from .steady import Darcy, Helmholtz, Poisson

EQUATIONS: dict[str, type[Equation]] = {
    cls.name: cls
    for cls in (Convection, ConvectionDiffusion, Heat, Burgers, Reaction, ReactionDiffusion)
    + (AllenCahn, KdV, KuramotoSivashinsky, DiffusionSorption, NavierStokes2D, AdvectionDiffusion2D)
    + (Poisson, Helmholtz, Darcy)
}


def get_equation(name: str) -> Equation:
    """The equation family called ``name``; an unknown name lists the valid ones."""
    try:
        return EQUATIONS[name]()
    except KeyError:
        raise KeyError(f"unknown equation {name!r}; valid equations are {sorted(EQUATIONS)}") from None


__all__ = ["EQUATIONS", "Derivatives", "Equation", "LinearPart", "Nonlinear", "Parameter", "Remainder", "Split", "get_equation"]
