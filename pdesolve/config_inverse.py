"""The inverse-problem part of a problem file (config edge): data-file paths made absolute, the observations read from
their file, and what an inverse problem asks of its solver and reference. ``config`` calls these; nothing else does."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .problem import Problem


def resolve_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``raw`` with the data files it names (``data.file``, a ``file`` reference's ``options.path``) made absolute,
    relative ones read from ``folder`` (the problem file's): the run folder's ``config.yaml`` then finds them too."""
    def absolute(value: Any) -> Any:
        return str((folder / value).resolve()) if isinstance(value, str) and value and not Path(value).is_absolute() else value

    out = raw
    params = raw.get("params")
    if isinstance(params, dict) and any(isinstance(v, dict) and (True in v or "true" in v) for v in params.values()):
        out = copy.deepcopy(raw)  # YAML 1.1 reads the key `true:` as the boolean True
        out["params"] = {k: ({("true_value" if key in (True, "true") else key): x for key, x in v.items()} if isinstance(v, dict) else v)
                         for k, v in params.items()}
    data = raw.get("data")
    if isinstance(data, dict) and "file" in data:
        out = copy.deepcopy(out) if out is raw else out
        out["data"]["file"] = absolute(data["file"])
    ref = raw.get("reference")
    if isinstance(ref, dict) and ref.get("kind") == "file" and isinstance(ref.get("options"), dict) and "path" in ref["options"]:
        out = copy.deepcopy(out) if out is raw else out
        out["reference"]["options"]["path"] = absolute(ref["options"]["path"])
    return out


def observations_of(spec: Any, fields: Sequence[str], names: tuple[str, ...], errors: list[str]) -> Any:
    """The problem's observations (``data:``), read from their file; None without them or after an error."""
    from .observations import DataFileError, load_observations

    if spec.data is None:
        return None
    observed = spec.data.fields if spec.data.fields is not None else list(fields)
    extra = [f for f in observed if f not in fields]
    if extra or not observed:
        errors.append(f"data.fields: expected some of the equation's fields {list(fields)}, got {observed}")
        return None
    try:
        return load_observations(spec.data.file, names, observed, spec.data.weight, spec.data.noise)
    except DataFileError as err:
        errors.append(f"data.file: {err}")
        return None


def inverse_settings(problem: Problem, solver_name: str) -> list[str]:
    """Why an inverse problem (unknown coefficients, observations) cannot run with this solver and reference (empty when
    it can): only a solver that learns coefficients takes unknowns or data; a reference needs values for the unknowns."""
    from .solvers import SOLVERS

    errors = []
    solver = SOLVERS.get(solver_name)
    learners = sorted(n for n, c in SOLVERS.items() if c.learns_coefficients)
    if solver is not None and not solver.learns_coefficients:
        for k in problem.unknowns:
            errors.append(f"params.{k}: an unknown coefficient is learned from the observations, which solver {solver_name!r} "
                          f"cannot do; use solver {' or '.join(map(repr, learners))}, or give {k} a value")
        if problem.observations is not None and not problem.unknowns:
            errors.append(f"data: solver {solver_name!r} does not fit observations; use solver {' or '.join(map(repr, learners))}")
    if problem.unknowns and problem.observations is None:
        errors.append(f"params.{next(iter(problem.unknowns))}: an unknown coefficient is learned from observations; add "
                      "data: {file: OBSERVATIONS.csv, fields: [...]}")
    ref = problem.reference
    if problem.unknowns and ref is not None and ref.kind != "file" and problem.truth() is None:
        missing = [k for k, u in problem.unknowns.items() if u.true is None]
        errors.append(f"reference: {ref.kind!r} computes the solution from the coefficients, and {missing} are unknown; give "
                      f"{', '.join(f'params.{k}.true_value' for k in missing)} (the values that made the data), use reference kind "
                      "'file', or leave the reference out")
    return errors
