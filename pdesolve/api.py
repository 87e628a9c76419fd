"""The Python API for scientists: load a problem, solve it, look at the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import load_run_config, python_run_config, read_yaml
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
    settings: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    quiet: bool = False,
    overwrite: bool = False,
) -> Result:
    """Solve a problem (a YAML path, or a :class:`Problem` built in Python) and return a :class:`Result`.

    ``options`` are the back-end's options (``solvers.<name>`` in YAML); ``settings`` any other keys of a
    problem file that are not the problem (``train``, ``evaluate``, ``simulate``, ``solvers``, ...; for a
    YAML path they replace the file's); ``overrides`` are ``key.path=value`` strings as on the command line.
    A Python :class:`Problem` is solved as it is, with no round trip through YAML, so its equation may be an
    :class:`~pdesolve.equations.Equation` subclass of your own (not registered). The run folder defaults to
    ``runs/<name>-<solver>-<time>``; an ``out`` folder that already holds a run is refused unless ``overwrite``.
    """
    if isinstance(problem, Problem):
        data: dict[str, Any] = dict(settings or {})
        path = f"<python:{problem.name}>"
    else:
        data, path = {**read_yaml(problem), **(settings or {})}, str(problem)
    if solver is not None:
        data["solver"] = solver
    if options:
        name = data.get("solver", "pinn")
        data["solvers"] = {**(data.get("solvers") or {})}
        data["solvers"][name] = {**(data["solvers"].get(name) or {}), **options}
    if device is not None:
        data["device"] = device
    if seed is not None:
        data["seed"] = seed
    # every override applies after the chosen solver's own `train:` section, and steps= after everything
    explicit = list(overrides) + ([f"train.steps={steps}"] if steps is not None else [])
    if isinstance(problem, Problem):
        cfg = python_run_config(problem, data, explicit)
    else:
        cfg = load_run_config(path, explicit, data=data)
    return run(cfg, out, quiet=quiet, overwrite=overwrite)
