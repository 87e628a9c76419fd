"""The Python API for scientists: load a problem, solve it, look at the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import apply_overrides, load_run_config, read_yaml
from .problem import Problem
from .runner import Result, run


def solve(
    problem: Problem | str | Path,
    solver: str | None = None,
    *,
    steps: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    quiet: bool = False,
) -> Result:
    """Solve a problem (a YAML path, or a :class:`Problem` built in Python) and return a :class:`Result`.

    ``options`` are the back-end's options (``solvers.<name>`` in YAML); ``overrides`` are
    ``key.path=value`` strings as on the command line. The run folder defaults to ``runs/<name>-<solver>-<time>``.
    """
    if isinstance(problem, Problem):
        raw = problem_to_dict(problem)
        path = f"<python:{problem.name}>"
    else:
        raw, path = read_yaml(problem), str(problem)
    raw = apply_overrides(raw, list(overrides), path)
    if solver is not None:
        raw["solver"] = solver
    if options:
        name = raw.get("solver", "pinn")
        raw.setdefault("solvers", {})
        raw["solvers"][name] = {**(raw["solvers"].get(name) or {}), **options}
    if device is not None:
        raw["device"] = device
    if seed is not None:
        raw["seed"] = seed
    # train settings given here outrank the chosen solver's own `train:` section: they are applied after it
    explicit = [o for o in overrides if o.split("=", 1)[0].strip().split(".")[0] == "train"]
    explicit += [f"train.steps={steps}"] if steps is not None else []
    return run(load_run_config(path, explicit, data=raw), out, quiet=quiet)


def problem_to_dict(problem: Problem) -> dict[str, Any]:
    """The YAML form of a Problem (the inverse of the problem-file schema)."""
    dom = problem.domain
    domain: dict[str, Any] = {a.name: ({"bounds": [a.lo, a.hi], "periodic": True} if a.periodic else [a.lo, a.hi]) for a in dom.space}
    if dom.time is not None:
        domain["t"] = list(dom.time)
    out: dict[str, Any] = {"name": problem.name, "equation": problem.equation.name, "params": dict(problem.params), "domain": domain}
    if problem.initial is not None:
        out["initial"] = {k: e.text for k, e in problem.initial.values.items()}
    out["boundary"] = [
        {"kind": bc.kind, "axis": bc.axis, "side": bc.side, "value": bc.value.text, "field": bc.field, "alpha": bc.alpha, "beta": bc.beta}
        for bc in problem.boundary
    ]
    if problem.source is not None:
        out["source"] = problem.source.text
    if problem.reference is not None:
        out["reference"] = {"kind": problem.reference.kind, "options": dict(problem.reference.options)}
    return out
