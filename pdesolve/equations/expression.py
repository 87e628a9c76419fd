"""Equations written as expressions in a problem file, not as Python classes.

Two forms, both with the derivatives written as symbols (``u_x``, ``u_xx``, ``u_xy``, ``u_xxx``, ``u_t``: the field,
an underscore, one letter per differentiation along a single-letter axis of the domain)::

    equation: {fields: [u, v], residual: ["u_t + u*u_x - nu*u_xx", "v_t - D*v_xx + u*v"]}   # R(u) = 0
    equation: {fields: [u], u_t: "-u*u_x + nu*u_xx"}                                       # u_t = F(u)

Coefficients are the problem's ``params`` (numbers); functions of the space coordinates are allowed (``sin(pi*x)*u_x``).
Each text goes through the project's safe parser (:func:`pdesolve.expr.checked_tree`: an ast whitelist, never
``eval``); the checked tree becomes a SymPy expression, on which the analysis is done once:

- a residual that is linear in the time derivatives with a constant, invertible coefficient matrix ``A`` is solved
  for them, ``u_t = F = -A^{-1} R|_{u_t = 0}``: the equation then has both faces of :class:`Equation` (``forcing`` at
  points, ``rhs`` on grids), so simulators, references and grid solvers take it (:class:`ExplicitExpression`);
- one with no time derivative is steady (``0 = F(u) + source`` with ``F = -R``), on a domain without a time axis;
- any other residual with time derivatives is kept as it is, pointwise only (:class:`ImplicitExpression`): solvers
  that need the grid form refuse it by their usual checks.

The analysis also states what the solvers check: ``linear`` (affine in the fields and their derivatives),
``max_space_order``, ``mixed_derivatives`` (the u_xy pairs, which only the PINN's jets carry) and, for a single field
on one space axis whose F has constant-coefficient linear terms, the :class:`~pdesolve.equations.split.LinearPart`
(the spectral ETDRK4 simulator and the modal references take an exactly linear one).

Evaluation never goes back to text: each SymPy expression is compiled once into a tree of closures over torch
operations (:func:`_compile`), called with the values the :class:`Derivatives` accessor (jets, autograd, a
hard-constraint basis) or the grid (:meth:`Grid.diff`, successive diffs for mixed derivatives) provides.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UserError
from ..expr import CONSTANTS, ExpressionError, checked_tree
from .base import Derivatives, Equation, Parameter
from .split import LinearPart, Nonlinear, Remainder, Split

MAX_ORDER = 4
"""The highest derivative order the PINN's jets carry (:data:`pdesolve.nn.jet.MAX_ORDER`; the physics core does not
import the learned parts, a test keeps the two equal)."""

FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
"""A field name: letters and digits (``_`` separates a field from its derivative axes)."""

def _to_sympy_functions() -> dict[str, Callable[[Any], Any]]:
    """The whitelisted functions (:data:`pdesolve.expr.FUNCTIONS`) as SymPy functions (SymPy is imported only when an
    equation is written as expressions: importing pdesolve stays cheap)."""
    import sympy

    return {
        "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt,
        "tanh": sympy.tanh, "sinh": sympy.sinh, "cosh": sympy.cosh, "arctan": sympy.atan, "abs": sympy.Abs,
        "sign": sympy.sign, "heaviside": lambda a: sympy.Heaviside(a, sympy.Rational(1, 2)),
    }


def _torch_names() -> dict[Any, str]:
    """SymPy function -> the torch function that evaluates it."""
    import sympy

    return {
        sympy.sin: "sin", sympy.cos: "cos", sympy.tan: "tan", sympy.exp: "exp", sympy.log: "log", sympy.tanh: "tanh",
        sympy.sinh: "sinh", sympy.cosh: "cosh", sympy.atan: "atan", sympy.Abs: "abs", sympy.sign: "sign",
        sympy.Heaviside: "heaviside",
    }


class EquationDefinitionError(UserError):
    """An equation written as expressions that cannot stand: ``errors`` holds one ``key: message`` line per mistake."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True)
