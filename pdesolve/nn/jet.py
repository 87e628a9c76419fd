"""Forward-mode jets: value, gradient and the pure higher derivatives carried through a computation at once.

A PINN residual needs u, u_t, u_x and u_xx (KdV u_xxx, Kuramoto-Sivashinsky u_xxxx) at thousands of points.
Nested reverse-mode autograd builds one graph per derivative order and walks them with Python overhead per
derivative; a jet propagates all derivatives alongside the value in one forward pass (each dense layer is
a single matmul on the stacked value/derivative rows: Taylor-mode differentiation, Griewank and Walther,
"Evaluating Derivatives", ch. 13), and one ordinary backward pass then trains through it.

Shapes: ``v`` is ``[N, *S]``, ``g`` is ``[N, d, *S]`` (d input coordinates), ``h`` is ``[N, k, *S]``: the
*diagonal* second derivatives along the ``k`` coordinates ``hess`` (a slice of the coordinate columns,
usually the space axes), or None when only first derivatives are carried; ``hi`` holds the pure third and
fourth derivatives along the same axes (``hi[0]`` = d3/dx_i3, ``hi[1]`` = d4/dx_i4, each ``[N, k, *S]``), empty
unless an equation needs them. Every shipped equation needs only pure derivatives along each axis (no mixed
or time second derivatives), and carrying those alone keeps the stacked rows at ``1 + d + (order - 1) k``
instead of growing like ``d^order``: the cost of a jet pass is memory traffic proportional to that row count.
An equation that reads mixed second derivatives (``u_xy``) asks for exactly those: ``mixed`` lists the pairs of
coordinate columns ``(i, j)``, ``i < j``, and ``m`` ``[N, len(mixed), *S]`` carries d2/dx_i dx_j for each (the last
row; none when ``mixed`` is empty). Their rules are the second-order ones across two directions::

    y_ij = f1 x_ij + f2 x_i x_j                    (elementwise function)
    (ab)_ij = a b_ij + a_i b_j + a_j b_i + a_ij b  (product)

The chain rule along one axis is Faa di Bruno's formula; with ``x1 .. x4`` the derivatives of the
argument and ``f1 .. f4`` those of an elementwise function at the value::

    y2 = f1 x2 + f2 x1^2
    y3 = f1 x3 + 3 f2 x1 x2 + f3 x1^3
    y4 = f1 x4 + f2 (4 x1 x3 + 3 x2^2) + 6 f3 x1^2 x2 + f4 x1^4

and products follow Leibniz's rule with binomial weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

MAX_ORDER = 4
"""The highest derivative order a jet carries."""

Lazy = Tensor | Callable[[], Tensor]
"""A derivative of an elementwise function, or a function computing it (evaluated only when carried)."""


def _value(f: Lazy) -> Tensor:
    return f() if callable(f) else f


class Jet:
    """A value with its derivatives with respect to the ``d`` input coordinates."""

    __slots__ = ("v", "g", "h", "hess", "hi", "mixed", "m")

    def __init__(self, v: Tensor, g: Tensor, h: Tensor | None, hess: slice = slice(0, 0), hi: tuple[Tensor, ...] = (),
                 mixed: tuple[tuple[int, int], ...] = (), m: Tensor | None = None):
        self.v, self.g, self.h, self.hess, self.hi = v, g, h, hess, hi
        self.mixed, self.m = (mixed, m) if m is not None else ((), None)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def variables(coords: Tensor, order: int = 2, hess: slice | None = None, mixed: Sequence[tuple[int, int]] = ()) -> list[Jet]:
        """One jet per column of ``coords`` ``[N, d]``: the coordinate itself, unit gradient, zero higher derivatives.

        ``order`` (1 to 4) is the highest derivative carried; ``hess`` selects the columns whose pure higher
        derivatives are carried (default: all); ``mixed`` the pairs of columns ``(i, j)`` whose mixed second
        derivative is carried too (order 2 or more).
        """
        if not 1 <= order <= MAX_ORDER:
            raise ValueError(f"jets carry derivatives of order 1 to {MAX_ORDER}, got order {order}")
        n, d = coords.shape
        hess = slice(0, d) if hess is None else slice(*hess.indices(d)[:2])
        k = hess.stop - hess.start
        pairs = tuple((min(i, j), max(i, j)) for i, j in mixed)
        if any(i == j or not 0 <= i < d or not 0 <= j < d for i, j in pairs):
            raise ValueError(f"mixed derivatives are pairs of two different columns among {d}, got {list(mixed)}")
        pairs = pairs if order >= 2 else ()
        eye = torch.eye(d, dtype=coords.dtype, device=coords.device)
        out = []
        for i in range(d):
            g = eye[i].expand(n, d)
            h = coords.new_zeros(n, k) if order >= 2 else None
            hi = tuple(coords.new_zeros(n, k) for _ in range(order - 2))
            m = coords.new_zeros(n, len(pairs)) if pairs else None
            out.append(Jet(coords[:, i], g, h, hess, hi, pairs, m))
        return out

    @staticmethod
    def stack(jets: Sequence[Jet | Tensor | float], dim: int = -1) -> Jet:
        """Stack scalar jets ``[N]`` into ``[N, k]`` (constants allowed)."""
        ref = next(j for j in jets if isinstance(j, Jet))
        js = [j if isinstance(j, Jet) else ref._const(j) for j in jets]
        return ref.from_rows([torch.stack(parts, dim=-1) for parts in zip(*(j.rows() for j in js))])

    @staticmethod
    def cat(jets: Sequence[Jet]) -> Jet:
        """Concatenate jets ``[N, k_i]`` along the feature (last) dimension."""
        return jets[0].from_rows([torch.cat(parts, dim=-1) for parts in zip(*(j.rows() for j in jets))])

    @property
    def dim(self) -> int:
        return self.g.shape[1]

    @property
    def order(self) -> int:
        """The highest derivative order carried."""
        return 1 if self.h is None else 2 + len(self.hi)

    def rows(self) -> list[Tensor]:
        """The jet's tensors in order: value ``[N, *S]``, gradient ``[N, d, *S]``, then each higher order ``[N, k, *S]``,
        then the mixed second derivatives ``[N, len(mixed), *S]`` if carried."""
        return [self.v, self.g] + ([] if self.h is None else [self.h, *self.hi]) + ([] if self.m is None else [self.m])

    def from_rows(self, rows: Sequence[Tensor]) -> Jet:
        """A jet of this one's axes from tensors shaped like :meth:`rows`."""
        rows, m = (rows[:-1], rows[-1]) if self.m is not None else (rows, None)
        return Jet(rows[0], rows[1], rows[2] if len(rows) > 2 else None, self.hess, tuple(rows[3:]), self.mixed, m)

    def map(self, fn: Callable[[Tensor], Tensor]) -> Jet:
        """``fn`` applied to every tensor of the jet (detach, move, index, ...)."""
        return self.from_rows([fn(r) for r in self.rows()])

    def _const(self, c: Tensor | float) -> Jet:
        v = torch.as_tensor(c, dtype=self.v.dtype, device=self.v.device).expand_as(self.v)
        return self.from_rows([v] + [torch.zeros_like(r) for r in self.rows()[1:]])

    def _like(self, v: Tensor, g: Tensor, h: Tensor | None, hi: tuple[Tensor, ...] = (), m: Tensor | None = None) -> Jet:
        return Jet(v, g, h, self.hess, hi, self.mixed, m)

    def _pair_grads(self) -> tuple[Tensor, Tensor]:
        """The first derivatives along the two columns of each mixed pair, ``[N, len(mixed), *S]`` each."""
        i, j = zip(*self.mixed)
        return self.g[:, list(i)], self.g[:, list(j)]

    @property
    def gh(self) -> Tensor:
        """The first derivatives along the ``hess`` columns, ``[N, k, *S]`` (a view)."""
        return self.g[:, self.hess]

    # ------------------------------------------------------------------ layers
    def linear(self, weight: Tensor, bias: Tensor | None) -> Jet:
        """``x W^T + b`` on the last dimension: one matmul over all stacked rows."""
        d = self.g.shape[1]
        parts = [self.v.unsqueeze(1)] + self.rows()[1:]
        rows = torch.cat(parts, dim=1) @ weight.T  # [N, 1 + d + (order - 1) k (+ mixed), out]
        v = rows[:, 0] + bias if bias is not None else rows[:, 0]
        if self.h is None:
            return self._like(v, rows[:, 1 : 1 + d], None)
        sizes = [self.h.shape[1]] * (1 + len(self.hi)) + ([] if self.m is None else [self.m.shape[1]])
        higher = rows[:, 1 + d :].split(sizes, dim=1)
        m = higher[-1] if self.m is not None else None
        return self._like(v, rows[:, 1 : 1 + d], higher[0], tuple(higher[1 : 1 + len(self.hi)]), m)

    def apply(self, f0: Tensor, f1: Tensor, *f: Lazy) -> Jet:
        """Chain rule for an elementwise function with value ``f0`` and derivatives ``f1, f2, ...`` at ``self.v``.

        Derivatives beyond the jet's order are never evaluated (pass them as functions to skip their cost).
        """
        a1 = f1.unsqueeze(1)
        g = a1 * self.g
        if self.h is None:
            return self._like(f0, g, None)
        x1, x2 = self.gh, self.h
        f2 = _value(f[0]).unsqueeze(1)
        h = a1 * x2 + f2 * x1 * x1
        hi: tuple[Tensor, ...] = ()
        if self.hi:
            f3, x3 = _value(f[1]).unsqueeze(1), self.hi[0]
            x1sq = x1 * x1
            hi = (a1 * x3 + 3 * f2 * x1 * x2 + f3 * x1sq * x1,)
            if len(self.hi) > 1:
                f4 = _value(f[2]).unsqueeze(1)
                hi += (a1 * self.hi[1] + f2 * (4 * x1 * x3 + 3 * x2 * x2) + 6 * f3 * x1sq * x2 + f4 * x1sq * x1sq,)
        m = None
        if self.m is not None:
            xi, xj = self._pair_grads()
            m = a1 * self.m + f2 * xi * xj
        return self._like(f0, g, h, hi, m)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, o: Any) -> Jet:
        if isinstance(o, Jet):
            return self.from_rows([a + b for a, b in zip(self.rows(), o.rows())])
        return self._like(self.v + o, self.g, self.h, self.hi, self.m)

    __radd__ = __add__

    def __neg__(self) -> Jet:
        return self.map(torch.neg)

    def __sub__(self, o: Any) -> Jet:
        return self + (-o)

    def __rsub__(self, o: Any) -> Jet:
        return (-self) + o

    def __mul__(self, o: Any) -> Jet:
        if not isinstance(o, Jet):
            o = torch.as_tensor(o, dtype=self.v.dtype, device=self.v.device)
            a1 = o.unsqueeze(1) if 0 < o.dim() == self.v.dim() else o
            rows = self.rows()
            return self.from_rows([rows[0] * o] + [r * a1 for r in rows[1:]])
        sa, oa = self.v.unsqueeze(1), o.v.unsqueeze(1)
        g = sa * o.g + oa * self.g
        if self.h is None:
            return self._like(self.v * o.v, g, None)
        a1, b1 = self.gh, o.gh
        h = sa * o.h + oa * self.h + 2 * a1 * b1
        hi: tuple[Tensor, ...] = ()
        if self.hi:  # Leibniz: (ab)''' = a b''' + 3 a' b'' + 3 a'' b' + a''' b, and likewise with 1 4 6 4 1
            a2, b2, a3, b3 = self.h, o.h, self.hi[0], o.hi[0]
            hi = (sa * b3 + 3 * (a1 * b2 + a2 * b1) + a3 * oa,)
            if len(self.hi) > 1:
                hi += (sa * o.hi[1] + 4 * (a1 * b3 + a3 * b1) + 6 * a2 * b2 + self.hi[1] * oa,)
        m = None
        if self.m is not None:
            (ai, aj), (bi, bj) = self._pair_grads(), o._pair_grads()
            m = sa * o.m + ai * bj + aj * bi + self.m * oa
        return self._like(self.v * o.v, g, h, hi, m)

    __rmul__ = __mul__

    def reciprocal(self) -> Jet:
        r = 1.0 / self.v
        r2 = r * r
        return self.apply(r, -r2, 2 * r2 * r, lambda: -6 * r2 * r2, lambda: 24 * r2 * r2 * r)

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
        return self.apply(v**p, p * v ** (p - 1), p * (p - 1) * v ** (p - 2), lambda: p * (p - 1) * (p - 2) * v ** (p - 3),
                          lambda: p * (p - 1) * (p - 2) * (p - 3) * v ** (p - 4))

    def __rpow__(self, o: Any) -> Jet:
        return (self * math.log(float(o))).exp()

    # ------------------------------------------------------------------ elementwise functions
    def sin(self) -> Jet:
        s, c = torch.sin(self.v), torch.cos(self.v)
        return self.apply(s, c, -s, lambda: -c, s)

    def cos(self) -> Jet:
        s, c = torch.sin(self.v), torch.cos(self.v)
        return self.apply(c, -s, -c, s, c)

    def tan(self) -> Jet:
        t = torch.tan(self.v)
        s = 1 + t * t
        return self.apply(t, s, 2 * t * s, lambda: 2 * s * (1 + 3 * t * t), lambda: 8 * t * s * (2 + 3 * t * t))

    def exp(self) -> Jet:
        e = torch.exp(self.v)
        return self.apply(e, e, e, e, e)

    def log(self) -> Jet:
        r = 1.0 / self.v
        r2 = r * r
        return self.apply(torch.log(self.v), r, -r2, lambda: 2 * r2 * r, lambda: -6 * r2 * r2)

    def sqrt(self) -> Jet:
        s, v = torch.sqrt(self.v), self.v
        return self.apply(s, 0.5 / s, -0.25 / (s * v), lambda: 0.375 / (s * v * v), lambda: -0.9375 / (s * v * v * v))

    def tanh(self) -> Jet:
        t = torch.tanh(self.v)
        s = 1 - t * t
        return self.apply(t, s, -2 * t * s, lambda: -2 * s * (1 - 3 * t * t), lambda: 8 * t * s * (2 - 3 * t * t))

    def sinh(self) -> Jet:
        s, c = torch.sinh(self.v), torch.cosh(self.v)
        return self.apply(s, c, s, c, s)

    def cosh(self) -> Jet:
        s, c = torch.sinh(self.v), torch.cosh(self.v)
        return self.apply(c, s, c, s, c)

    def arctan(self) -> Jet:
        v = self.v
        r = 1.0 / (1 + v * v)
        return self.apply(torch.atan(v), r, -2 * v * r * r, lambda: (6 * v * v - 2) * r**3, lambda: 24 * v * (1 - v * v) * r**4)

    def abs(self) -> Jet:
        s = torch.sign(self.v)
        z = torch.zeros_like(s)
        return self.apply(torch.abs(self.v), s, z, z, z)

    def sign(self) -> Jet:
        z = torch.zeros_like(self.v)
        return self.apply(torch.sign(self.v), z, z, z, z)

    def heaviside(self) -> Jet:
        z = torch.zeros_like(self.v)
        return self.apply(torch.heaviside(self.v, torch.full_like(self.v, 0.5)), z, z, z, z)

    def sigmoid(self) -> Jet:
        s = torch.sigmoid(self.v)
        d1 = s * (1 - s)
        return self.apply(s, d1, d1 * (1 - 2 * s), lambda: d1 * (1 - 6 * d1), lambda: d1 * (1 - 2 * s) * (1 - 12 * d1))

    def silu(self) -> Jet:
        # (x s)^(n) = x s^(n) + n s^(n-1), with the sigmoid's derivatives s' = d1, s'' = d1 (1 - 2s), s''' = d1 (1 - 6 d1)
        x, s = self.v, torch.sigmoid(self.v)
        d1 = s * (1 - s)
        d2 = d1 * (1 - 2 * s)
        return self.apply(x * s, s + x * d1, 2 * d1 + x * d2, lambda: 3 * d2 + x * d1 * (1 - 6 * d1),
                          lambda: 4 * d1 * (1 - 6 * d1) + x * d2 * (1 - 12 * d1))

    def gelu(self) -> Jet:
        # (x Phi)^(n) = x Phi^(n) + n Phi^(n-1), with Phi' = phi and phi' = -x phi
        x = self.v
        cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
        pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        x2 = x * x
        return self.apply(x * cdf, cdf + x * pdf, pdf * (2 - x2), lambda: pdf * x * (x2 - 4), lambda: pdf * (7 * x2 - 4 - x2 * x2))

    def points(self, index: slice) -> Jet:
        """The jet restricted to a range of points (the leading dimension)."""
        return self.map(lambda r: r[index])

    def __getitem__(self, idx: Any) -> Jet:
        """Index the trailing (feature) dimensions: ``jet[..., k]``."""
        if not isinstance(idx, tuple):
            idx = (idx,)
        if idx and idx[0] is Ellipsis:
            idx = idx[1:]
        head = (slice(None),)
        rows = self.rows()
        return self.from_rows([rows[0][head + idx]] + [r[head * 2 + idx] for r in rows[1:]])


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
        out, hess = self.out, self.out.hess
        if len(idx) == 2 and idx[0] != idx[1]:
            pair = (min(idx), max(idx))
            if pair not in out.mixed:
                raise ValueError(f"the mixed derivative along {axes} was not propagated; jets carry pure derivatives (u_aa, ...) "
                                 f"and the mixed pairs {[(self.names[i], self.names[j]) for i, j in out.mixed]} only")
            return out.m[:, out.mixed.index(pair), c]  # type: ignore[index]
        if len(set(idx)) > 1 or not hess.start <= idx[0] < hess.stop:
            raise ValueError(f"the derivative along {axes} was not propagated; jets carry pure derivatives (u_aa, u_aaa, ...) "
                             f"along the axes {self.names[hess]} only")
        if len(idx) > out.order:
            raise ValueError(f"the derivative along {axes} (order {len(idx)}) was not propagated; the jets carry up to order {out.order}")
        return out.rows()[len(idx)][:, idx[0] - hess.start, c]

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
