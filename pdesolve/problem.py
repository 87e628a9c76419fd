"""Problem: the PDE, its domain, its conditions and where its reference comes from.

The one abstraction that every back-end shares. Immutable and self-validating; built from YAML by
:mod:`pdesolve.config` or directly in Python::

    p = Problem(
        name="burgers",
        equation=get_equation("burgers"),
        params={"nu": 0.01 / math.pi},
        domain=Domain((Axis("x", -1.0, 1.0),), time=(0.0, 1.0)),
        initial=InitialCondition.of({"u": "-sin(pi*x)"}, ("x",)),
        boundary=BoundaryCondition.dirichlet_walls("x", ("t", "x")),
        reference=Reference("cole_hopf"),
    )
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .equations import Equation
from .errors import UserError
from .expr import Expression
from .geometry import Geometry
from .grid import Grid, GridAxis
from .observations import Observations

BOUNDARY_KINDS = ("dirichlet", "neumann", "robin")
SIDES = ("lo", "hi")


class ProblemError(ValueError):
    """A problem whose parts do not fit together; ``path`` names the offending key."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Axis:
    """One space axis of the domain."""

    name: str
    lo: float
    hi: float
    periodic: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name == "t":
            raise ProblemError(f"domain.{self.name}", "a space axis needs an identifier name other than 't'")
        if not self.lo < self.hi:
            raise ProblemError(f"domain.{self.name}", f"expected lo < hi, got [{self.lo}, {self.hi}]")


@dataclass(frozen=True)
class Domain:
    """A box in space times a time interval (None for steady problems).

    ``geometry`` (optional) is the region inside the box that the problem lives on (a disk with a hole, an
    L-shape, :mod:`pdesolve.geometry`); the box ``space`` is then its bounding box.
    """

    space: tuple[Axis, ...]
    time: tuple[float, float] | None = None
    geometry: Geometry | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "space", tuple(self.space))
        names = [a.name for a in self.space]
        if not names:
            raise ProblemError("domain", "expected at least one space axis")
        if len(set(names)) != len(names):
            raise ProblemError("domain", f"axis names must be unique, got {names}")
        if self.time is not None:
            t0, t1 = self.time
            if not t0 < t1:
                raise ProblemError("domain.t", f"expected t0 < t1, got [{t0}, {t1}]")

    @property
    def space_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.space)

    @property
    def names(self) -> tuple[str, ...]:
        """Coordinate columns in the order (t, x, y, z)."""
        return (("t",) if self.time is not None else ()) + self.space_names

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        out = {"t": tuple(self.time)} if self.time is not None else {}
        out.update({a.name: (a.lo, a.hi) for a in self.space})
        return out  # type: ignore[return-value]

    def axis(self, name: str) -> Axis:
        for a in self.space:
            if a.name == name:
                return a
        raise KeyError(f"no space axis {name!r}; the domain has {list(self.space_names)}")

    def grid(self, shape: Mapping[str, int]) -> Grid:
        """A uniform grid over the domain with ``shape[axis]`` points per axis."""
        missing = [n for n in self.names if n not in shape]
        if missing:
            raise ProblemError("evaluate.grid", f"no point count for axes {missing}; expected one for each of {list(self.names)}")
        space = tuple(GridAxis(a.name, a.lo, a.hi, int(shape[a.name]), a.periodic) for a in self.space)
        time = GridAxis("t", self.time[0], self.time[1], int(shape["t"])) if self.time is not None else None
        return Grid(space, time)


@dataclass(frozen=True)
class InitialCondition:
    """``u(x, t0)`` per field, as expressions of the space coordinates."""

    values: Mapping[str, Expression]

    @classmethod
    def of(cls, values: Mapping[str, str | float], space: Sequence[str], constants: Mapping[str, float] | None = None) -> InitialCondition:
        return cls({k: Expression.parse(v, space, constants) for k, v in values.items()})


