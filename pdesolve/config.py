"""YAML problem files -> typed objects, with every error reported at once.

Configuration stops here: the library below takes a :class:`Problem`, options models and settings,
never a dict. Each error names the file, the key path and what was expected; an unknown key or name
comes with a did-you-mean or the list of valid names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from .config_inverse import inverse_settings, observations_of, resolve_paths
from .config_messages import unknown_name, validation_errors
from .equations import EQUATIONS, Equation, get_equation
from .equations.expression import EquationDefinitionError, ExpressionEquation
from .errors import UserError
from .expr import ExpressionError, constant
from .problem import Axis, BoundaryCondition, Domain, InitialCondition, ParameterRange, Problem, ProblemError, Reference, Unknown

Number = float | str  # a number or a constant expression such as "0.01/pi"
PYTHON_EQUATION = "python:"  # how a run folder's config.yaml names an equation class defined in a user's script


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AxisSpec(_Strict):
    bounds: tuple[Number, Number]
    periodic: bool = False


class BoundarySpec(_Strict):
    kind: Literal["dirichlet", "neumann", "robin", "periodic"]
    axis: str | None = None  # a face of the box (with side), or
    part: str | None = None  # a named boundary part of the domain's geometry
    side: Literal["lo", "hi", "both"] = "both"
    value: Number = 0.0
    field: str = "u"
    alpha: float = 1.0
    beta: float = 0.0


class ReferenceSpec(_Strict):
    kind: str
    options: dict[str, Any] = {}


class RangeSpec(_Strict):
    """A parameter of a parametric family: ``params: {beta: {range: [1, 30]}}`` (``scale: log`` for a decade range)."""

    range: tuple[Number, Number]
    scale: Literal["linear", "log"] = "linear"


class UnknownSpec(_Strict):
    """A coefficient learned from the observations (an inverse problem): ``params: {nu: {unknown: true, initial: 0.05}}``."""

    unknown: Literal[True]
    initial: Number = Field(..., description="the value the learning starts from")
    minimum: Number | None = Field(None, description="with maximum: a box the value is learned in (through a sigmoid)")
    maximum: Number | None = None
    true_value: Number | None = Field(None, description="the value that made the data, when known: references use it and "
                                      "metrics report the recovered value's error (a bare `true:` key, which YAML reads as a "
                                      "boolean, is taken as this key)")
    scale: Literal["linear", "log"] | None = Field(None, description="log: learned through its logarithm (positive values); "
                                                   "default: log where the equation requires the coefficient >= 0")


UNKNOWN_KEYS = ("initial", "minimum", "maximum", "true_value")  # UnknownSpec's numbers, in Unknown's field order


def _parameter_kind(value: Any) -> str:
    """Which form a ``params`` entry takes: a value, a range (a parametric family) or an unknown (an inverse problem)."""
    if isinstance(value, dict):
        return "UnknownSpec" if "unknown" in value else "RangeSpec"
    return {RangeSpec: "RangeSpec", UnknownSpec: "UnknownSpec"}.get(type(value), "float | str")


# a tagged union: a mistake in one form is reported for that form only (the tags name the classes, which the messages drop)
ParameterSpec = Annotated[Annotated[Number, Tag("float | str")] | Annotated[RangeSpec, Tag("RangeSpec")]
                          | Annotated[UnknownSpec, Tag("UnknownSpec")], Discriminator(_parameter_kind)]


class DataSpec(_Strict):
    """Observations of the fields: ``data: {file: obs.csv, fields: [u], noise: 0.01, weight: 1.0}``.

    The file (CSV with a header row, HDF5 with a dataset per column, npz or mat with an array per column) has one
    coordinate column per axis of the domain (``t``, ``x``, ...) and one value column per observed field. A relative
    path is read from the problem file's folder.
    """

    file: str
    fields: list[str] | None = Field(None, description="the observed fields (default: every field of the equation)")
    noise: float | None = Field(None, ge=0, description="the stated standard deviation of the measurement noise")
    weight: float = Field(1.0, gt=0, description="the weight of the data misfit in the loss")


class DrawSpec(_Strict):
    """Held-out members of a parametric family drawn at random: uniform in each range's scale, from their own seed."""

    count: int = Field(8, gt=0)
    seed: int = 0


class EvaluateSpec(_Strict):
    grid: dict[str, int] = Field(..., description="points per axis of the evaluation grid, e.g. {t: 101, x: 256}")
    params: dict[str, list[Number]] | None = Field(None, description="held-out values of each ranged parameter of a parametric "
                                                   "family (member i takes the i-th value of every list)")
    draw: DrawSpec | None = Field(None, description="held-out members of a parametric family drawn at random (default: 8, seed 0)")


class OptimizerSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = "adam"


class TrainSpec(_Strict):
    steps: int = Field(5000, ge=0)
    optimizer: OptimizerSpec = OptimizerSpec()
    eval_every: int = Field(0, ge=0)
    checkpoint_every: int = Field(1000, ge=0)
    log_every: int = Field(10, ge=1)


class RunSettingsFile(_Strict):
    """The keys of a problem file that are not the problem: how to solve it (also the Python API's settings)."""

    evaluate: EvaluateSpec | None = None
    simulate: dict[str, Any] | None = None
    solver: str = "pinn"
    solvers: dict[str, dict[str, Any]] = {}
    train: TrainSpec = TrainSpec()
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "auto"


RUN_NAME = r"^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,100}$"  # a name that makes a file or folder name, nothing more


def check_run_name(value: str) -> str:
    """A problem's or study's ``name``: it names run folders and files, so it must stay one path component."""
    if not re.fullmatch(RUN_NAME, value):
        raise ValueError("expected 1 to 100 letters, digits, '_', '-' or '.' (it names the run folder: no '/', spaces or '..')")
    return value


class ProblemFile(RunSettingsFile):
    """The schema of a problem file (``problems/*.yaml``): the problem and :class:`RunSettingsFile`."""

    name: Annotated[str, AfterValidator(check_run_name)]
    description: str = ""
    equation: str | dict[str, Any] = Field(..., description="a registered equation's name, or an equation written as expressions: "
                                           "{fields: [u], u_t: F} or {fields: [u, v], residual: [R_u, R_v]}")
    params: dict[str, ParameterSpec] = {}
    data: DataSpec | None = None
    domain: dict[str, tuple[Number, Number] | AxisSpec | dict[str, Any]]  # a dict: the geometry (or a mistyped axis)
    initial: dict[str, Number] | None = None
    boundary: list[BoundarySpec] = []
    source: Number | None = None
    functions: dict[str, Number] = Field({}, description="coefficient functions of the space coordinates the equation reads, "
                                         "e.g. darcy's permeability {K: '1 + 0.5*sin(pi*x)*sin(pi*y)'}")
    reference: str | ReferenceSpec | None = None


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, typed. ``raw`` is the resolved file content, enough to reproduce it."""

    path: str
    problem: Problem
    solver: str
    solver_options: BaseModel
    train: TrainSpec
    optimizer_options: BaseModel
    eval_grid: dict[str, int]
    seed: int
    device: str
    raw: dict[str, Any]
    simulate: Any = None
    eval_params: tuple[dict[str, float], ...] = ()  # the held-out members of a parametric family (empty otherwise)


class ConfigError(UserError):
    """One or more errors in a problem file; ``errors`` holds each message."""

    def __init__(self, path: str, errors: Sequence[str]):
        self.path, self.errors = path, list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{path}: {len(self.errors)} error(s)\n{lines}")


# ----------------------------------------------------------------------------- loading
def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: a directory, expected a problem file (YAML)")
    try:
        data = yaml.safe_load(p.read_text())
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a text file, expected a problem file (YAML)") from None
    except OSError as err:
        raise UserError(f"{p}: cannot be read ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(str(p), [f"not valid YAML: {err}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(p), [f"expected a mapping of keys at the top level, got {type(data).__name__}"])
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], path: str = "<overrides>") -> dict[str, Any]:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a copy of ``data``.

    A part of the key path that meets a list is an index into it (``boundary.0.value=1``,
    ``solvers.pinn.causal.tolerances.1=0.1``); an index outside the list is refused, naming its length. Missing
    mapping keys are created (``solvers.pinn.width=40`` in a file without a ``solvers`` section).
    """
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(path, [f"--set {item!r}: expected key.path=value"])
        key, value = item.split("=", 1)
        key = key.strip()
        node: Any = out
        parts = key.split(".")
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "the file"
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(path, [f"--set {key}: {where} is a list of {len(node)} item(s); expected an index from 0 to "
                                             f"{len(node) - 1}, got {part!r}" if node else f"--set {key}: {where} is an empty list"])
                index: Any = int(part)
            elif isinstance(node, dict):
                index = part
                if not last and node.get(part) is None:
                    node[part] = {}
            else:
                raise ConfigError(path, [f"--set {key}: {where} is a value ({node!r}), not a mapping or a list"])
            if last:
                node[index] = yaml.safe_load(value)
            else:
                node = node[index]
    return out


