"""Forward-mode second-order jets: value, gradient and Hessian carried through a computation at once.

A PINN residual needs u, u_t, u_x and u_xx at thousands of points. Nested reverse-mode autograd
builds three graphs and walks them with Python overhead per derivative; a jet propagates all
derivatives alongside the value in one forward pass (each dense layer is a single matmul on the
stacked value/gradient/Hessian rows), and one ordinary backward pass then trains through it.

Shapes: ``v`` is ``[N, *S]``, ``g`` is ``[N, d, *S]`` (d input coordinates) and ``h`` is
``[N, k, *S]``: the *diagonal* second derivatives along the ``k`` coordinates ``hess`` (a slice of the
coordinate columns, usually the space axes), or None when only first derivatives are carried. Every
shipped equation needs only u_xx, u_yy, ... (no mixed or time second derivatives), and carrying the
diagonal alone keeps the stacked rows at ``1 + d + k`` instead of ``1 + d + d^2``: the cost of a jet
pass is memory traffic proportional to that row count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


class Jet:
    """A value with its derivatives with respect to the ``d`` input coordinates."""

    __slots__ = ("v", "g", "h", "hess")

    def __init__(self, v: Tensor, g: Tensor, h: Tensor | None, hess: slice = slice(0, 0)):
        self.v, self.g, self.h, self.hess = v, g, h, hess

    # ------------------------------------------------------------------ construction
    @staticmethod
    def variables(coords: Tensor, order: int = 2, hess: slice | None = None) -> list[Jet]:
        """One jet per column of ``coords`` ``[N, d]``: the coordinate itself, unit gradient, zero curvature.

        ``hess`` selects the columns whose (diagonal) second derivatives are carried (default: all).
        """
        n, d = coords.shape
        hess = slice(0, d) if hess is None else slice(*hess.indices(d)[:2])
        k = hess.stop - hess.start
        eye = torch.eye(d, dtype=coords.dtype, device=coords.device)
        out = []
        for i in range(d):
            g = eye[i].expand(n, d)
            h = coords.new_zeros(n, k) if order >= 2 else None
            out.append(Jet(coords[:, i], g, h, hess))
        return out

    @staticmethod
    def stack(jets: Sequence[Jet | Tensor | float], dim: int = -1) -> Jet:
        """Stack scalar jets ``[N]`` into ``[N, k]`` (constants allowed)."""
        ref = next(j for j in jets if isinstance(j, Jet))
        js = [j if isinstance(j, Jet) else ref._const(j) for j in jets]
        h = None if ref.h is None else torch.stack([j.h for j in js], dim=-1)  # type: ignore[misc]
        return Jet(torch.stack([j.v for j in js], dim=-1), torch.stack([j.g for j in js], dim=-1), h, ref.hess)

    @property
    def dim(self) -> int:
        return self.g.shape[1]

    def _const(self, c: Tensor | float) -> Jet:
        v = torch.as_tensor(c, dtype=self.v.dtype, device=self.v.device).expand_as(self.v)
        return Jet(v, torch.zeros_like(self.g), None if self.h is None else torch.zeros_like(self.h), self.hess)

    def _like(self, v: Tensor, g: Tensor, h: Tensor | None) -> Jet:
        return Jet(v, g, h, self.hess)

    @property
    def gh(self) -> Tensor:
        """The first derivatives along the ``hess`` columns, ``[N, k, *S]`` (a view)."""
        return self.g[:, self.hess]

    # ------------------------------------------------------------------ layers
    def linear(self, weight: Tensor, bias: Tensor | None) -> Jet:
        """``x W^T + b`` on the last dimension: one matmul over all stacked rows."""
        d = self.g.shape[1]
        parts = [self.v.unsqueeze(1), self.g] + ([self.h] if self.h is not None else [])
        rows = torch.cat(parts, dim=1) @ weight.T  # [N, 1 + d (+ k), out]
        v = rows[:, 0] + bias if bias is not None else rows[:, 0]
        return self._like(v, rows[:, 1 : 1 + d], rows[:, 1 + d :] if self.h is not None else None)

    def apply(self, f0: Tensor, f1: Tensor, f2: Tensor | None) -> Jet:
        """Chain rule for an elementwise function with value f0 and derivatives f1, f2 at ``self.v``."""
        a1 = f1.unsqueeze(1)
        g = a1 * self.g
        h = None
        if self.h is not None:
            gh = self.gh
            h = a1 * self.h + f2.unsqueeze(1) * gh * gh  # type: ignore[union-attr]
        return self._like(f0, g, h)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, o: Any) -> Jet:
        if isinstance(o, Jet):
            return self._like(self.v + o.v, self.g + o.g, None if self.h is None else self.h + o.h)
        return self._like(self.v + o, self.g, self.h)

    __radd__ = __add__

    def __neg__(self) -> Jet:
        return self._like(-self.v, -self.g, None if self.h is None else -self.h)

    def __sub__(self, o: Any) -> Jet:
        return self + (-o)

    def __rsub__(self, o: Any) -> Jet:
        return (-self) + o

    def __mul__(self, o: Any) -> Jet:
        if not isinstance(o, Jet):
            o = torch.as_tensor(o, dtype=self.v.dtype, device=self.v.device)
            a1 = o.unsqueeze(1) if 0 < o.dim() == self.v.dim() else o
            return self._like(self.v * o, self.g * a1, None if self.h is None else self.h * a1)
        sa, oa = self.v.unsqueeze(1), o.v.unsqueeze(1)
        g = sa * o.g + oa * self.g
        h = None
        if self.h is not None:
            h = sa * o.h + oa * self.h + 2 * self.gh * o.gh
        return self._like(self.v * o.v, g, h)

    __rmul__ = __mul__

    def reciprocal(self) -> Jet:
        r = 1.0 / self.v
        return self.apply(r, -r * r, 2 * r * r * r)

    def __truediv__(self, o: Any) -> Jet:
        return self * (o.reciprocal() if isinstance(o, Jet) else 1.0 / o)

    def __rtruediv__(self, o: Any) -> Jet:
        return self.reciprocal() * o

    def __pow__(self, o: Any) -> Jet:
        if isinstance(o, Jet):
            return (o * self.log()).exp()
        p = float(o)
        if p == 2.0:
            return self * self
        v = self.v
        return self.apply(v**p, p * v ** (p - 1), p * (p - 1) * v ** (p - 2))

    def __rpow__(self, o: Any) -> Jet:
        return (self * math.log(float(o))).exp()

    # ------------------------------------------------------------------ elementwise functions
    def sin(self) -> Jet:
        s, c = torch.sin(self.v), torch.cos(self.v)
        return self.apply(s, c, -s)

    def cos(self) -> Jet:
        s, c = torch.sin(self.v), torch.cos(self.v)
        return self.apply(c, -s, -c)

    def tan(self) -> Jet:
        t = torch.tan(self.v)
        s = 1 + t * t
        return self.apply(t, s, 2 * t * s)

    def exp(self) -> Jet:
        e = torch.exp(self.v)
        return self.apply(e, e, e)

    def log(self) -> Jet:
        r = 1.0 / self.v
        return self.apply(torch.log(self.v), r, -r * r)

    def sqrt(self) -> Jet:
        s = torch.sqrt(self.v)
        return self.apply(s, 0.5 / s, -0.25 / (s * self.v))

    def tanh(self) -> Jet:
        t = torch.tanh(self.v)
        s = 1 - t * t
        return self.apply(t, s, -2 * t * s)

    def sinh(self) -> Jet:
        s, c = torch.sinh(self.v), torch.cosh(self.v)
        return self.apply(s, c, s)

    def cosh(self) -> Jet:
        s, c = torch.sinh(self.v), torch.cosh(self.v)
        return self.apply(c, s, c)

    def arctan(self) -> Jet:
        r = 1.0 / (1 + self.v * self.v)
        return self.apply(torch.atan(self.v), r, -2 * self.v * r * r)

    def abs(self) -> Jet:
        s = torch.sign(self.v)
        return self.apply(torch.abs(self.v), s, torch.zeros_like(s))

    def sign(self) -> Jet:
        z = torch.zeros_like(self.v)
        return self.apply(torch.sign(self.v), z, z)

    def heaviside(self) -> Jet:
        z = torch.zeros_like(self.v)
        return self.apply(torch.heaviside(self.v, torch.full_like(self.v, 0.5)), z, z)

    def sigmoid(self) -> Jet:
        s = torch.sigmoid(self.v)
        d1 = s * (1 - s)
        return self.apply(s, d1, d1 * (1 - 2 * s))

    def silu(self) -> Jet:
        s = torch.sigmoid(self.v)
        d1 = s * (1 + self.v * (1 - s))
        d2 = s * (1 - s) * (2 + self.v * (1 - 2 * s))
        return self.apply(self.v * s, d1, d2)

    def gelu(self) -> Jet:
        x = self.v
        cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
        pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return self.apply(x * cdf, cdf + x * pdf, pdf * (2 - x * x))

    def points(self, index: slice) -> Jet:
        """The jet restricted to a range of points (the leading dimension)."""
        return self._like(self.v[index], self.g[index], None if self.h is None else self.h[index])

    def __getitem__(self, idx: Any) -> Jet:
        """Index the trailing (feature) dimensions: ``jet[..., k]``."""
        if not isinstance(idx, tuple):
            idx = (idx,)
        if idx and idx[0] is Ellipsis:
            idx = idx[1:]
        head = (slice(None),)
        return self._like(self.v[head + idx], self.g[head * 2 + idx], None if self.h is None else self.h[head * 2 + idx])


class JetBackend:
    """Lets :meth:`pdesolve.expr.Expression.evaluate` run on jets (and on plain numbers)."""

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        def fn(a: Any) -> Any:
            if isinstance(a, Jet):
                return getattr(a, name)()
            from ..expr import FUNCTIONS

            return FUNCTIONS[name][0](a)

        return fn


class JetDerivatives:
    """The :class:`pdesolve.equations.Derivatives` accessor over a network output jet ``[N, channels]``."""

    def __init__(self, out: Jet, fields: Sequence[str], names: Sequence[str], coords: Tensor):
        self.out, self.fields, self.names, self.coords = out, tuple(fields), tuple(names), coords
        self.space = tuple(n for n in self.names if n != "t")

    def __call__(self, field: str, *axes: str) -> Tensor:
        c = self.fields.index(field)
        idx = [self.names.index(a) for a in axes]
        if not idx:
            return self.out.v[:, c]
        if len(idx) == 1:
            return self.out.g[:, idx[0], c]
        if len(idx) == 2:
            hess = self.out.hess
            if self.out.h is None or idx[0] != idx[1] or not hess.start <= idx[0] < hess.stop:
                raise ValueError(f"the second derivative along {axes} was not propagated; jets carry "
                                 f"u_aa for the axes {self.names[hess]} only")
            return self.out.h[:, idx[0] - hess.start, c]
        raise ValueError(f"derivatives up to order 2 are propagated, got {axes}")

    def coord(self, name: str) -> Tensor:
        return self.coords[:, self.names.index(name)]


class AutogradDerivatives:
    """The same accessor by reverse-mode autograd for any model ``coords [N, d] -> [N, channels]``."""

    def __init__(self, model: Callable[[Tensor], Tensor], coords: Tensor, fields: Sequence[str], names: Sequence[str]):
        self.coords = coords if coords.requires_grad else coords.detach().requires_grad_(True)
        self.out = model(self.coords)
        self.fields, self.names = tuple(fields), tuple(names)
        self.space = tuple(n for n in self.names if n != "t")
        self._cache: dict[tuple[str, ...], Tensor] = {}

    def __call__(self, field: str, *axes: str) -> Tensor:
        key = (field,) + axes
        if key in self._cache:
            return self._cache[key]
        if not axes:
            val = self.out[:, self.fields.index(field)]
        else:
            prev = self(field, *axes[:-1])
            (grad,) = torch.autograd.grad(prev.sum(), self.coords, create_graph=True)
            val = grad[:, self.names.index(axes[-1])]
        self._cache[key] = val
        return val

    def coord(self, name: str) -> Tensor:
        return self.coords[:, self.names.index(name)]