@dataclass(frozen=True)
class BoundaryCondition:
    """``alpha u + beta du/dn = value`` on one face (``axis``, ``side``) for one field, or on the named boundary
    ``part`` of the domain's geometry (then ``axis`` and ``side`` are unused).

    Dirichlet is (1, 0), Neumann (0, 1); ``n`` is the outward normal. ``value`` is an expression of
    ``t`` and the space coordinates. Periodicity is a property of the :class:`Axis`, not a condition.
    """

    kind: str
    axis: str
    side: str
    value: Expression
    field: str = "u"
    alpha: float = 1.0
    beta: float = 0.0
    part: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in BOUNDARY_KINDS:
            raise ProblemError("boundary.kind", f"expected one of {list(BOUNDARY_KINDS)} or 'periodic', got {self.kind!r}")
        if self.side not in SIDES:
            raise ProblemError("boundary.side", f"expected one of {list(SIDES)} or 'both', got {self.side!r}")
        expected = {"dirichlet": (1.0, 0.0), "neumann": (0.0, 1.0)}.get(self.kind)
        if expected and (self.alpha, self.beta) != expected:
            object.__setattr__(self, "alpha", expected[0])
            object.__setattr__(self, "beta", expected[1])
        if self.kind == "robin" and self.alpha == 0 and self.beta == 0:
            raise ProblemError("boundary.alpha", "a Robin condition needs alpha or beta non-zero")

    @classmethod
    def dirichlet_walls(
        cls, axis: str, variables: Sequence[str], value: str | float = 0.0, field: str = "u"
    ) -> tuple[BoundaryCondition, ...]:
        expr = Expression.parse(value, variables)
        return tuple(cls("dirichlet", axis, side, expr, field) for side in SIDES)

    @property
    def label(self) -> str:
        where = self.part if self.part is not None else f"{self.axis}.{self.side}"
        return f"{self.kind}:{self.field}@{where}"


@dataclass(frozen=True)
class Reference:
    """Where the trusted solution comes from: a closed form, a quadrature, a simulator or a file."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)


class ParametricFamilyError(ProblemError, UserError):
    """A single-valued use (a reference, a simulation, a plain solver) of a problem whose parameters span ranges."""


SCALES = ("linear", "log")


@dataclass(frozen=True)
class ParameterRange:
    """The values ``[lo, hi]`` one parameter of a parametric family spans.

    ``scale`` says how the range is measured: ``linear`` or ``log`` (a decade range of a viscosity). The unit
    coordinate ``g`` in [0, 1] of :meth:`unit` is uniform in that scale; training draws and the hypernetworks'
    input encodings use it.
    """

    lo: float
    hi: float
    scale: str = "linear"

    def unit(self, value: Any) -> Any:
        """The value's coordinate in [0, 1] (numbers or arrays)."""
        import numpy as np

        if self.scale == "log":
            return (np.log(value) - np.log(self.lo)) / (np.log(self.hi) - np.log(self.lo))
        return (np.asarray(value, dtype=float) - self.lo) / (self.hi - self.lo)

    def value(self, g: Any) -> Any:
        """The inverse of :meth:`unit`."""
        import numpy as np

        g = np.asarray(g, dtype=float)
        if self.scale == "log":
            return np.exp(np.log(self.lo) + g * (np.log(self.hi) - np.log(self.lo)))
        return self.lo + g * (self.hi - self.lo)


class UnknownParameterError(ProblemError, UserError):
    """A use that needs the value (a reference, a simulation, a solver that cannot learn it) of a coefficient the
    problem declares unknown."""


