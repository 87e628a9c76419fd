"""The split ``F(u) = L u + N(u)`` that spectral, exponential and IMEX schemes need, stated by the equation.

``L`` (:class:`LinearPart`) is the stiff linear part with constant coefficients: advection at a constant
speed per space axis, diffusion, dispersion, hyperdiffusion and linear growth. Its Fourier symbol (:meth:`LinearPart.symbol`)
and its action on a grid (:meth:`LinearPart.apply`) are both computed here, from the same coefficients.
The rest ``N`` is one of:

- nothing (``Split.rest is None``): ``F = L u`` exactly, every Fourier or sine mode evolves by ``exp(L t)``;
- :class:`Nonlinear`: ``N(u) = (d/dx)^order g(u)`` on a single space axis, the form a pseudo-spectral
  scheme evaluates in physical space (de-aliased when it carries a derivative);
- :class:`Remainder`: some other form, known only through the equation's grid face as ``F(u) - L u``
  (IMEX schemes can still use ``L``; exact modal evolution cannot).

Coefficients are numbers, or per-trajectory torch tensors shaped to broadcast against the field they
act on (e.g. ``[batch, 1]`` against a 1D spectrum ``[batch, n_k]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def is_zero(value: Any) -> bool:
    """True when a coefficient (a number, numpy array or torch tensor) is zero everywhere."""
    if isinstance(value, (int, float)):
        return value == 0
    return bool((value == 0).all())


@dataclass(frozen=True)
class LinearPart:
    """``L u = -sum_d c_d du/dx_d + diffusion Lap u - dispersion sum_d d^3u/dx_d^3 - hyperdiffusion sum_d d^4u/dx_d^4 + growth u``.

    ``advection``: the speeds ``c_d`` in the order of the space axes (missing trailing axes: 0).
    A coefficient that is zero (the number 0, or zero for every trajectory) is no term at all.
    """

    advection: tuple[Any, ...] = ()
    diffusion: Any = 0.0
    dispersion: Any = 0.0
    growth: Any = 0.0
    hyperdiffusion: Any = 0.0

    @property
    def even(self) -> bool:
        """No advection and no dispersion: the symbol is real and even in k (it also evolves sine modes)."""
        return all(is_zero(c) for c in self.advection) and is_zero(self.dispersion)

    @property
    def pure_advection(self) -> bool:
        """Only advection: ``u_t + c . grad u = 0``, solved by the characteristics ``u0(x - c t)``."""
        return is_zero(self.diffusion) and is_zero(self.dispersion) and is_zero(self.growth) and is_zero(self.hyperdiffusion)

    def symbol(self, k: Sequence[Any], k_odd: Sequence[Any] | None = None) -> Any:
        """The Fourier symbol ``L(k)`` (numpy or torch): ``L u`` of the mode ``exp(i k . x)`` is ``L(k) exp(i k . x)``.

        ``k``: the angular wave numbers per space axis, broadcasting against each other; ``k_odd``: the
        same for the odd derivatives (the caller zeroes a real field's Nyquist entries there), default ``k``.
        """
        odd = k if k_odd is None else k_odd
        out = None
        for c, kd in zip(self.advection, odd):
            if not is_zero(c):
                out = _add(out, -c * (1j * kd))
        if not is_zero(self.diffusion):
            k2 = _sum([kd * kd for kd in k])
            out = -self.diffusion * k2 if out is None else out - self.diffusion * k2
        if not is_zero(self.dispersion):
            out = _add(out, -self.dispersion * _sum([(1j * kd) ** 3 for kd in odd]))
        if not is_zero(self.hyperdiffusion):
            out = _add(out, -self.hyperdiffusion * _sum([(kd * kd) ** 2 for kd in k]))
        if out is None:  # a constant symbol (growth only, or nothing) still has the spectrum's shape
            out = 0 * _sum([kd * kd for kd in k])
            return self.growth + out if not is_zero(self.growth) else out
        return out + self.growth if not is_zero(self.growth) else out

    def apply(self, u: Any, grid: Any) -> Any:
        """``L u`` on a grid (torch ``[..., *space]``), with the grid's derivatives (:meth:`Grid.diff`)."""
        out = 0 * u
        names = [a.name for a in grid.space]
        for c, name in zip(self.advection, names):
            if not is_zero(c):
                out = out - c * grid.diff(u, name)
        if not is_zero(self.diffusion):
            out = out + self.diffusion * _sum([grid.diff(u, name, 2) for name in names])
        if not is_zero(self.dispersion):
            out = out - self.dispersion * _sum([grid.diff(u, name, 3) for name in names])
        if not is_zero(self.hyperdiffusion):
            out = out - self.hyperdiffusion * _sum([grid.diff(u, name, 4) for name in names])
        if not is_zero(self.growth):
            out = out + self.growth * u
        return out


@dataclass(frozen=True)
class Nonlinear:
    """``N(u) = (d/dx)^order g(u)`` along the (single) space axis, coefficients bound in ``g``.

    ``rate(umax, kmax)``: the largest explicit eigenvalue of ``N`` for states with ``|u| <= umax`` resolved
    up to the wave number ``kmax`` (per trajectory, or a number); it sets the automatic step.
    """

    g: Callable[[Any], Any]
    order: int = 0
    rate: Callable[[float, float], Any] = lambda umax, kmax: 0.0


@dataclass(frozen=True)
class Remainder:
    """A rest ``N(u) = F(u) - L u`` of no form a scheme can exploit; ``note`` says what it is."""

    note: str = ""


@dataclass(frozen=True)
class Split:
    """``u_t = L u + N(u)``: the linear part and the rest (None: ``F = L u``)."""

    linear: LinearPart
    rest: Nonlinear | Remainder | None = None


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a + b


def _sum(terms: Sequence[Any]) -> Any:
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out
