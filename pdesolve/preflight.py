"""Everything a run would refuse before training, as one list of messages: ``pdesolve validate`` and ``pdesolve
solve`` / ``train`` share :func:`refusals`, so a file that validates is a file that starts training.

The configuration (:mod:`pdesolve.config`) checks each key on its own; this module checks that the pieces fit
together, by asking the pieces themselves, never by restating their rules:

- the problem as a whole (:func:`problem_refusals`): an evolution equation needs a time axis; a bounded axis
  needs boundary conditions where the equation differentiates along it; axes are Cartesian, so axis names that
  read as polar or spherical coordinates (``r``, ``theta``, ``phi``) are refused;
- the reference (:func:`reference_refusals`): the declared method is run on the first two times of the
  evaluation grid, which raises the method's own refusal (a source term it cannot handle, a simulator that does
  not take the problem, a bad option) at the cost of one short step;
- the back-end (:func:`solver_refusals`): its ``mismatches`` and ``option_mismatches`` (one message per reason),
  then the solver is built as the runner builds it (the checks its constructor makes, e.g. the hard-constraint
  solver's basis size against its width), then its task is built and the training rule checked against what the task provides
  (:func:`pdesolve.task.check_rule`).

What it cannot see: the dataset of a grid solver that trains on data (``pdesolve train --data``; checked when
the file is opened), and the process group of a distributed run (joined under ``torchrun`` only); for such a
solver the construction step is left to the run and only ``mismatches`` is checked here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, RunConfig, load_run_config, read_yaml
from .errors import UserError
from .grid import Grid, GridAxis
from .problem import Problem
from .reference import ReferenceError, reference_grid, reference_solution
from .solvers import SOLVERS
from .solvers.base import PointSolver, SolverMismatch

POLAR_NAMES = {"r": "a radius", "theta": "an angle", "phi": "an angle"}
"""Axis names that read as polar, cylindrical or spherical coordinates, which pdesolve would treat as Cartesian."""


def refusals(cfg: RunConfig, device: torch.device | None = None) -> list[str]:
    """Why ``cfg`` would be refused before training (empty when it would train), one message per mistake.

    The problem's own refusals come first; when there are any, the reference and the solver are not asked (their
    messages would only repeat the same mistake). ``device``: where the solver is built for its checks (CPU by
    default: the checks do not depend on it, and validating needs no GPU).
    """
    out = problem_refusals(cfg.problem)
    if out:
        return out
    out += device_refusals(cfg)
    out += reference_refusals(cfg)
    out += solver_refusals(cfg, device or torch.device("cpu"))
    if not out:
        for advice in advisories(cfg):
            warnings.warn(advice, stacklevel=2)
    return out


def advisories(cfg: RunConfig) -> list[str]:
    """Settings that run but are likely not what the user meant (warned, not refused): points that change under L-BFGS."""
    from .optim import AdamLBFGSOptions, LBFGSOptions
    from .solvers.pinn_options import PINNOptions

    o, rule = cfg.solver_options, cfg.optimizer_options
    out = []
    if isinstance(o, PINNOptions) and isinstance(rule, (AdamLBFGSOptions, LBFGSOptions)):
        for key, every in (("points.resample_every", o.points.resample_every), ("rar.every", o.rar.every)):
            if every:
                out.append(f"solvers.{cfg.solver}.{key}: {every} changes the collocation points while L-BFGS runs (train.optimizer "
                           f"{cfg.train.optimizer.name!r}), and L-BFGS's line search and curvature memory assume the same loss at "
                           "every step; set it to 0 for an L-BFGS phase (with time marching each window draws its own points)")
    return out


def device_refusals(cfg: RunConfig) -> list[str]:
    """The device the file asks for, where this machine has none (``device: cuda`` without a GPU)."""
    from .runner import resolve_device

    try:
        resolve_device(cfg.device)
    except UserError as err:
        return [f"device: {err}"]
    return []


def check(cfg: RunConfig) -> None:
    """Raise :class:`~pdesolve.config.ConfigError` listing :func:`refusals` of ``cfg``, if any (before any file exists)."""
    errors = refusals(cfg)
    if errors:
        raise ConfigError(cfg.path, errors)


def file_refusals(path: str | Path, solver: str | None = None, overrides: Sequence[str] = ()) -> list[str]:
    """Every error of a problem file run with ``solver`` (default: the file's), configuration errors first."""
    try:
        data = read_yaml(path)
        if solver is not None:
            data["solver"] = solver
        cfg = load_run_config(path, overrides, data=data)
    except ConfigError as err:
        return err.errors
    except UserError as err:
        return [str(err)]
    return refusals(cfg)


# ----------------------------------------------------------------------------- the problem
def problem_refusals(problem: Problem) -> list[str]:
    """What no back-end can solve: an evolution equation without time, unbounded data on bounded axes, polar names."""
    eq, dom, out = problem.equation, problem.domain, []
    for a in dom.space:
        if a.name in POLAR_NAMES:
            out.append(f"domain.{a.name}: axes are Cartesian, and {a.name!r} reads as {POLAR_NAMES[a.name]} of polar or "
                       "spherical coordinates (pdesolve adds no metric terms such as 1/r); name the axes x, y, z and write the "
                       "problem in Cartesian coordinates")
    if not eq.steady and dom.time is None:
        out.append(f"domain: the {eq.name!r} equation evolves in time (u_t = F(u)), and the domain has no time axis; add one, "
                   "e.g. domain.t: [0, 1]")
    out += boundary_refusals(problem)
    return out


def boundary_refusals(problem: Problem) -> list[str]:
    """Walls without conditions: each bounded axis needs a condition per field on both sides when the equation
    has second or higher space derivatives, on at least one side (the inflow) when it has first derivatives only
    (on a geometry: its named parts, :func:`part_refusals`)."""
    order = problem.equation.max_space_order
    if order == 0:  # a pointwise ODE at each point: no wall data enters
        return []
    if problem.domain.geometry is not None:
        return part_refusals(problem)
    out = []
    for a in problem.domain.space:
        if a.periodic:
            continue
        for f in problem.equation.fields:
            sides = {bc.side for bc in problem.boundary if bc.axis == a.name and bc.field == f}
            missing = [s for s in ("lo", "hi") if s not in sides]
            if (order >= 2 and missing) or not sides:
                which = " and ".join(f"{a.name} = {a.lo if s == 'lo' else a.hi:g} ({s})" for s in missing)
                out.append(f"boundary: axis {a.name!r} is bounded and field {f!r} has no condition at {which}, where the "
                           f"{problem.equation.name!r} equation (space derivatives of order {order}) needs one; add "
                           f"{{kind: dirichlet, axis: {a.name}, field: {f}, value: ...}} (or neumann / robin), or make the axis "
                           f"periodic (domain.{a.name}: {{bounds: [...], periodic: true}})")
    return out


def part_refusals(problem: Problem) -> list[str]:
    """Boundary parts of a geometry without conditions: every part needs one per field when the equation has second or
    higher space derivatives, some part when it has first derivatives only."""
    geometry, order, out = problem.domain.geometry, problem.equation.max_space_order, []
    assert geometry is not None
    for f in problem.equation.fields:
        held = {bc.part for bc in problem.boundary if bc.field == f and bc.part is not None}
        missing = [p for p in geometry.parts if p not in held]
        if (order >= 2 and missing) or not held:
            out.append(f"boundary: field {f!r} has no condition on the boundary part(s) {missing} of the geometry, where the "
                       f"{problem.equation.name!r} equation (space derivatives of order {order}) needs one; add "
                       f"{{kind: dirichlet, part: {missing[0]}, field: {f}, value: ...}} (or neumann / robin)")
    return out


# ----------------------------------------------------------------------------- the reference
def probe_grid(cfg: RunConfig) -> Grid:
    """The evaluation grid's space axes with its first two times: enough for a reference to accept or refuse."""
    grid = cfg.problem.domain.grid(cfg.eval_grid)
    if grid.time is None:
        return grid
    t = grid.time
    return Grid(grid.space, GridAxis("t", t.lo, t.lo + t.spacing, 2))


def reference_refusals(cfg: RunConfig) -> list[str]:
    """The declared reference's own refusal of the problem (of a family's first held-out member), if any."""
    problem = cfg.problem
    if problem.reference is None:
        return []
    if problem.is_family:
        if not cfg.eval_params:
            return []
        problem = problem.member(cfg.eval_params[0])
    own = reference_grid(problem)  # data on a file's grid are computed there only (and were read at validation)
    try:
        reference_solution(problem, own if own is not None else probe_grid(cfg))
    except ReferenceError as err:
        return [f"reference: {problem.reference.kind!r} cannot be computed for this problem: {err}"]  # type: ignore[union-attr]
    return []


# ----------------------------------------------------------------------------- the back-end
def solver_refusals(cfg: RunConfig, device: torch.device) -> list[str]:
    """The back-end's refusals: its mismatches with the problem, its construction, its task against the rule."""
    from .optim import make_optimizer
    from .runner import family_of
    from .task import RuleMismatch, check_rule

    name, cls = cfg.solver, SOLVERS[cfg.solver]
    reasons = [f"solver: {name!r} cannot solve problem {cfg.problem.name!r}: {r}" for r in cls.mismatches(cfg.problem)]
    reasons += cls.option_mismatches(cfg.problem, cfg.solver_options)
    if reasons:
        return reasons
    if cls.distributed(cfg.solver_options):
        return []  # built under torchrun only (the process group is the run's); see the module docstring
    try:
        solver = cls(cfg.problem, cfg.solver_options, device, family=family_of(cfg))  # type: ignore[arg-type]
    except (SolverMismatch, UserError) as err:
        text = str(err)
        return [text if text.startswith("solver") else f"solvers.{name}: {text}"]
    if not isinstance(solver, PointSolver):
        return []  # grid solvers: their task needs the dataset or the simulated family (built by the run)
    try:
        rule = make_optimizer(cfg.train.optimizer.name, cfg.optimizer_options, cfg.train.steps)  # type: ignore[arg-type]
        check_rule(rule, solver.task(_no_metrics))
    except (RuleMismatch, SolverMismatch, UserError) as err:
        return [f"train.optimizer: {err}"]
    return []


def _no_metrics() -> dict[str, Any]:
    return {}


__all__ = ["POLAR_NAMES", "check", "file_refusals", "problem_refusals", "reference_refusals", "refusals", "solver_refusals"]
