"""Back-ends by name. ``SOLVERS[name]`` is a :class:`Solver` subclass with its ``Options`` model."""

from __future__ import annotations

from .base import Solver, SolverMismatch
from .hc import HC, MoEHC
from .hyper_pinn import HyperPINN
from .lpinn import LPINN
from .pinn import PINN
from .sinenet import SineNetSolver
from .stagger import StaggerSolver

SOLVERS: dict[str, type[Solver]] = {
    "pinn": PINN,
    "hc": HC,
    "moe_hc": MoEHC,
    "sinenet": SineNetSolver,
    "lpinn": LPINN,
    "stagger": StaggerSolver,
    "hyper_pinn": HyperPINN,
}


def get_solver(name: str) -> type[Solver]:
    if name not in SOLVERS:
        raise KeyError(f"unknown solver {name!r}; valid solvers are {sorted(SOLVERS)}")
    return SOLVERS[name]


__all__ = ["SOLVERS", "Solver", "SolverMismatch", "get_solver"]