class Definition:
    """What the user wrote: the fields and either the residuals (one per field) or ``F`` per field (evolution form)."""

    fields: tuple[str, ...]
    residual: tuple[str, ...] | None = None
    evolution: tuple[tuple[str, str], ...] | None = None  # (field, F) pairs, in the order of ``fields``

    def to_dict(self) -> dict[str, Any]:
        """The problem-file form (``equation:`` mapping)."""
        out: dict[str, Any] = {"fields": list(self.fields)}
        if self.residual is not None:
            out["residual"] = list(self.residual)
        for f, text in self.evolution or ():
            out[f"{f}_t"] = text
        return out


# ----------------------------------------------------------------------------- symbols
@dataclass(frozen=True)
class _Symbols:
    """The names an equation's expressions may use, and how each is read."""

    fields: tuple[str, ...]
    space: tuple[str, ...]
    time: bool
    parameters: tuple[str, ...]

    def classify(self, name: str) -> tuple[str, Any] | str:
        """``("field", f)``, ``("derivative", (f, axes))``, ``("coordinate", a)``, ``("parameter", k)``, ``("constant", c)``,
        or a message saying why the name is refused."""
        if name in self.fields:
            return "field", name
        if name in self.space:
            return "coordinate", name
        if name == "t" and self.time:
            return ("t cannot appear in the equation itself (its grid form has no time); put a time-dependent forcing "
                    "in the problem's source: key")
        if name in self.parameters:
            return "parameter", name
        if name in CONSTANTS:
            return "constant", name
        head, sep, letters = name.rpartition("_")
        if sep and head and letters:
            return self._derivative(name, head, letters)
        return self._unknown(name)

    def _derivative(self, name: str, field: str, letters: str) -> tuple[str, Any] | str:
        axes = self.space + (("t",) if self.time else ())
        if field not in self.fields:
            if all(a in axes for a in letters) and field not in self.parameters and not self._unknown(field).count("did you mean"):
                return f"{name!r} is a derivative of {field!r}, which is not a field; the fields are {list(self.fields)}"
            return self._unknown(name)
        lacking = sorted({a for a in letters if a not in axes})
        if "t" in lacking and not self.time:
            return (f"{name!r}: a time derivative on a steady domain (no t axis); remove the {field}_t terms for a steady "
                    "equation, or add t to domain for an evolution equation")
        if lacking:
            return (f"{name!r}: derivative along {', '.join(map(repr, lacking))}, an axis the domain lacks; derivatives are written "
                    f"{field}_<letters> with one letter per differentiation along the single-letter axes "
                    f"{[a for a in axes if len(a) == 1]}")
        if "t" in letters:
            if letters != "t":
                return f"{name!r}: the only time derivative an equation may read is the first, {field}_t"
            return "derivative", (field, ("t",))
        if len(letters) > MAX_ORDER:
            return f"{name!r}: derivative of order {len(letters)}; the PINN's jets carry up to order {MAX_ORDER}"
        if len(set(letters)) > 1 and len(letters) > 2:
            return f"{name!r}: mixed derivatives are carried up to second order ({field}_xy); got order {len(letters)}"
        order = {a: i for i, a in enumerate(self.space)}
        return "derivative", (field, tuple(sorted(letters, key=order.__getitem__)))

    def _unknown(self, name: str) -> str:
        examples = [f"{f}_{a}" for f in self.fields for a in self.space] + [f"{f}_{a}{a}" for f in self.fields for a in self.space]
        known = list(self.fields) + list(self.space) + list(self.parameters) + examples + (
            [f"{f}_t" for f in self.fields] if self.time else [])
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"unknown symbol {name!r}{hint}; an equation reads the fields {list(self.fields)}, their derivatives "
                f"({', '.join(examples[:2] + ([f'{self.fields[0]}_t'] if self.time else []))}, ...), the coordinates "
                f"{list(self.space)} and the parameters {sorted(self.parameters)} (declare a coefficient under params:)")


def _symbol(kind: str, what: Any) -> Any:
    import sympy

    if kind == "derivative":
        field, axes = what
        return sympy.Symbol(f"{field}_{''.join(axes)}", real=True)
    if kind == "constant":
        return {"pi": sympy.pi, "e": sympy.E}[what]
    return sympy.Symbol(what, real=True)


