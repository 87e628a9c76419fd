"""Safe math expressions from YAML ("-sin(pi*x)", "exp(-(x-0.3)**2/0.01)") as numpy and torch callables.

The text is parsed with Python's own `ast` module and then checked against a small grammar: numbers,
names from an allowed set, + - * / **, unary signs, and calls of whitelisted functions. Anything else
(attribute access, subscripts, lambdas, comprehensions, keyword arguments, unknown names) is refused with
an :class:`ExpressionError` that says what was found and what is allowed. Nothing is ever passed to
`eval`: evaluation walks the checked tree.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

# name -> (numpy function, name of the torch function); torch is looked up at evaluation time so
# that this module stays importable (and cheap) without touching torch.
FUNCTIONS: dict[str, tuple[Any, str]] = {
    "sin": (np.sin, "sin"),
    "cos": (np.cos, "cos"),
    "tan": (np.tan, "tan"),
    "exp": (np.exp, "exp"),
    "log": (np.log, "log"),
    "sqrt": (np.sqrt, "sqrt"),
    "tanh": (np.tanh, "tanh"),
    "sinh": (np.sinh, "sinh"),
    "cosh": (np.cosh, "cosh"),
    "arctan": (np.arctan, "atan"),
    "abs": (np.abs, "abs"),
    "sign": (np.sign, "sign"),
    "heaviside": (lambda a: np.heaviside(a, 0.5), "heaviside"),
}

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


MAX_DEPTH = 100  # nesting levels of an expression: far beyond any formula, far below the interpreter's stack


class ExpressionError(ValueError):
    """A math expression that is malformed, unsafe or uses unknown names."""


@dataclass(frozen=True)
class Expression:
    """A checked math expression of a fixed set of variables.

    Evaluate with :meth:`numpy` or :meth:`torch` (or through a backend that supplies sin, cos, ...,
    such as :class:`pdesolve.nn.jet.Jet`). Free names that are not variables must be bound by
    ``constants`` at construction (problem parameters, for instance).
    """

    text: str
    variables: tuple[str, ...]
    constants: Mapping[str, float] = field(default_factory=dict)
    _tree: ast.expr = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @classmethod
    def parse(
        cls, text: str | float | int, variables: Iterable[str], constants: Mapping[str, float] | None = None
    ) -> Expression:
        """Parse and check ``text``; raises :class:`ExpressionError` on anything outside the grammar."""
        variables = tuple(variables)
        bound = {**CONSTANTS, **(constants or {})}
        source, tree = _syntax(text)
        _check(tree, set(variables) | set(bound), source)
        return cls(source, variables, dict(bound), tree)

    def free_names(self) -> set[str]:
        return {n.id for n in ast.walk(self._tree) if isinstance(n, ast.Name)}

    def depends_on(self, name: str) -> bool:
        return name in self.free_names()

    def is_constant(self) -> bool:
        return not (self.free_names() & set(self.variables))

    def numpy(self, **values: Any) -> np.ndarray:
        """Evaluate with numpy arrays (broadcast against each other); returns float64 ndarray."""
        out = _evaluate(self._tree, self._bind(values), _NumpyBackend())
        shape = np.broadcast_shapes(*(np.shape(v) for v in values.values())) if values else ()
        return np.broadcast_to(np.asarray(out, dtype=np.float64), shape).copy()

    def torch(self, **values: Any):
        """Evaluate with torch tensors; the result broadcasts to the inputs' shape, dtype and device."""
        import torch

        out = _evaluate(self._tree, self._bind(values), _TorchBackend(torch))
        ref = next((v for v in values.values() if isinstance(v, torch.Tensor)), None)
        if ref is None:
            return torch.as_tensor(out, dtype=torch.get_default_dtype())
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out, dtype=ref.dtype, device=ref.device)
        return out.expand(torch.broadcast_shapes(*(v.shape for v in values.values() if isinstance(v, torch.Tensor))))

    def evaluate(self, backend: Any, **values: Any) -> Any:
        """Evaluate with any object that has the functions as methods (e.g. a jet backend)."""
        return _evaluate(self._tree, self._bind(values), backend)

    def value(self) -> float:
        """The number a constant expression stands for (refused when it overflows, divides by zero or is not finite)."""
        if not self.is_constant():
            raise ExpressionError(f"{self.text!r} depends on {sorted(self.free_names() & set(self.variables))}, expected a constant")
        try:
            with np.errstate(all="ignore"):
                out = float(_evaluate(self._tree, dict(self.constants), _NumpyBackend()))
        except ZeroDivisionError:
            raise ExpressionError(f"{self.text!r} divides by zero") from None
        except OverflowError:
            raise ExpressionError(f"{self.text!r} overflows (larger than {np.finfo(np.float64).max:.3g})") from None
        if not np.isfinite(out):
            raise ExpressionError(f"{self.text!r} is not a finite number ({out})")
        return out

    def _bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        missing = self.free_names() & set(self.variables) - set(values)
        if missing:
            raise ExpressionError(f"{self.text!r} needs values for {sorted(missing)}")
        return {**self.constants, **values}