SOLVER_SECTIONS = ("train", "simulate")  # file keys a solver section may carry its own values for


def with_solver_train(data: dict[str, Any], solver: str, path: str = "<data>") -> dict[str, Any]:
    """The file's ``train`` and ``simulate`` with the chosen solver's own ``solvers.<solver>.train`` /
    ``solvers.<solver>.simulate`` keys in place of the file's.

    Each back-end needs its own budget (a PINN's Adam + L-BFGS, a basis solve's short Adam run) and a grid
    solver that trains on the physics may need finer frames than a dataset (NeuralStagger's residual step), so a
    solver section may carry these mappings; their keys replace the file's (key by key) when that solver runs.
    The result no longer has the section's own keys (they are resolved), so a run folder's ``config.yaml``
    reproduces the run.
    """
    import copy

    section = (data.get("solvers") or {}).get(solver)
    if not isinstance(section, dict) or not any(k in section for k in SOLVER_SECTIONS):
        return data
    out = copy.deepcopy(data)
    for key in SOLVER_SECTIONS:
        if key not in section:
            continue
        own = section[key]
        if not isinstance(own, dict):
            raise ConfigError(path, [f"solvers.{solver}.{key}: expected a mapping of {key} keys, got {type(own).__name__}"])
        del out["solvers"][solver][key]
        out[key] = {**(out.get(key) or {}), **own}
    return out


def load_run_config(path: str | Path, overrides: Sequence[str] = (), data: dict[str, Any] | None = None) -> RunConfig:
    """Read, override and validate a problem file; raises :class:`ConfigError` listing every error.

    Precedence, lowest first: the file's ``train``, the chosen solver's ``solvers.<solver>.train``, ``overrides``.
    """
    data = data if data is not None else read_yaml(path)
    solver = apply_overrides(data, overrides, str(path)).get("solver", "pinn")
    # overrides apply before the solver's own sections are resolved (so --set solvers.<name>.train.x=... counts)
    # and after (so --set train.x=... outranks the solver's section)
    raw = apply_overrides(with_solver_train(apply_overrides(data, overrides, str(path)), str(solver), str(path)), overrides, str(path))
    raw = resolve_paths(raw, Path(path).parent)
    cfg, errors = _build(raw)
    if errors:
        raise ConfigError(str(path), errors)
    return RunConfig(path=str(path), raw=raw, **cfg)


def python_run_config(problem: Problem, settings: dict[str, Any], overrides: Sequence[str] = ()) -> RunConfig:
    """A run of a :class:`Problem` built in Python: ``settings`` holds the other keys of a problem file
    (``solver``, ``solvers``, ``train``, ``evaluate``, ``simulate``, ``seed``, ``device``), validated as in a file.

    The problem is used as it is, so its equation may be an unregistered :class:`~pdesolve.equations.Equation`
    subclass; ``raw`` (the run folder's ``config.yaml``) records it as ``python:<module>.<class>``.
    """
    path = f"<python:{problem.name}>"
    solver = apply_overrides(settings, overrides, path).get("solver", "pinn")
    data = apply_overrides(with_solver_train(apply_overrides(settings, overrides, path), str(solver), path), overrides, path)
    try:
        spec = RunSettingsFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(path, validation_errors(err, RunSettingsFile)) from None
    errors: list[str] = []
    cfg = run_settings(spec, data, problem.domain.names, errors)
    cfg["eval_params"] = family_settings(problem, spec, errors)
    errors += inverse_settings(problem, spec.solver)
    if errors:
        raise ConfigError(path, errors)
    return RunConfig(path=path, problem=problem, raw={**problem_to_dict(problem), **data}, **cfg)