def _to_sympy(node: Any, table: Mapping[str, Any]) -> Any:
    """The SymPy expression of a checked ast tree (names resolved through ``table``)."""
    import ast

    import sympy

    if isinstance(node, ast.Constant):
        return sympy.Integer(node.value) if isinstance(node.value, int) else sympy.Float(node.value)
    if isinstance(node, ast.Name):
        return table[node.id]
    if isinstance(node, ast.UnaryOp):
        inner = _to_sympy(node.operand, table)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        a, b = _to_sympy(node.left, table), _to_sympy(node.right, table)
        op = type(node.op)
        if op is ast.Div and b == 0:
            raise ExpressionError("divides by zero")
        return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b, ast.Div: lambda: a / b,
                ast.Pow: lambda: a**b}[op]()
    return _to_sympy_functions()[node.func.id](_to_sympy(node.args[0], table))  # a whitelisted call (checked_tree)


# ----------------------------------------------------------------------------- compiled evaluation
Compiled = Callable[[Mapping[str, Any]], Any]


def _compile(e: Any) -> Compiled:
    """A closure tree that evaluates ``e`` on torch tensors (or numbers) bound by symbol name: built once, no text."""
    import torch

    if e.is_Symbol:
        name = e.name
        return lambda env: env[name]
    if e.is_number:
        value = complex(e)
        if value.imag != 0:
            raise ExpressionError(f"{e} is not a real number")
        c = value.real
        return lambda env: c
    args = [_compile(a) for a in e.args]
    if e.is_Add:
        return lambda env: _fold(args, env, lambda a, b: a + b)
    if e.is_Mul:
        return lambda env: _fold(args, env, lambda a, b: a * b)
    if e.is_Pow:
        base, exponent = args
        if e.args[1].is_Integer:
            n = int(e.args[1])
            return lambda env: base(env) ** n
        return lambda env: base(env) ** exponent(env)
    name = _torch_names().get(e.func)
    if name is None:
        raise ExpressionError(f"{e.func} cannot be evaluated")  # unreachable: only whitelisted functions get here
    inner = args[0]
    if name == "heaviside":
        return lambda env: _heaviside(_tensor(inner(env)))
    fn = getattr(torch, name)
    return lambda env: fn(_tensor(inner(env)))


def _heaviside(a: Any) -> Any:
    import torch

    return torch.heaviside(a, torch.full_like(a, 0.5))


def _fold(args: Sequence[Compiled], env: Mapping[str, Any], op: Callable[[Any, Any], Any]) -> Any:
    out = args[0](env)
    for a in args[1:]:
        out = op(out, a(env))
    return out


def _tensor(v: Any) -> Any:
    import torch

    return v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=torch.float64)


# ----------------------------------------------------------------------------- the equations
class ExpressionEquation(Equation):
    """An equation written as expressions (the common part of :class:`ExplicitExpression` and :class:`ImplicitExpression`).

    Build one with :meth:`build`; ``definition`` is what was written (``definition.to_dict()`` is the problem-file form).
    """

    name = "expression"

    def __init__(self, definition: Definition, space: tuple[str, ...], symbols: Mapping[str, tuple[str, Any]],
                 parameters: Mapping[str, Parameter], linear: bool, steady: bool, max_space_order: int,
                 mixed: tuple[tuple[str, str], ...]):
        self.definition, self.space, self.symbols = definition, space, dict(symbols)
        self.fields = definition.fields
        self.parameters = dict(parameters)
        self.dims = (len(space),)
        self.linear, self.steady, self.max_space_order, self.mixed_derivatives = linear, steady, max_space_order, mixed

    @staticmethod
    def build(fields: Sequence[str], space: Sequence[str], time: bool, parameters: Iterable[str],
              residual: Sequence[str] | None = None, evolution: Mapping[str, str] | None = None) -> ExpressionEquation:
        """The equation of ``residual`` (one text per field, ``R = 0``) or ``evolution`` (field -> F of ``field_t = F``).

        ``space``: the space axis names; ``time``: whether the domain has a t axis; ``parameters``: the coefficient names
        the problem gives values to (the equation declares those it reads). Raises :class:`EquationDefinitionError`
        with every mistake, each naming its key (``equation.residual[0]``, ``equation.u_t``, ...).
        """
        return _analyse(tuple(fields), tuple(space), time, tuple(parameters), residual, evolution)

    def _env_points(self, d: Derivatives, p: Mapping[str, float], with_time: bool = False,
                    only: frozenset[str] | None = None) -> dict[str, Any]:
        """The values of the symbols at points (``only``: just these names)."""
        env: dict[str, Any] = {}
        for name, (kind, what) in self.symbols.items():
            if only is not None and name not in only:
                continue
            if kind == "field":
                env[name] = d(what)
            elif kind == "derivative" and (with_time or what[1] != ("t",)):
                env[name] = d(what[0], *what[1])
            elif kind == "coordinate":
                env[name] = d.coord(what)
            elif kind == "parameter":
                env[name] = p[what]
        return env

    def coefficient_errors(self, params: Mapping[str, float]) -> list[str]:
        """Mistakes that show only with the coefficients' values (a zero coefficient of u_t); empty for a sound equation."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.definition.to_dict()})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and (self.definition, self.space, self.steady) == (
            other.definition, other.space, other.steady)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.definition, self.space))


def _broadcast(v: Any, like: Any) -> Any:
    """``v`` (a tensor or a number) broadcast against ``like`` (its shape and those of ``v`` combined)."""
    import torch

    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    return torch.broadcast_to(v, torch.broadcast_shapes(v.shape, like.shape))


def _stack_columns(values: Sequence[Any], like: Any, dim: int) -> Any:
    """Columns (tensors or numbers) broadcast to ``like``'s shape and stacked at ``dim``."""
    import torch

    cols = [torch.broadcast_to(torch.as_tensor(v, dtype=like.dtype, device=like.device), like.shape) for v in values]
    return torch.stack(cols, dim=dim)