def checked_tree(text: str | float | int) -> tuple[str, ast.expr, set[str]]:
    """The checked tree of ``text`` with any names allowed, and the names it uses: ``(source, tree, names)``.

    For callers that classify names themselves (the symbols of an equation written in a problem file,
    :mod:`pdesolve.equations.expression`); the grammar (numbers, + - * / **, whitelisted calls) is enforced as in
    :meth:`Expression.parse`.
    """
    source, tree = _syntax(text)
    _check(tree, None, source)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return source, tree, {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def _syntax(text: str | float | int) -> tuple[str, ast.expr]:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ExpressionError(f"expected a number or a math expression string, got {type(text).__name__} {text!r}")
    source = str(text).strip()
    if not source:
        raise ExpressionError("empty expression")
    if len(source) > 2000:
        raise ExpressionError(f"expression too long ({len(source)} characters, at most 2000)")
    try:
        tree = ast.parse(source.replace("^", "**"), mode="eval").body
    except SyntaxError as err:
        raise ExpressionError(f"cannot parse {source!r}: {err.msg}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"expression nested too deeply (at most {MAX_DEPTH} levels)") from None
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"expression nested too deeply (at most {MAX_DEPTH} levels)")
    return source, tree


def constant(text: str | float | int, constants: Mapping[str, float] | None = None) -> float:
    """Evaluate a constant expression such as ``"0.01/pi"`` or ``2*pi``."""
    return Expression.parse(text, (), constants).value()


def _depth(tree: ast.AST) -> int:
    """The nesting depth of an expression tree (without recursion: a deep tree must not exhaust the stack)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d <= MAX_DEPTH:
            stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _check(node: ast.AST, names: set[str] | None, source: str) -> None:
    """Refuse anything outside the grammar; ``names``: the allowed names (None: any name)."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"in {source!r}: only numbers are allowed as literals, got {node.value!r}")
    elif isinstance(node, ast.Name):
        if names is not None and node.id not in names:
            allowed = sorted(names - set(CONSTANTS)) + sorted(CONSTANTS)
            raise ExpressionError(f"in {source!r}: unknown name {node.id!r}; allowed names are {allowed}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise ExpressionError(f"in {source!r}: operator {type(node.op).__name__} is not allowed; use + - * / **")
        _check(node.left, names, source)
        _check(node.right, names, source)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.UAdd, ast.USub)):
            raise ExpressionError(f"in {source!r}: unary {type(node.op).__name__} is not allowed")
        _check(node.operand, names, source)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            what = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExpressionError(f"in {source!r}: function {what!r} is not allowed; allowed functions are {sorted(FUNCTIONS)}")
        if node.keywords or len(node.args) != 1:
            raise ExpressionError(f"in {source!r}: {node.func.id}() takes exactly one positional argument")
        _check(node.args[0], names, source)
    else:
        raise ExpressionError(
            f"in {source!r}: {type(node).__name__} ({ast.unparse(node)!r}) is not allowed; "
            "expressions may use numbers, names, + - * / ** and the functions " + ", ".join(sorted(FUNCTIONS))
        )


class _NumpyBackend:
    def __getattr__(self, name: str):
        return FUNCTIONS[name][0]


class _TorchBackend:
    def __init__(self, torch):
        self._torch = torch

    def __getattr__(self, name: str):
        t = self._torch
        if name == "heaviside":
            return lambda a: t.heaviside(a, t.full_like(a, 0.5)) if isinstance(a, t.Tensor) else float(np.heaviside(a, 0.5))
        fn = getattr(t, FUNCTIONS[name][1])
        return lambda a: fn(a) if isinstance(a, t.Tensor) else FUNCTIONS[name][0](a)


def _evaluate(node: ast.AST, env: Mapping[str, Any], backend: Any) -> Any:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        val = _evaluate(node.operand, env, backend)
        return -val if isinstance(node.op, ast.USub) else val
    if isinstance(node, ast.BinOp):
        a = _evaluate(node.left, env, backend)
        b = _evaluate(node.right, env, backend)
        op = type(node.op)
        if op is ast.Add:
            return a + b
        if op is ast.Sub:
            return a - b
        if op is ast.Mult:
            return a * b
        if op is ast.Div:
            return a / b
        return a**b
    if isinstance(node, ast.Call):
        return getattr(backend, node.func.id)(_evaluate(node.args[0], env, backend))  # type: ignore[union-attr]
    raise ExpressionError(f"unexpected node {type(node).__name__}")  # unreachable after _check
