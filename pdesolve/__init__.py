"""pdesolve: physics-informed PDE solvers that share one problem/mesh abstraction.

    import pdesolve as ps
    problem = ps.load_problem("problems/burgers.yaml")
    result = ps.solve(problem, solver="pinn", steps=2000)
    result.metrics["rel_l2"]; result.plot()

Importing is cheap and silent: the names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_problem": "pdesolve.config",
    "load_run_config": "pdesolve.config",
    "validate_file": "pdesolve.config",
    "solve": "pdesolve.api",
    "Problem": "pdesolve.problem",
    "Domain": "pdesolve.problem",
    "Axis": "pdesolve.problem",
    "InitialCondition": "pdesolve.problem",
    "BoundaryCondition": "pdesolve.problem",
    "Reference": "pdesolve.problem",
    "Grid": "pdesolve.grid",
    "GridAxis": "pdesolve.grid",
    "Solution": "pdesolve.solution",
    "Expression": "pdesolve.expr",
    "EQUATIONS": "pdesolve.equations",
    "get_equation": "pdesolve.equations",
    "SOLVERS": "pdesolve.solvers",
    "OPTIMIZERS": "pdesolve.optim",
    "reference_solution": "pdesolve.reference",
    "Result": "pdesolve.runner",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pdesolve' has no attribute {name!r}")