class ExplicitExpression(ExpressionEquation):
    """``u_t = F(u)`` (or steady ``0 = F(u)``) from expressions: both faces, and the split when one can be stated."""

    def __init__(self, *args: Any, forcing: Sequence[Any], split_terms: tuple[dict[int, Any], Any] | None,
                 singular: Any | None, velocity: Any | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.expressions = tuple(forcing)  # SymPy F per field, for tests and messages
        self._forcing = tuple(_compile(e) for e in forcing)
        self._velocity = None if velocity is None else (_compile(velocity), frozenset(s.name for s in velocity.free_symbols))
        self._split = None if split_terms is None else ({k: _compile(c) for k, c in split_terms[0].items()}, _rest(split_terms[1]))
        self._singular = singular

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        env = self._env_points(d, p)
        return _stack_columns([f(env) for f in self._forcing], d(self.fields[0]), -1)

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        import torch

        nd = len(grid.space)
        names = [a.name for a in grid.space]
        # each field keeps its channel axis, [..., 1, *space]: coefficients may be per-trajectory tensors shaped for u
        values = {f: u.narrow(-nd - 1, c, 1) for c, f in enumerate(self.fields)}
        env: dict[str, Any] = {}
        for name, (kind, what) in self.symbols.items():
            if kind == "field":
                env[name] = values[what]
            elif kind == "derivative" and what[1] != ("t",):  # solved for: F no longer reads them
                env[name] = _grid_derivative(values[what[0]], what[1], grid)
            elif kind == "coordinate":
                shape = [1] * nd
                shape[names.index(what)] = -1
                env[name] = torch.as_tensor(grid.coords(what), dtype=u.dtype, device=u.device).reshape(shape)
            elif kind == "parameter":
                env[name] = p[what]
        return torch.cat([_broadcast(f(env), values[self.fields[0]]) for f in self._forcing], dim=-nd - 1)

    def velocity(self, d: Derivatives, p: Mapping[str, float]) -> Any | None:
        """``f = -dF/du_x`` when it reads no derivative (a transport ``u_t + f(u, x) u_x = ...``; one field, one axis)."""
        if self._velocity is None:
            return None
        fn, names = self._velocity
        return _broadcast(fn(self._env_points(d, p, only=names)), d(self.fields[0]))

    def split(self, p: Mapping[str, Any]) -> Split | None:
        """``L u`` from the constant-coefficient terms ``c_k d^k u/dx^k`` of a single field on one space axis; the rest
        ``N(u)`` is :class:`Nonlinear` when it is ``g(u)`` or ``h(u) u_x = (d/dx) G(u)`` (the spectral ETDRK4 simulator then
        takes the equation), else a :class:`Remainder` (left to the method of lines)."""
        if self._split is None:
            return None
        coefficients, rest = self._split
        c = {k: fn(p) for k, fn in coefficients.items()}
        linear = LinearPart(advection=(-c[1],) if 1 in c else (), diffusion=c.get(2, 0.0), dispersion=-c[3] if 3 in c else 0.0,
                            hyperdiffusion=-c[4] if 4 in c else 0.0, growth=c.get(0, 0.0))
        return Split(linear, None if rest is None else rest(p, self.fields[0]))

    def coefficient_errors(self, params: Mapping[str, float]) -> list[str]:
        import sympy

        if self._singular is None or not all(k in params for k in (s.name for s in self._singular.free_symbols)):
            return []
        value = float(self._singular.subs({sympy.Symbol(k, real=True): v for k, v in params.items()}))
        if value == 0:
            return [f"equation.residual: the coefficient of the time derivatives ({self._singular}) is zero with these params; "
                    "the equation cannot be solved for them"]
        return []


class ImplicitExpression(ExpressionEquation):
    """A residual ``R(u, u_t, ...) = 0`` that cannot be solved for the time derivatives: pointwise only."""

    def __init__(self, *args: Any, residual: Sequence[Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.expressions = tuple(residual)
        self._residual = tuple(_compile(e) for e in residual)

    def residual(self, d: Derivatives, p: Mapping[str, float], source: Any | None = None) -> Any:
        env = self._env_points(d, p, with_time=True)
        r = _stack_columns([f(env) for f in self._residual], d(self.fields[0]), -1)
        return r if source is None else r - source


def _grid_derivative(u: Any, axes: tuple[str, ...], grid: Any) -> Any:
    """d^k u / d(axes) on the grid: one call for a pure derivative (the grid's own stencils), successive diffs for a mixed one."""
    if len(set(axes)) == 1:
        return grid.diff(u, axes[0], len(axes))
    out = u
    for a in axes:
        out = grid.diff(out, a, 1)
    return out


# ----------------------------------------------------------------------------- analysis
def _analyse(fields: tuple[str, ...], space: tuple[str, ...], time: bool, parameters: tuple[str, ...],
             residual: Sequence[str] | None, evolution: Mapping[str, str] | None) -> ExpressionEquation:
    import sympy

    errors: list[str] = []
    for f in fields:
        if not FIELD_NAME.fullmatch(f):
            errors.append(f"equation.fields: {f!r} is not a field name; expected letters and digits, starting with a letter "
                          "(no '_': it separates a field from its derivative axes)")
        elif f in space or f == "t" or f in CONSTANTS or f in parameters:
            errors.append(f"equation.fields: {f!r} is already the name of an axis, a constant or a parameter")
    if not fields:
        errors.append("equation.fields: expected a list of one or more field names, e.g. [u]")
    if len(set(fields)) != len(fields):
        errors.append(f"equation.fields: a field is listed twice in {list(fields)}")
    if (residual is None) == (evolution is None):
        errors.append("equation: expected either residual: [one expression per field] or one <field>_t: F key per field, "
                      "not " + ("both" if residual is not None else "neither"))
    if errors:
        raise EquationDefinitionError(errors)
    symbols = _Symbols(fields, space, time, parameters)

    texts: list[tuple[str, str]] = []  # (key, text)
    if residual is not None:
        if len(residual) != len(fields):
            errors.append(f"equation.residual: expected one expression per field ({len(fields)}: {list(fields)}), got {len(residual)}")
        texts = [(f"equation.residual[{i}]", r) for i, r in enumerate(residual)]
    else:
        assert evolution is not None
        if not time:
            errors.append(f"equation: the evolution form ({', '.join(f'{f}_t' for f in evolution)}: ...) needs a t axis in domain; "
                          "for a steady equation write residual: [...] (0 = R)")
        missing = [f for f in fields if f not in evolution]
        errors += [f"equation.{f}_t: {f!r} is not a field; the fields are {list(fields)}" for f in evolution if f not in fields]
        if missing:
            errors.append(f"equation: the evolution form needs one <field>_t key per field; missing {[f'{f}_t' for f in missing]}")
        texts = [(f"equation.{f}_t", evolution[f]) for f in fields if f in evolution]

    table: dict[str, Any] = {}
    used: dict[str, tuple[str, Any]] = {}
    parsed: list[Any] = []
    for key, text in texts:
        try:
            _, tree, names = checked_tree(text)
        except ExpressionError as err:
            errors.append(f"{key}: {err}")
            continue
        bad = False
        for name in sorted(names):
            kind = symbols.classify(name)
            if isinstance(kind, str):
                errors.append(f"{key}: {kind}")
                bad = True
                continue
            if kind[0] == "derivative" and kind[1][1] == ("t",) and evolution is not None:
                errors.append(f"{key}: {name!r}: a time derivative on the right-hand side of the evolution form; write the "
                              "equation as residual: [...] instead")
                bad = True
                continue
            table[name] = _symbol(*kind)
            if kind[0] != "constant":
                used[table[name].name] = kind
        if bad:
            continue
        try:
            expr = _to_sympy(tree, table)
        except ExpressionError as err:
            errors.append(f"{key}: in {text!r}: {err}")
            continue
        bad_number = _not_finite_real(expr)
        if bad_number is not None:
            errors.append(f"{key}: in {text!r}: {bad_number} is not a finite real number")
            continue
        parsed.append(expr)
    if not errors and residual is not None:  # (the evolution form names every field in its keys)
        unused = [f for f in fields if not any(k in ("field", "derivative") and (w if k == "field" else w[0]) == f
                                               for k, w in used.values())]
        if unused:
            errors.append(f"equation.fields: {unused} appear in no expression; remove them from fields or use them")
    if errors:
        raise EquationDefinitionError(errors)

    time_symbols = [_symbol("derivative", (f, ("t",))) for f in fields]
    state = [_symbol(k, w) for k, w in used.values() if k in ("field", "derivative")]
    coords = {_symbol(k, w) for k, w in used.values() if k == "coordinate"}
    params = {_symbol(k, w) for k, w in used.values() if k == "parameter"}
    order = max([len(w[1]) for k, w in used.values() if k == "derivative" and w[1] != ("t",)], default=0)
    mixed = tuple(sorted({tuple(w[1]) for k, w in used.values() if k == "derivative" and len(set(w[1])) == 2}))
    declared = {k: Parameter(None, doc="a coefficient of the equation written in the problem file") for k in
                sorted(w for k, w in used.values() if k == "parameter")}
    has_time = any(s in e.free_symbols for e in parsed for s in time_symbols)
    if time and residual is not None and not has_time:
        raise EquationDefinitionError([
            f"equation.residual: no time derivative ({', '.join(f'{f}_t' for f in fields)}) on a time-dependent domain; add the "
            "u_t terms, or remove t from domain for a steady equation"])
    common = dict(space=space, symbols=used, parameters=declared, max_space_order=order, mixed=mixed)

    def linear_in_state(exprs: Sequence[Any]) -> bool:
        return all(not (sympy.diff(e, s).free_symbols & set(state)) for e in exprs for s in state)

    definition = Definition(fields, tuple(residual) if residual is not None else None,
                            tuple((f, evolution[f]) for f in fields) if evolution is not None else None)
    singular = None
    if evolution is not None:
        forcing = parsed
    elif not has_time:
        forcing = [-r for r in parsed]  # steady: 0 = R - source, the base class's residual -(F + source) with F = -R
    else:
        R = sympy.Matrix(parsed)
        A = R.jacobian(time_symbols)
        det = sympy.simplify(A.det()) if not (A.free_symbols - params) else sympy.Integer(0)
        if det == 0:
            return ImplicitExpression(definition, linear=linear_in_state(parsed), steady=False, residual=parsed, **common)
        rest = R.subs({s: 0 for s in time_symbols})
        forcing = [sympy.simplify(e) if len(fields) > 1 else e for e in -(A.inv() * rest)]
        singular = det if det.free_symbols else None
    steady = not time
    return ExplicitExpression(definition, linear=linear_in_state(forcing), steady=steady, forcing=forcing,
                              split_terms=_split_terms(forcing, fields, space, state, coords), singular=singular,
                              velocity=None if steady else _velocity(forcing, fields, space, state), **common)


def _velocity(forcing: Sequence[Any], fields: tuple[str, ...], space: tuple[str, ...], state: Sequence[Any]) -> Any | None:
    """``f = -dF/du_x`` for one field on one space axis when it is nonzero and reads only u, x and the parameters (the
    characteristic speed LPINN follows); None otherwise."""
    import sympy

    if len(fields) != 1 or len(space) != 1:
        return None
    ux, u = _symbol("derivative", (fields[0], (space[0],))), _symbol("field", fields[0])
    f = sympy.simplify(-sympy.diff(forcing[0], ux))
    if f == 0 or (f.free_symbols & set(state)) - {u}:
        return None
    return f


def _rest(rest: tuple[str, Any, Any, Any] | None) -> Callable[[Mapping[str, Any], str], Nonlinear | Remainder] | None:
    """The rest ``N`` of a split, given the coefficients: ``("nonlinear", g, order, g')`` or ``("remainder", text, _, _)``."""
    import torch

    if rest is None:
        return None
    kind, g, order, slope = rest
    if kind == "remainder":
        return lambda p, field: Remainder(f"F - L u = {g}")
    g_fn, slope_fn = _compile(g), _compile(slope)

    def make(p: Mapping[str, Any], field: str) -> Nonlinear:
        def rate(umax: float, kmax: float) -> Any:
            """max |g'(s)| over |s| <= max(umax, 1) (sampled), times kmax for a transport term."""
            top = max(float(umax), 1.0)
            worst = None
            for s in np.linspace(-top, top, 33):
                v = torch.as_tensor(slope_fn({**p, field: float(s)})).abs()
                worst = v if worst is None else torch.maximum(worst, v)
            return worst * (kmax if order == 1 else 1.0)

        return Nonlinear(lambda u: g_fn({**p, field: u}), order, rate)

    return make


def _not_finite_real(expr: Any) -> Any | None:
    """The first constant part of ``expr`` that is not a finite real number (``sqrt(-1)``, ``log(0)``, ``exp(1000)``), or None."""
    stack = [expr]
    while stack:
        e = stack.pop()
        if e.is_number:
            try:
                value = complex(e)
            except (TypeError, ValueError, OverflowError):
                return e
            if value.imag != 0 or not np.isfinite(value.real):
                return e
            continue
        stack.extend(e.args)
    return None


def _split_terms(forcing: Sequence[Any], fields: tuple[str, ...], space: tuple[str, ...], state: Sequence[Any],
                 coords: set[Any]) -> tuple[dict[int, Any], Any] | None:
    """The constant coefficients ``c_k`` of ``d^k u/dx^k`` (k = 0 .. 4) in F and the rest ``F - sum c_k u_(k)``, for one
    field on one space axis: None (no rest), ``("nonlinear", g, order, g')`` for ``g(u)`` (order 0) or ``h(u) u_x``
    (order 1, ``g = int h du``), or ``("remainder", rest, None, None)``; None when F has no such term."""
    import sympy

    if len(fields) != 1 or len(space) != 1:
        return None
    (f,), (x,) = fields, space
    F = sympy.expand(forcing[0])
    symbols = {k: (_symbol("field", f) if k == 0 else _symbol("derivative", (f, (x,) * k))) for k in range(MAX_ORDER + 1)}
    varying = set(state) | coords
    coefficients: dict[int, Any] = {}
    for k, s in symbols.items():
        c = sympy.diff(F, s)
        if c != 0 and not (c.free_symbols & varying):
            coefficients[k] = c
    if not coefficients:
        return None
    rest = sympy.simplify(F - sum(c * symbols[k] for k, c in coefficients.items()))
    if rest == 0:
        return coefficients, None
    u, ux = symbols[0], symbols[1]
    reads = rest.free_symbols & varying
    if reads <= {u}:  # a pointwise reaction g(u)
        return coefficients, ("nonlinear", rest, 0, sympy.diff(rest, u))
    h = sympy.diff(rest, ux)
    if reads <= {u, ux} and not (h.free_symbols & {ux}) and sympy.simplify(rest - h * ux) == 0:
        G = sympy.integrate(h, u)  # h(u) u_x = (d/dx) G(u)
        if not G.has(sympy.Integral) and not _not_finite_real(G.subs(u, 0)):
            return coefficients, ("nonlinear", G - G.subs(u, 0), 1, h)
    return coefficients, ("remainder", rest, None, None)