@dataclass(frozen=True)
class Unknown:
    """A coefficient learned from observations (an inverse problem): ``params: {nu: {unknown: true, initial: 0.05}}``.

    ``initial`` is where the learning starts; ``minimum`` / ``maximum`` (both or neither) keep it in a box (a solver
    learns it through a sigmoid); ``true`` is the value that made the data when it is known (a benchmark, a synthetic
    test): references are then computed with it and metrics report the recovered value's error.
    """

    initial: float
    minimum: float | None = None
    maximum: float | None = None
    true: float | None = None
    scale: str | None = None  # "linear" or "log" (learned through its logarithm); None: log where the equation requires >= 0

    def errors(self, name: str, spec: Any) -> list[ProblemError]:
        """What is wrong with this declaration for the equation's :class:`~pdesolve.equations.base.Parameter` ``spec``."""
        where, out = f"params.{name}", []
        if self.scale not in (None, *SCALES):
            out.append(ProblemError(f"{where}.scale", f"expected one of {list(SCALES)}, got {self.scale!r}"))
        elif self.scale == "log":
            low = self.minimum if self.minimum is not None else self.initial
            if low <= 0 or self.initial <= 0:
                out.append(ProblemError(f"{where}.scale", f"a log scale needs a positive initial value (and minimum), got "
                                        f"{low if low <= 0 else self.initial}"))
        if (self.minimum is None) != (self.maximum is None):
            out.append(ProblemError(where, "give both minimum and maximum (a box the value is learned in) or neither"))
        elif self.minimum is not None and not self.minimum < self.maximum:  # type: ignore[operator]
            out.append(ProblemError(where, f"expected minimum < maximum, got [{self.minimum}, {self.maximum}]"))
        elif self.minimum is not None and not self.minimum < self.initial < self.maximum:  # type: ignore[operator]
            out.append(ProblemError(f"{where}.initial", f"expected a value strictly inside [{self.minimum}, {self.maximum}], "
                                    f"got {self.initial}"))
        for key, value in (("initial", self.initial), ("minimum", self.minimum), ("true_value", self.true)):
            msg = spec.check(float(value)) if value is not None else None
            if msg and not (key == "minimum" and spec.minimum == value):
                out.append(ProblemError(f"{where}.{key}", msg))
        return out