def problem_to_dict(problem: Problem) -> dict[str, Any]:
    """The problem-file form of a Problem (the inverse of the problem keys of the schema)."""
    dom = problem.domain
    domain: dict[str, Any] = {a.name: ({"bounds": [a.lo, a.hi], "periodic": True} if a.periodic else [a.lo, a.hi]) for a in dom.space}
    if dom.geometry is not None:
        domain = {"geometry": geometry_to_dict(dom.geometry)}
    if dom.time is not None:
        domain["t"] = list(dom.time)
    eq = problem.equation
    registered = EQUATIONS.get(eq.name) is type(eq)
    name: str | dict[str, Any] = eq.name if registered else f"{PYTHON_EQUATION}{type(eq).__module__}.{type(eq).__qualname__}"
    if isinstance(eq, ExpressionEquation):
        name = eq.definition.to_dict()
    params: dict[str, Any] = dict(problem.params)
    params.update({k: {"range": [r.lo, r.hi], "scale": r.scale} for k, r in problem.ranges.items()})
    params.update({k: {"unknown": True, **{("true_value" if f == "true" else f): v for f, v in vars(u).items() if v is not None}}
                   for k, u in problem.unknowns.items()})
    out: dict[str, Any] = {"name": problem.name, "equation": name, "params": params, "domain": domain}
    if eq.bound_functions:
        out["functions"] = {k: e.text for k, e in eq.bound_functions.items()}
    obs = problem.observations
    if obs is not None:
        out["data"] = {"file": obs.source, "fields": list(obs.fields), "weight": obs.weight, **({"noise": obs.noise} if obs.noise else {})}
    if problem.initial is not None:
        out["initial"] = {k: e.text for k, e in problem.initial.values.items()}
    out["boundary"] = [
        {"kind": bc.kind, **({"part": bc.part} if bc.part is not None else {"axis": bc.axis, "side": bc.side}), "value": bc.value.text,
         "field": bc.field, "alpha": bc.alpha, "beta": bc.beta}
        for bc in problem.boundary
    ]
    if problem.source is not None:
        out["source"] = problem.source.text
    if problem.reference is not None:
        out["reference"] = {"kind": problem.reference.kind, "options": dict(problem.reference.options)}
    return out


def load_problem(path: str | Path, overrides: Sequence[str] = ()) -> Problem:
    """The :class:`Problem` of a problem file."""
    return load_run_config(path, overrides).problem


def validate_file(path: str | Path, solver: str | None = None, overrides: Sequence[str] = ()) -> list[str]:
    """Every error of a problem file run with ``solver`` (default: the file's), empty if it is valid: its keys, and
    everything a run would refuse before training (:func:`pdesolve.preflight.refusals`, which ``solve`` shares)."""
    from .preflight import file_refusals  # it builds on this module (and the solvers, which import it)

    return file_refusals(path, solver, overrides)


# ----------------------------------------------------------------------------- building
class _Errors(list):
    """The errors of one file, collected so that every mistake is reported at once."""

    def number(self, value: Number, where: str) -> float:
        try:
            return constant(value)
        except ExpressionError as e:
            self.append(f"{where}: {e}")
            return float("nan")

    def expression(self, text: Number, where: str, variables: Sequence[str], constants: dict[str, float]) -> Any:
        from .expr import Expression

        try:
            return Expression.parse(text, variables, constants)
        except ExpressionError as e:
            self.append(f"{where}: {e}")
            return None


