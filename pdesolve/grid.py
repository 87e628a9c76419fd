"""Grid: an immutable uniform structured mesh, with the operations the back-ends share.

An axis is either periodic (``n`` points ``lo + i h`` with ``h = (hi - lo) / n``, the end point excluded)
or bounded (``n`` points from ``lo`` to ``hi`` inclusive, ``h = (hi - lo) / (n - 1)``). A Grid has space
axes and, optionally, a time axis named ``t`` (always bounded). Fields on a grid are laid out as
``[batch, time, channel, *space]`` (``[batch, channel, *space]`` on a grid without time).

Shared operations: :meth:`Grid.coarsen`, :meth:`Grid.stagger` / :meth:`Grid.unstagger` (the interleaved
coarse sub-grids NeuralStagger trains on; an exact inverse pair), :meth:`Grid.partition` (the boxes that
mixture-of-experts solvers own) and spectral / finite-difference derivatives.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


class GridError(ValueError):
    """Grids that do not fit together, or a grid operation asked for something impossible."""


@dataclass(frozen=True)
class GridAxis:
    """One axis of a uniform grid."""

    name: str
    lo: float
    hi: float
    n: int
    periodic: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise GridError(f"axis name must be an identifier, got {self.name!r}")
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or self.hi <= self.lo:
            raise GridError(f"axis {self.name!r}: expected lo < hi, got lo={self.lo}, hi={self.hi}")
        if int(self.n) != self.n or self.n < (1 if self.periodic else 2):
            raise GridError(f"axis {self.name!r}: expected at least {1 if self.periodic else 2} points, got n={self.n}")
        if self.periodic and self.name == "t":
            raise GridError("the time axis 't' cannot be periodic")

    @property
    def spacing(self) -> float:
        return (self.hi - self.lo) / (self.n if self.periodic else self.n - 1)

    @property
    def length(self) -> float:
        return self.hi - self.lo

    @property
    def coords(self) -> np.ndarray:
        """The grid points, float64."""
        return self.lo + self.spacing * np.arange(self.n, dtype=np.float64)


@dataclass(frozen=True)
class Partition:
    """One box of a partitioned grid: its own (bounded) sub-grid and where it sits in the parent."""

    index: tuple[int, ...]
    grid: Grid
    slices: tuple[slice, ...]  # one per grid axis, in the grid's axis order (time first if present)


@dataclass(frozen=True)
class Grid:
    """A uniform structured mesh: space axes in order, plus an optional time axis."""

    space: tuple[GridAxis, ...]
    time: GridAxis | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "space", tuple(self.space))
        names = [a.name for a in self.space]
        if not names:
            raise GridError("a grid needs at least one space axis")
        if len(set(names)) != len(names):
            raise GridError(f"axis names must be unique, got {names}")
        if "t" in names:
            raise GridError("'t' is the time axis; pass it as time=GridAxis('t', ...)")
        if self.time is not None and self.time.name != "t":
            raise GridError(f"the time axis must be named 't', got {self.time.name!r}")

    # ----------------------------------------------------------------- construction and description
    @classmethod
    def box(cls, bounds: Mapping[str, tuple[float, float]], shape: Mapping[str, int], periodic: Sequence[str] = ()) -> Grid:
        """A grid from ``{"x": (lo, hi), ..., "t": (t0, t1)}`` and ``{"x": n, ...}``."""
        missing = set(bounds) - set(shape)
        if missing:
            raise GridError(f"no point count given for axes {sorted(missing)}")
        space = tuple(GridAxis(k, float(lo), float(hi), int(shape[k]), k in periodic) for k, (lo, hi) in bounds.items() if k != "t")
        time = GridAxis("t", float(bounds["t"][0]), float(bounds["t"][1]), int(shape["t"])) if "t" in bounds else None
        return cls(space, time)

    @property
    def axes(self) -> tuple[GridAxis, ...]:
        """All axes, time first (the column order of :meth:`points`)."""
        return ((self.time,) if self.time is not None else ()) + self.space

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def space_shape(self) -> tuple[int, ...]:
        return tuple(a.n for a in self.space)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of points per axis, time first."""
        return tuple(a.n for a in self.axes)

    @property
    def ndim(self) -> int:
        return len(self.space)

    def axis(self, name: str) -> GridAxis:
        for a in self.axes:
            if a.name == name:
                return a
        raise GridError(f"no axis {name!r}; this grid has {list(self.names)}")

    def coords(self, name: str) -> np.ndarray:
        return self.axis(name).coords

    def mesh(self) -> dict[str, np.ndarray]:
        """Coordinate arrays of shape :attr:`shape` (time first), one per axis."""
        arrays = np.meshgrid(*(a.coords for a in self.axes), indexing="ij")
        return dict(zip(self.names, arrays))

    def points(self) -> np.ndarray:
        """All grid points as rows ``[N, ndim(+1)]``, columns in the order (t, x, y, z)."""
        return np.stack([m.reshape(-1) for m in self.mesh().values()], axis=1)

    def check_same(self, other: Grid, what: str = "fields") -> None:
        """Raise a :class:`GridError` that lists every differing value if ``other`` is another grid."""
        if self == other:
            return
        diffs = []
        for a, b in itertools.zip_longest(self.axes, other.axes):
            if a != b:
                diffs.append(f"{a} vs {b}")
        raise GridError(f"{what} live on different grids: " + "; ".join(diffs))

    # ---------------------------------------------------------------- coarsening and staggering
    def coarsen(self, factor: int | Mapping[str, int]) -> Grid:
        """Every ``factor``-th point (bounded axes keep both end points)."""
        factors = self._factors(factor)
        return self._map_axes(lambda a, f: _coarsen_axis(a, f), factors)

    def restrict(self, u: Any, factor: int | Mapping[str, int]) -> Any:
        """Sample a field ``[..., (time,) channel, *space]`` on :meth:`coarsen`'s grid."""
        factors = self._factors(factor)
        self.coarsen(factors)  # validates divisibility
        index: list[Any] = [slice(None)] * _ndim(u)
        for dim, a in zip(self._dims(u), self.axes):
            index[dim] = slice(None, None, factors[a.name])
        return u[tuple(index)]

    def stagger_grids(self, factor: int | Mapping[str, int]) -> list[Grid]:
        """The interleaved sub-grids, in the order of :meth:`stagger`'s sub-grid dimension."""
        factors = self._factors(factor)
        for a in self.axes:
            _check_stagger(a, factors[a.name])
        grids = []
        for offsets in itertools.product(*(range(factors[a.name]) for a in self.axes)):
            off = dict(zip(self.names, offsets))
            grids.append(self._map_axes(lambda a, f, off=off: _stagger_axis(a, f, off[a.name]), factors))
        return grids

    def stagger(self, u: Any, factor: int | Mapping[str, int]) -> Any:
        """Split a field into its interleaved coarse sub-fields.

        ``u``: ``[batch, (time,) channel, *space]`` on this grid -> ``[batch, S, (time/ft,) channel,
        *space/f]`` with ``S`` = product of the factors; sub-field ``k`` lives on ``stagger_grids()[k]``.
        Works on numpy arrays and torch tensors alike; :meth:`unstagger` is its exact inverse.
        """
        factors = self._factors(factor)
        for a in self.axes:
            _check_stagger(a, factors[a.name])
        self._check_field(u)
        dims = self._dims(u)
        fs = [factors[a.name] for a in self.axes]
        shape = list(u.shape)
        new_shape: list[int] = []
        for d, size in enumerate(shape):
            if d in dims:
                f = fs[dims.index(d)]
                new_shape += [size // f, f]
            else:
                new_shape.append(size)
        v = u.reshape(new_shape)
        # positions of the factor dims in the reshaped array
        pos, offset_dims = 0, []
        for d in range(len(shape)):
            if d in dims:
                offset_dims.append(pos + 1)
                pos += 2
            else:
                pos += 1
        rest = [d for d in range(len(new_shape)) if d not in offset_dims]
        order = [rest[0]] + offset_dims + rest[1:]
        v = _permute(v, order)
        return v.reshape([shape[0], int(np.prod(fs))] + [new_shape[d] for d in rest[1:]])

    def unstagger(self, v: Any, factor: int | Mapping[str, int]) -> Any:
        """Inverse of :meth:`stagger`: ``[batch, S, ...coarse]`` -> ``[batch, ...fine]``."""
        factors = self._factors(factor)
        fs = [factors[a.name] for a in self.axes]
        if v.shape[1] != int(np.prod(fs)):
            raise GridError(f"expected {int(np.prod(fs))} sub-grids on dimension 1, got shape {tuple(v.shape)}")
        coarse = list(v.shape[2:])  # (time,) channel, *space
        k = len(self.axes)
        v = v.reshape([v.shape[0]] + fs + coarse)
        # coarse dims that are grid axes: time (if any) is coarse[0], space are the last ndim
        axis_dims = ([0] if self.time is not None else []) + list(range(len(coarse) - self.ndim, len(coarse)))
        order = [0]
        for j in range(len(coarse)):
            order.append(1 + k + j)
            if j in axis_dims:
                order.append(1 + axis_dims.index(j))
        v = _permute(v, order)
        fine = [c * fs[axis_dims.index(j)] if j in axis_dims else c for j, c in enumerate(coarse)]
        return v.reshape([v.shape[0]] + fine)

    # ------------------------------------------------------------------------------ partitioning
    def partition(self, counts: Mapping[str, int]) -> list[Partition]:
        """Split into boxes, ``counts[axis]`` pieces along each named axis (1 for the others).

        Pieces are contiguous index ranges as equal as possible; each piece's sub-grid is bounded
        (a box has two real faces even where the parent axis is periodic).
        """
        unknown = set(counts) - set(self.names)
        if unknown:
            raise GridError(f"cannot partition along {sorted(unknown)}; this grid has {list(self.names)}")
        ranges = []
        for a in self.axes:
            k = int(counts.get(a.name, 1))
            if k < 1 or k > a.n // 2:
                raise GridError(f"axis {a.name!r} with {a.n} points cannot be split into {k} pieces (need 1 <= k <= n/2)")
            bounds = np.linspace(0, a.n, k + 1).round().astype(int)
            ranges.append([(int(bounds[i]), int(bounds[i + 1])) for i in range(k)])
        parts = []
        for idx in itertools.product(*(range(len(r)) for r in ranges)):
            slices, axes = [], []
            for a, r, i in zip(self.axes, ranges, idx):
                s, e = r[i]
                c = a.coords
                slices.append(slice(s, e))
                axes.append(GridAxis(a.name, float(c[s]), float(c[e - 1]), e - s, False))
            time = axes[0] if self.time is not None else None
            space = tuple(axes[1:] if self.time is not None else axes)
            parts.append(Partition(tuple(idx), Grid(space, time), tuple(slices)))
        return parts

    # ------------------------------------------------------------------------------- derivatives
    def diff(self, u: Any, name: str, order: int = 1) -> Any:
        """Derivative of a torch field ``[..., *space]`` along a space axis.

        Periodic axes: exact spectral differentiation (FFT). Bounded axes: second-order central
        differences inside and second-order one-sided differences at the two ends; the second derivative
        is the standard three-point difference ``(u[i-1] - 2 u[i] + u[i+1]) / h^2`` inside (what finite
        difference time steppers use, so a grid residual matches their steps) with the four-point one-sided
        formula at the ends (three points: the one interior value everywhere); other orders repeat the
        first derivative.
        """
        import torch

        a = self.axis(name)
        if a.name == "t":
            raise GridError("diff() takes space axes; time derivatives belong to the time stepper")
        dim = u.dim() - self.ndim + [s.name for s in self.space].index(name)
        if a.periodic:
            k = 2 * math.pi * torch.fft.fftfreq(a.n, d=a.spacing, dtype=u.dtype if u.is_floating_point() else None).to(u.device)
            shape = [1] * u.dim()
            shape[dim] = a.n
            mult = (1j * k) ** order
            if order % 2 == 1 and a.n % 2 == 0:
                mult[a.n // 2] = 0  # the Nyquist mode has no odd derivative on a real field
            return torch.fft.ifft(torch.fft.fft(u, dim=dim) * mult.reshape(shape), dim=dim).real.to(u.dtype)
        if order == 2:
            return _fd_second(u, dim, a.spacing)
        out = u
        for _ in range(order):
            out = _fd_first(out, dim, a.spacing)
        return out

    # --------------------------------------------------------------------------------- internals
    def _factors(self, factor: int | Mapping[str, int]) -> dict[str, int]:
        if isinstance(factor, Mapping):
            unknown = set(factor) - set(self.names)
            if unknown:
                raise GridError(f"unknown axes {sorted(unknown)}; this grid has {list(self.names)}")
            return {a.name: int(factor.get(a.name, 1)) for a in self.axes}
        return {a.name: int(factor) if a.name != "t" else 1 for a in self.axes}

    def _map_axes(self, fn, factors: Mapping[str, int]) -> Grid:
        space = tuple(fn(a, factors[a.name]) for a in self.space)
        time = fn(self.time, factors["t"]) if self.time is not None else None
        return replace(self, space=space, time=time)

    def _dims(self, u: Any) -> list[int]:
        """Array dimensions of the grid axes in a field ``[batch, (time,) channel, *space]``."""
        nd = _ndim(u)
        space = list(range(nd - self.ndim, nd))
        return ([1] if self.time is not None else []) + space

    def _check_field(self, u: Any) -> None:
        expected = (1 if self.time is None else 2) + 1 + self.ndim
        got = tuple(u.shape)
        dims = self._dims(u)
        if len(got) != expected or tuple(got[d] for d in dims) != self.shape:
            layout = "[batch, " + ("time, " if self.time is not None else "") + "channel, *space]"
            raise GridError(f"expected a field {layout} with grid sizes {self.shape}, got shape {got}")


def _ndim(u: Any) -> int:
    return u.ndim if hasattr(u, "ndim") else len(u.shape)


def _permute(v: Any, order: list[int]) -> Any:
    return np.transpose(v, order) if isinstance(v, np.ndarray) else v.permute(*order)


def _coarsen_axis(a: GridAxis, f: int) -> GridAxis:
    if f == 1:
        return a
    if a.periodic:
        if a.n % f:
            raise GridError(f"axis {a.name!r}: {a.n} periodic points are not divisible by {f}")
        return replace(a, n=a.n // f)
    if (a.n - 1) % f:
        raise GridError(f"axis {a.name!r}: {a.n} bounded points need (n - 1) divisible by {f}")
    return replace(a, n=(a.n - 1) // f + 1)


def _check_stagger(a: GridAxis, f: int) -> None:
    if f < 1 or a.n % f or a.n // f < (1 if a.periodic else 2):
        raise GridError(f"axis {a.name!r}: cannot stagger {a.n} points by {f} (n must be a multiple of the factor)")


def _stagger_axis(a: GridAxis, f: int, offset: int) -> GridAxis:
    if f == 1:
        return a
    h, m = a.spacing, a.n // f
    lo = a.lo + offset * h
    if a.periodic:
        return GridAxis(a.name, lo, lo + a.length, m, True)
    return GridAxis(a.name, lo, lo + (m - 1) * f * h, m, False)


def _fd_first(u, dim: int, h: float):
    import torch

    n = u.shape[dim]
    inner = (u.narrow(dim, 2, n - 2) - u.narrow(dim, 0, n - 2)) / (2 * h)
    first = (-3 * u.narrow(dim, 0, 1) + 4 * u.narrow(dim, 1, 1) - u.narrow(dim, 2, 1)) / (2 * h)
    last = (3 * u.narrow(dim, n - 1, 1) - 4 * u.narrow(dim, n - 2, 1) + u.narrow(dim, n - 3, 1)) / (2 * h)
    return torch.cat([first, inner, last], dim=dim)


def _fd_second(u, dim: int, h: float):
    import torch

    n = u.shape[dim]
    if n < 3:
        raise GridError(f"a second difference needs at least 3 points on a bounded axis, got {n}")
    inner = (u.narrow(dim, 0, n - 2) - 2 * u.narrow(dim, 1, n - 2) + u.narrow(dim, 2, n - 2)) / (h * h)
    if n == 3:
        return torch.cat([inner, inner, inner], dim=dim)
    first = (2 * u.narrow(dim, 0, 1) - 5 * u.narrow(dim, 1, 1) + 4 * u.narrow(dim, 2, 1) - u.narrow(dim, 3, 1)) / (h * h)
    last = (2 * u.narrow(dim, n - 1, 1) - 5 * u.narrow(dim, n - 2, 1) + 4 * u.narrow(dim, n - 3, 1) - u.narrow(dim, n - 4, 1)) / (h * h)
    return torch.cat([first, inner, last], dim=dim)