@dataclass(frozen=True)
class Problem:
    """A well-posed PDE problem. Checks on construction that its parts fit together.

    A *parametric family* gives some parameters a :class:`ParameterRange` in ``ranges`` instead of a value in
    ``params``: it is solved once over the ranges (only by solvers that declare ``parametric``) and scored on
    members, :meth:`member` (the problem with those parameters fixed).

    An *inverse problem* declares some coefficients :class:`Unknown` (``unknowns``) and carries ``observations``
    to learn them from; its single values (``coefficients``) do not exist, :meth:`truth` is the problem with the
    known true values put in (for references), :attr:`known_coefficients` the rest.
    """

    name: str
    equation: Equation
    params: Mapping[str, float]
    domain: Domain
    initial: InitialCondition | None
    boundary: tuple[BoundaryCondition, ...] = ()
    reference: Reference | None = None
    source: Expression | None = None
    ranges: Mapping[str, ParameterRange] = field(default_factory=dict)
    unknowns: Mapping[str, Unknown] = field(default_factory=dict)
    observations: Observations | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "boundary", tuple(self.boundary))
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "ranges", dict(self.ranges))
        object.__setattr__(self, "unknowns", dict(self.unknowns))
        for err in self.errors():
            raise err

    @classmethod
    def validated(cls, **fields: Any) -> tuple[Problem | None, list[ProblemError]]:
        """Build a problem, or return every error at once instead of raising the first."""
        draft = object.__new__(cls)
        for key, value in fields.items():
            object.__setattr__(draft, key, value)
        object.__setattr__(draft, "boundary", tuple(draft.boundary))
        object.__setattr__(draft, "ranges", dict(fields.get("ranges", {})))
        object.__setattr__(draft, "unknowns", dict(fields.get("unknowns", {})))
        object.__setattr__(draft, "observations", fields.get("observations"))
        errs = draft.errors()
        return (None, errs) if errs else (cls(**fields), [])

    def errors(self) -> list[ProblemError]:
        """Every inconsistency at once (construction raises the first)."""
        eq, errs = self.equation, []
        for k in self.params:
            if k not in eq.parameters:
                errs.append(ProblemError(f"params.{k}", f"unknown parameter of {eq.name!r}; expected {sorted(eq.parameters)}"))
        errs += self._range_errors() + self._inverse_errors()
        for k, spec in eq.parameters.items():
            if k in self.ranges or k in self.unknowns:
                continue
            if k not in self.params:
                if spec.default is None:
                    errs.append(ProblemError(f"params.{k}", f"missing; {eq.name!r} needs {sorted(eq.parameters)}"))
                continue
            msg = spec.check(float(self.params[k]))
            if msg:
                errs.append(ProblemError(f"params.{k}", msg))
        ndim = len(self.domain.space)
        if ndim not in eq.dims:
            errs.append(ProblemError("domain", f"{eq.name!r} is defined in {list(eq.dims)} space dimension(s), got {ndim}"))
        if self.domain.time is not None:
            if self.initial is None:
                errs.append(ProblemError("initial", "a time-dependent problem needs an initial condition"))
            else:
                missing = set(eq.fields) - set(self.initial.values)
                extra = set(self.initial.values) - set(eq.fields)
                if missing:
                    errs.append(ProblemError("initial", f"missing values for fields {sorted(missing)}"))
                if extra:
                    errs.append(ProblemError("initial", f"unknown fields {sorted(extra)}; {eq.name!r} has {list(eq.fields)}"))
                for f, e in self.initial.values.items():
                    if "t" in e.free_names() & set(e.variables):
                        errs.append(ProblemError(f"initial.{f}", "an initial condition cannot depend on t"))
        errs += self._steady_errors()
        if self.domain.geometry is not None:
            return errs + self._geometry_errors()
        faces = set()
        for i, bc in enumerate(self.boundary):
            path = f"boundary[{i}]"
            if bc.part is not None:
                errs += self._part_errors(bc, path)
                if (bc.part, bc.field) in faces:
                    errs.append(ProblemError(path, f"a second condition on part {bc.part!r} for {bc.field!r}"))
                faces.add((bc.part, bc.field))
                continue
            try:
                axis = self.domain.axis(bc.axis)
            except KeyError as e:
                errs.append(ProblemError(f"{path}.axis", str(e.args[0])))
                continue
            if axis.periodic:
                errs.append(ProblemError(f"{path}.axis", f"axis {bc.axis!r} is periodic; it takes no {bc.kind} condition"))
            if bc.field not in eq.fields:
                errs.append(ProblemError(f"{path}.field", f"unknown field {bc.field!r}; {eq.name!r} has {list(eq.fields)}"))
            if (bc.axis, bc.side, bc.field) in faces:
                errs.append(ProblemError(path, f"a second condition on {bc.axis}.{bc.side} for {bc.field!r}"))
            faces.add((bc.axis, bc.side, bc.field))
        return errs

    def _geometry_errors(self) -> list[ProblemError]:
        """The boundary conditions of a domain with a geometry: one per (part, field), every part covered, no periodic axis."""
        from .config_messages import _did_you_mean

        eq, geo, errs = self.equation, self.domain.geometry, []
        assert geo is not None
        if geo.dim != len(self.domain.space):
            names = list(self.domain.space_names)
            errs.append(ProblemError("domain.geometry", f"a {geo.dim}D geometry needs {geo.dim} space axes, got {names}"))
        for a in self.domain.space:
            if a.periodic:
                errs.append(ProblemError(f"domain.{a.name}", "a periodic axis cannot be combined with a geometry; give its parts "
                                         "dirichlet, neumann or robin conditions"))
        covered = set()
        for i, bc in enumerate(self.boundary):
            path = f"boundary[{i}]"
            if bc.part is None:
                errs.append(ProblemError(f"{path}.axis", f"the domain is a geometry: name one of its boundary parts {list(geo.parts)} "
                                         f"(part: ...) instead of the face {bc.axis}.{bc.side}"))
                continue
            if bc.part not in geo.parts:
                errs.append(ProblemError(f"{path}.part", f"unknown boundary part {bc.part!r}; the geometry's parts are "
                                         f"{list(geo.parts)}" + _did_you_mean(bc.part, geo.parts)))
                continue
            if bc.field not in eq.fields:
                errs.append(ProblemError(f"{path}.field", f"unknown field {bc.field!r}; {eq.name!r} has {list(eq.fields)}"))
                continue
            if (bc.part, bc.field) in covered:
                errs.append(ProblemError(path, f"a second condition on part {bc.part!r} for {bc.field!r}"))
            covered.add((bc.part, bc.field))
        for part in geo.parts if not (eq.steady and self.domain.time is None) else ():  # steady: _missing_conditions says it
            missing = [f for f in eq.fields if (part, f) not in covered]
            if missing:
                errs.append(ProblemError("boundary", f"boundary part {part!r} has no condition for {', '.join(map(repr, missing))}; add "
                                         f"{{kind: dirichlet | neumann | robin, part: {part}, value: ...}}"))
        return errs

    def _steady_errors(self) -> list[ProblemError]:
        """A steady equation on a domain without time (and no initial condition), an evolution one with time;
        a steady problem's every bounded face (or geometry part) holds a condition for each field; the equation's
        coefficient functions (Darcy's K) are given and admissible on a probe grid of the box."""
        eq, dom, errs = self.equation, self.domain, []
        if eq.steady and dom.time is not None:
            errs.append(ProblemError("domain.t", f"{eq.name!r} is steady (0 = F(u) + source), so the domain takes no time axis; "
                                     "remove t"))
        if not eq.steady and dom.time is None:
            errs.append(ProblemError("domain", f"{eq.name!r} evolves in time (u_t = F(u)); add a time axis t: [t0, t1], or use a "
                                     "steady equation (poisson, helmholtz, darcy)"))
        if eq.steady and self.initial is not None:
            errs.append(ProblemError("initial", f"{eq.name!r} is steady: a steady problem takes no initial condition; remove initial"))
        if eq.steady and dom.time is None:
            errs += self._missing_conditions()
        if eq.functions or eq.bound_functions:
            import numpy as np

            probe = np.meshgrid(*(np.linspace(a.lo, a.hi, 9) for a in dom.space), indexing="ij")
            errs += [ProblemError(f"functions.{name}", msg) for name, msg in eq.function_errors(dict(zip(dom.space_names, probe)))]
        return errs

    def _missing_conditions(self) -> list[ProblemError]:
        """A steady problem is well posed only with a condition on every bounded face (or geometry part), per field."""
        eq, dom = self.equation, self.domain
        if dom.geometry is not None:
            held = {(bc.part, bc.field) for bc in self.boundary if bc.part is not None}
            return [ProblemError("boundary", f"no condition for field {f!r} on the geometry's part {part!r}; a steady problem needs "
                                 "one on every part (dirichlet, neumann or robin)")
                    for f in eq.fields for part in dom.geometry.parts if (part, f) not in held]
        held = {(bc.axis, bc.side, bc.field) for bc in self.boundary if bc.part is None}
        return [ProblemError("boundary", f"no condition for field {f!r} on {a.name}.{side}; a steady problem needs one on every "
                             "bounded face (dirichlet, neumann or robin), or mark the axis periodic")
                for f in eq.fields for a in dom.space if not a.periodic for side in SIDES if (a.name, side, f) not in held]

    def _part_errors(self, bc: BoundaryCondition, path: str) -> list[ProblemError]:
        geometry, errs = self.domain.geometry, []
        if geometry is None:
            errs.append(ProblemError(f"{path}.part", f"the condition names the boundary part {bc.part!r}, but the domain has no "
                                     "geometry; name a box face with axis and side instead"))
        elif bc.part not in geometry.parts:
            errs.append(ProblemError(f"{path}.part", f"unknown part {bc.part!r}; the geometry's parts are {list(geometry.parts)}"))
        if bc.field not in self.equation.fields:
            eq = self.equation
            errs.append(ProblemError(f"{path}.field", f"unknown field {bc.field!r}; {eq.name!r} has {list(eq.fields)}"))
        return errs

    def _range_errors(self) -> list[ProblemError]:
        eq, errs = self.equation, []
        for k, r in self.ranges.items():
            where = f"params.{k}.range"
            if k not in eq.parameters:
                errs.append(ProblemError(f"params.{k}", f"unknown parameter of {eq.name!r}; expected {sorted(eq.parameters)}"))
                continue
            if k in self.params:
                errs.append(ProblemError(f"params.{k}", "given both a value and a range; give one"))
            if r.scale not in SCALES:
                errs.append(ProblemError(f"params.{k}.scale", f"expected one of {list(SCALES)}, got {r.scale!r}"))
            if not r.lo < r.hi:
                errs.append(ProblemError(where, f"expected lo < hi, got [{r.lo}, {r.hi}]"))
            elif r.scale == "log" and r.lo <= 0:
                errs.append(ProblemError(where, f"a log-scale range needs lo > 0, got [{r.lo}, {r.hi}]"))
            for end in (r.lo, r.hi):
                msg = eq.parameters[k].check(float(end))
                if msg:
                    errs.append(ProblemError(where, f"{end}: {msg}"))
        return errs

    def _inverse_errors(self) -> list[ProblemError]:
        eq, errs = self.equation, []
        for k, u in self.unknowns.items():
            if k not in eq.parameters:
                errs.append(ProblemError(f"params.{k}", f"unknown parameter of {eq.name!r}; expected {sorted(eq.parameters)}"))
                continue
            if k in self.params or k in self.ranges:
                errs.append(ProblemError(f"params.{k}", "declared unknown and given a value or a range; give one"))
            errs += u.errors(k, eq.parameters[k])
        obs = self.observations
        if obs is not None:
            where = f"data.file ({obs.source})" if obs.source else "data"
            extra = [f for f in obs.fields if f not in eq.fields]
            if extra:
                errs.append(ProblemError("data.fields", f"unknown field(s) {extra}; {eq.name!r} has {list(eq.fields)}"))
            if set(obs.names) != set(self.domain.names):
                errs.append(ProblemError(where, f"coordinate columns {list(obs.names)}; expected the domain's axes "
                                         f"{list(self.domain.names)}"))
            else:
                errs += [ProblemError(where, m) for m in obs.outside(self.domain.bounds)]
        return errs

    @property
    def is_inverse(self) -> bool:
        """True when some coefficients are unknown, learned from the observations."""
        return bool(self.unknowns)

    @property
    def known_coefficients(self) -> dict[str, float]:
        """The coefficients with a value (the family's defaults filled in), leaving out the unknown ones."""
        out = {k: float(s.default) for k, s in self.equation.parameters.items() if s.default is not None and k not in self.unknowns}
        out.update({k: float(v) for k, v in self.params.items()})
        return out

    def truth(self) -> Problem | None:
        """The forward problem with each unknown coefficient at its true value (None when some true value is not given)."""
        import dataclasses

        if any(u.true is None for u in self.unknowns.values()):
            return None
        return dataclasses.replace(self, params={**self.params, **{k: float(u.true) for k, u in self.unknowns.items()}},  # type: ignore[arg-type]
                                   unknowns={}, observations=None)

    @property
    def is_family(self) -> bool:
        """True when some parameters span ranges (a parametric family) instead of taking values."""
        return bool(self.ranges)

    def member(self, values: Mapping[str, float]) -> Problem:
        """The problem with every ranged parameter fixed at ``values[name]`` (a plain, single-valued problem)."""
        import dataclasses

        if set(values) != set(self.ranges):
            raise ProblemError("params", f"a member fixes exactly the ranged parameters {sorted(self.ranges)}, got {sorted(values)}")
        return dataclasses.replace(self, params={**self.params, **{k: float(v) for k, v in values.items()}}, ranges={})

    @property
    def coefficients(self) -> dict[str, float]:
        """Parameters with the family's defaults filled in (a parametric family has no single value: refused)."""
        if self.ranges:
            name = next(iter(self.ranges))
            raise ParametricFamilyError(f"params.{name}", f"problem {self.name!r} is a parametric family ({name} spans a range), "
                                        "not one problem; solve it with a parametric solver (hyper_pinn) or give it a value")
        if self.unknowns:
            name = next(iter(self.unknowns))
            raise UnknownParameterError(f"params.{name}", f"problem {self.name!r} is an inverse problem ({name} is unknown, learned from "
                                        "its observations) and has no value for it here; give params."
                                        f"{name}.true_value to compute a reference, or solve it with a solver that learns it (pinn)")
        return self.known_coefficients

    def initial_numpy(self, grid: Grid) -> Any:
        """The initial condition on a grid's space points, ``[channel, *space]`` float64."""
        import numpy as np

        mesh = np.meshgrid(*(a.coords for a in grid.space), indexing="ij")
        values = dict(zip([a.name for a in grid.space], mesh))
        return np.stack([self.initial.values[f].numpy(**values) for f in self.equation.fields])  # type: ignore[union-attr]