def _build(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    try:
        spec = ProblemFile.model_validate(raw)
    except ValidationError as err:
        return {}, validation_errors(err, ProblemFile)
    errors = _Errors()
    problem, variables = _problem(spec, errors)
    settings = run_settings(spec, raw, variables, errors)
    settings["eval_params"] = family_settings(problem, spec, errors) if problem is not None else ()
    if problem is not None and not errors and problem.reference is not None and problem.reference.kind == "fd_masked":
        from .reference_geometry import validate  # needs the evaluation grid: is the region on its (refined) lines?

        errors += validate(problem, problem.domain.grid(settings["eval_grid"]), dict(problem.reference.options))
    if problem is not None:
        errors += inverse_settings(problem, spec.solver)
    return dict(problem=problem, **settings), errors


def _problem(spec: ProblemFile, errors: _Errors) -> tuple[Problem | None, tuple[str, ...]]:
    """The Problem of a file (None after any error) and its coordinate names (t first)."""
    params = {k: errors.number(v, f"params.{k}") for k, v in spec.params.items() if not isinstance(v, (RangeSpec, UnknownSpec))}
    unknowns = {k: Unknown(*(None if x is None else errors.number(x, f"params.{k}.{n}")
                             for n, x in zip(UNKNOWN_KEYS, (v.initial, v.minimum, v.maximum, v.true_value))), scale=v.scale)
                for k, v in spec.params.items() if isinstance(v, UnknownSpec)}
    ranges = {k: ParameterRange(errors.number(v.range[0], f"params.{k}.range[0]"), errors.number(v.range[1], f"params.{k}.range[1]"),
                                v.scale) for k, v in spec.params.items() if isinstance(v, RangeSpec)}
    space, time, geometry = _domain(spec, errors)
    names = tuple(a.name for a in space)
    equation: Equation | None = None
    if isinstance(spec.equation, dict):
        equation = _expression_equation(spec.equation, names, time is not None, tuple(spec.params), errors)
        if isinstance(equation, ExpressionEquation):
            errors += equation.coefficient_errors(params)
    elif spec.equation.startswith(PYTHON_EQUATION):
        errors.append(f"equation: {spec.equation[len(PYTHON_EQUATION):]} is a class defined in Python, not a registered "
                      "equation; solve (or resume) this problem from Python with pdesolve.solve(problem, ...)")
    elif spec.equation not in EQUATIONS:
        errors.append(unknown_name("equation", "equation", spec.equation, EQUATIONS) + "; or write the equation as expressions "
                      "(equation: {fields: [u], u_t: ...}, see docs/equations.md)")
    else:
        equation = get_equation(spec.equation)
    variables = (("t",) if time is not None else ()) + names
    initial = None
    if spec.initial is not None:
        vals = {f: errors.expression(v, f"initial.{f}", names, params) for f, v in spec.initial.items()}
        if all(v is not None for v in vals.values()):
            initial = InitialCondition(vals)
    boundary = _boundary(spec, variables, params, errors)
    source = errors.expression(spec.source, "source", variables, params) if spec.source is not None else None
    functions = {k: errors.expression(v, f"functions.{k}", names, params) for k, v in spec.functions.items()}
    if equation is not None and (functions or equation.functions) and all(v is not None for v in functions.values()):
        equation = equation.with_functions(functions)
    reference = None
    if spec.reference is not None:
        ref = spec.reference if isinstance(spec.reference, ReferenceSpec) else ReferenceSpec(kind=spec.reference)
        from .reference import REFERENCES

        if ref.kind not in REFERENCES:
            errors.append(unknown_name("reference", "reference", ref.kind, REFERENCES))
        reference = Reference(ref.kind, ref.options)
    if equation is None or not space:
        return None, variables
    observations = observations_of(spec, equation.fields, variables, errors)
    # checked even after other errors (every error at once), leaving out keys already reported
    reported = {e.split(":")[0].split(".")[0].split("[")[0] for e in errors}
    try:
        problem, problem_errors = Problem.validated(
            name=spec.name, equation=equation, params=params, domain=Domain(tuple(space), time, geometry), initial=initial,
            boundary=tuple(boundary), reference=reference, source=source, ranges=ranges, unknowns=unknowns,
            observations=observations,
        )
        errors += [str(e) for e in problem_errors if e.path.split(".")[0].split("[")[0] not in reported]
    except ProblemError as e:
        errors.append(str(e))
        problem = None
    if problem is not None and not errors:
        from .reference import reference_errors

        errors += probe_expressions(problem) + reference_errors(problem)
    if problem is not None and not errors and reference is not None and reference.kind == "file":
        from .reference import ReferenceError, file_grid

        try:
            file_grid(problem, **dict(reference.options))
        except ReferenceError as err:
            errors.append(f"reference.options.path: {err}")
        except TypeError as err:
            errors.append(f"reference.options: {err}")
    return (None if errors else problem), variables


EXPRESSION_KEYS = ("fields", "residual")  # an expression equation's keys besides one <field>_t per field


def _expression_equation(data: dict[str, Any], space: tuple[str, ...], time: bool, params: tuple[str, ...],
                         errors: list[str]) -> Equation | None:
    """The equation of an ``equation:`` mapping (fields and residual, or one ``<field>_t`` per field); None after errors."""
    fields = data.get("fields")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        errors.append(f"equation.fields: expected a list of field names, e.g. [u] or [u, v], got {fields!r}")
        return None
    found = len(errors)
    residual = data.get("residual")
    if residual is not None and (not isinstance(residual, list) or not all(
            isinstance(r, (str, int, float)) and not isinstance(r, bool) for r in residual)):
        errors.append(f"equation.residual: expected a list of expressions, one per field, got {residual!r}")
    evolution: dict[str, str] = {}
    for key, value in data.items():
        if key in EXPRESSION_KEYS:
            continue
        if key.endswith("_t") and key[:-2] in fields:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                errors.append(f"equation.{key}: expected an expression, got {value!r}")
            evolution[key[:-2]] = str(value)
            continue
        valid = list(EXPRESSION_KEYS) + [f"{f}_t" for f in fields]
        errors.append(unknown_name(f"equation.{key}", "key", key, dict.fromkeys(valid)).replace("valid keys are", "valid keys of an "
                      "equation written as expressions are"))
    if len(errors) > found:
        return None
    try:
        return ExpressionEquation.build(fields, space, time, params, residual=residual, evolution=evolution or None)
    except EquationDefinitionError as err:
        errors += err.errors
        return None


def family_settings(problem: Problem, spec: RunSettingsFile, errors: list[str]) -> tuple[dict[str, float], ...]:
    """The held-out members of a parametric family (``evaluate.params`` listed, or ``evaluate.draw``), and the refusal of
    a family by a solver that takes one value per parameter; empty for a plain problem."""
    import numpy as np

    from .solvers import SOLVERS

    ev = spec.evaluate
    if not problem.is_family:
        if ev is not None and (ev.params is not None or ev.draw is not None):
            errors.append(f"evaluate.{'params' if ev.params is not None else 'draw'}: held-out parameter values are for a parametric "
                          "family; no parameter of this problem spans a range (params.NAME: {range: [lo, hi]})")
        return ()
    solver = SOLVERS.get(spec.solver)
    if solver is not None and not solver.parametric:
        takes = sorted(n for n, c in SOLVERS.items() if c.parametric)
        for k in problem.ranges:
            errors.append(f"params.{k}: a range makes the problem a parametric family, which solver {spec.solver!r} cannot solve (it "
                          f"takes one value per parameter); use solver {' or '.join(map(repr, takes))}, or give {k} a value")
    if ev is not None and ev.params is not None and ev.draw is not None:
        errors.append("evaluate: give held-out parameter values either listed (params) or drawn (draw), not both")
        return ()
    if ev is not None and ev.params is not None:
        try:
            listed = {k: [constant(v) for v in vs] for k, vs in ev.params.items()}
        except ExpressionError as err:
            errors.append(f"evaluate.params: {err}")
            return ()
        if set(listed) != set(problem.ranges):
            errors.append(f"evaluate.params: expected values for exactly the ranged parameters {sorted(problem.ranges)}, got "
                          f"{sorted(listed)}")
            return ()
        sizes = {len(v) for v in listed.values()}
        if len(sizes) != 1 or 0 in sizes:
            errors.append(f"evaluate.params: expected lists of one common, non-zero length (member i takes the i-th value of each), "
                          f"got lengths {[len(v) for v in listed.values()]}")
            return ()
        for k, vs in listed.items():
            r = problem.ranges[k]
            outside = [v for v in vs if not r.lo <= v <= r.hi]
            if outside:
                errors.append(f"evaluate.params.{k}: {outside} outside the trained range [{r.lo:g}, {r.hi:g}]")
        return tuple({k: listed[k][i] for k in listed} for i in range(sizes.pop()))
    draw = ev.draw if ev is not None and ev.draw is not None else DrawSpec()
    g = np.random.default_rng(draw.seed).random((draw.count, len(problem.ranges)))
    return tuple({k: float(r.value(g[i, j])) for j, (k, r) in enumerate(problem.ranges.items())} for i in range(draw.count))


def probe_expressions(problem: Problem, points: int = 9) -> list[str]:
    """Evaluate the problem's field expressions (initial values, wall values, source) on a coarse grid of its
    domain, walls included: a value that is not finite there (``1/x`` at ``x = 0``) is refused now, not met in training."""
    import numpy as np

    grid = problem.domain.grid({n: points for n in problem.domain.names})
    coords = dict(zip(grid.names, np.meshgrid(*(a.coords for a in grid.axes), indexing="ij")))
    space = {a.name: c for a, c in zip(problem.domain.space, np.meshgrid(*(a.coords for a in grid.space), indexing="ij"))}
    found = []
    region = problem.domain.geometry  # only its points count (a value singular in a hole is fine)
    mesh = list(space.values())
    mask = None if region is None else region.inside(np.stack([c.ravel() for c in mesh], 1)).reshape(mesh[0].shape)

    def check(where: str, expr: Any, env: dict[str, Any]) -> None:
        try:
            with np.errstate(all="ignore"):
                values = expr.numpy(**{k: v for k, v in env.items() if k in expr.variables})
        except (ArithmeticError, ValueError) as err:
            found.append(f"{where}: cannot be evaluated on the domain ({err})")
            return
        bad = ~np.isfinite(values)
        if mask is not None and bad.ndim >= mask.ndim:
            bad = bad & mask
        if bad.any():
            at = {k: float(np.broadcast_to(v, values.shape)[bad][0]) for k, v in env.items() if k in expr.variables}
            found.append(f"{where}: {expr.text!r} is not finite at {at} (got {values[bad][0]}) on the domain")

    if problem.initial is not None:
        for f, e in problem.initial.values.items():
            check(f"initial.{f}", e, space)
    for i, bc in enumerate(problem.boundary):
        check(f"boundary[{i}].value ({bc.label})", bc.value, coords)
    if problem.source is not None:
        check("source", problem.source, coords)
    return found


def _domain(spec: ProblemFile, errors: _Errors) -> tuple[list[Axis], tuple[float, float] | None, Any]:
    """The space axes (periodic where an axis or a ``periodic`` boundary entry says so), the time interval and the
    geometry (None: the domain is the box of the axes; else the axes are its bounding box, named x, y, z)."""
    space, time, geometry = [], None, None
    for name, ax in spec.domain.items():
        if name == "geometry":
            space, geometry = _geometry(spec.domain["geometry"], [n for n in spec.domain if n not in ("geometry", "t")], errors)
            continue
        if isinstance(ax, dict):  # not the geometry: an axis with a mistake in its keys
            try:
                ax = AxisSpec.model_validate(ax)
            except ValidationError as err:
                errors += validation_errors(err, AxisSpec, prefix=f"domain.{name}")
                continue
        if name != "t" and "geometry" in spec.domain:
            continue  # reported by _geometry
        bounds, periodic = (ax.bounds, ax.periodic) if isinstance(ax, AxisSpec) else (ax, False)
        lo, hi = errors.number(bounds[0], f"domain.{name}[0]"), errors.number(bounds[1], f"domain.{name}[1]")
        if not lo < hi:
            errors.append(f"domain.{name}: expected lo < hi, got [{lo}, {hi}]")
            continue
        if name == "t":
            if periodic:
                errors.append("domain.t.periodic: the time axis cannot be periodic")
            time = (lo, hi)
        elif not name.isidentifier():
            errors.append(f"domain.{name}: axis names must be identifiers")
        else:
            space.append(Axis(name, lo, hi, periodic))
    for i, b in enumerate(spec.boundary):  # periodic listed as a boundary condition marks the axis periodic
        if b.kind != "periodic":
            continue
        if geometry is not None:
            errors.append(f"boundary[{i}].kind: a periodic axis cannot be combined with a geometry (domain.geometry); give its parts "
                          "dirichlet, neumann or robin conditions")
            continue
        names = [a.name for a in space]
        if b.axis is None:
            errors.append(f"boundary[{i}].axis: a periodic entry names its axis, one of {names}")
        elif b.axis not in names:
            errors.append(f"boundary[{i}].axis: unknown axis {b.axis!r}; the domain has {names}")
        else:
            k = names.index(b.axis)
            space[k] = Axis(space[k].name, space[k].lo, space[k].hi, True)
    return space, time, geometry


def _geometry(raw: Any, axes: list[str], errors: _Errors) -> tuple[list[Axis], Any]:
    """The region of ``domain.geometry`` and its bounding box as space axes ``x, y, z`` (``axes``: other space keys given)."""
    from .config_geometry import AXIS_NAMES, parse_shape
    from .geometry import GeometryError, Region, shape_errors

    for name in axes:
        errors.append(f"domain.{name}: with a geometry the space axes are its coordinates ({', '.join(AXIS_NAMES)}) over its "
                      "bounding box; give only the geometry (and t) under domain")
    if isinstance(raw, str) and raw.startswith(PYTHON_EQUATION):
        errors.append(f"domain.geometry: {raw[len(PYTHON_EQUATION):]} is a geometry defined in Python; solve this problem from Python")
        return [], None
    before = len(errors)
    shape = parse_shape(raw, "domain.geometry", errors)
    if shape is None or len(errors) > before:
        return [], None
    problems = shape_errors(shape)
    if problems:
        errors += problems
        return [], None
    try:
        region = Region(shape)
    except GeometryError as err:
        errors += err.errors
        return [], None
    lo, hi = region.bbox()
    return [Axis(n, float(a), float(b)) for n, a, b in zip(AXIS_NAMES, lo, hi)], region


def geometry_to_dict(geometry: Any) -> Any:
    """The problem-file form of a domain's geometry: a :class:`~pdesolve.geometry.Region`'s shape; a geometry class of a
    user's own is recorded as ``python:<module>.<class>`` (it cannot be read back from a file)."""
    from .geometry import Region

    if isinstance(geometry, Region):
        return geometry.shape.to_dict()
    return f"{PYTHON_EQUATION}{type(geometry).__module__}.{type(geometry).__qualname__}"


def _boundary(spec: ProblemFile, variables: tuple[str, ...], params: dict[str, float], errors: _Errors) -> list[BoundaryCondition]:
    out = []
    for i, b in enumerate(spec.boundary):
        if b.kind == "periodic":
            continue
        if (b.axis is None) == (b.part is None):
            errors.append(f"boundary[{i}]: expected either axis (a face of the box, with side) or part (a named part of "
                          f"domain.geometry), got {'both' if b.axis is not None else 'neither'}")
            continue
        value = errors.expression(b.value, f"boundary[{i}].value", variables, params)
        if value is None:
            continue
        if b.part is not None:
            try:
                out.append(BoundaryCondition(b.kind, "", "lo", value, b.field, b.alpha, b.beta, part=b.part))
            except ProblemError as e:
                errors.append(f"boundary[{i}].{e.path.split('.')[-1]}: {e.message}")
            continue
        for side in ("lo", "hi") if b.side == "both" else (b.side,):
            try:
                out.append(BoundaryCondition(b.kind, b.axis, side, value, b.field, b.alpha, b.beta))
            except ProblemError as e:
                errors.append(f"boundary[{i}].{e.path.split('.')[-1]}: {e.message}")
    return out


def run_settings(spec: RunSettingsFile, raw: dict[str, Any], variables: tuple[str, ...], errors: list[str]) -> dict[str, Any]:
    """Everything of a run but the problem: solver and its options, training rule, evaluation grid, simulation.

    Shared by problem files and the Python API (which takes the problem as an object).
    """
    from .solvers import SOLVERS

    eval_grid: dict[str, int] = {}
    if spec.evaluate is not None:
        eval_grid = dict(spec.evaluate.grid)
        if set(eval_grid) != set(variables):
            errors.append(f"evaluate.grid: expected point counts for exactly {sorted(variables)}, got {sorted(eval_grid)}")
        errors += [f"evaluate.grid.{k}: expected at least 2 points, got {v}" for k, v in eval_grid.items() if v < 2]
    else:
        eval_grid = {n: (101 if n == "t" else 128) for n in variables}

    solver_options = None
    if spec.solver not in SOLVERS:
        errors.append(unknown_name("solver", "solver", spec.solver, SOLVERS))
    for name, opts in spec.solvers.items():
        if name not in SOLVERS:
            errors.append(unknown_name(f"solvers.{name}", "solver", name, SOLVERS))
            continue
        opts = dict(opts or {})
        if "simulate" in opts:  # another solver's own simulation settings (the chosen one's are resolved)
            from .simulate.settings import SimulateSettings

            own_sim = opts.pop("simulate")
            try:
                SimulateSettings.model_validate({**(raw.get("simulate") or {}), **own_sim} if isinstance(own_sim, dict) else own_sim)
            except ValidationError as err:
                errors += validation_errors(err, SimulateSettings, prefix=f"solvers.{name}.simulate")
        if "train" in opts:  # another solver's own budget (the chosen one's is resolved by with_solver_train)
            own = opts.pop("train")
            try:
                other = TrainSpec.model_validate({**raw.get("train", {}), **own} if isinstance(own, dict) else own)
                errors += validate_optimizer(other.optimizer, f"solvers.{name}.train.optimizer")[1]
            except ValidationError as err:
                errors += validation_errors(err, TrainSpec, prefix=f"solvers.{name}.train")
        model = SOLVERS[name].Options
        try:
            validated = model.model_validate(opts)
        except ValidationError as err:
            errors += validation_errors(err, model, prefix=f"solvers.{name}")
            continue
        if name == spec.solver:
            solver_options = validated
    if solver_options is None and spec.solver in SOLVERS and spec.solver not in spec.solvers:
        solver_options = SOLVERS[spec.solver].Options()

    optimizer_options, optimizer_errors = validate_optimizer(spec.train.optimizer)
    errors += optimizer_errors

    simulate = None
    if spec.simulate is not None:
        from .simulate.settings import SimulateSettings

        try:
            simulate = SimulateSettings.model_validate(spec.simulate)
        except ValidationError as err:
            errors += validation_errors(err, SimulateSettings, prefix="simulate")
    return dict(solver=spec.solver, solver_options=solver_options, train=spec.train, optimizer_options=optimizer_options,
                eval_grid=eval_grid, seed=spec.seed, device=spec.device, simulate=simulate)


def validate_optimizer(opt: OptimizerSpec, where: str = "train.optimizer") -> tuple[BaseModel | None, list[str]]:
    """The training rule's validated options, or the errors of ``opt`` (reported at the key path ``where``)."""
    from .optim import OPTIMIZERS

    if opt.name not in OPTIMIZERS:
        return None, [unknown_name(f"{where}.name", "optimizer", opt.name, OPTIMIZERS)]
    model = OPTIMIZERS[opt.name][1]
    try:
        return model.model_validate(opt.model_extra or {}), []
    except ValidationError as err:
        return None, validation_errors(err, model, prefix=where)
