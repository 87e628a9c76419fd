"""Space domains beyond boxes: shapes, their CSG combinations and the :class:`Region` a solver samples from.

A :class:`Geometry` is a closed region of R^d with named boundary parts (a CSG difference of a rectangle and
a disk has the parts of the rectangle and the part ``hole``). Solvers ask it for interior and boundary
points, outward normals and which part a boundary point lies on; figures and metrics ask ``inside`` on a
grid over its bounding box. A problem without a geometry is a box (``Domain.space``).

The shapes are plain typed values (:class:`Interval`, :class:`Rectangle`, :class:`Disk`, :class:`Polygon`,
:class:`Triangle`, :class:`Cuboid`, :class:`Sphere`, and :class:`Union`, :class:`Difference`,
:class:`Intersection` of them) that check themselves (:meth:`Shape.errors`); :class:`Region` is the one
implementation of :class:`Geometry`, backed by ``deepxde.geometry`` (Lu et al., "DeepXDE: a deep learning
library for solving differential equations", SIAM Review 63, 2021): membership, boundary tests, normals and
point sampling are DeepXDE's, in float64.

**Boundary parts.** Each primitive is one part, named by its ``name`` or by default after its kind
(``rectangle``, ``disk``, a second unnamed disk ``disk_2``). A boundary point of the composite belongs to the
part of the primitive on whose boundary it lies (the first primitive in declaration order where two meet, at
corners). Normals point out of the composite region: on a hole (the second operand of a difference) they
point into the hole, towards its centre.

**Sampling.** DeepXDE draws from numpy's global random state; :class:`Region` seeds that state from the caller's
``numpy.random.Generator`` for the duration of one call and restores it afterwards, so that a run's points depend
on its seed only. Boundary points are drawn primitive by primitive, in proportion to each primitive's boundary
measure, and those that lie on the composite boundary are kept: uniform in arc length (surface area) on the
composite boundary, each point with its part by construction.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from .errors import UserError


class Geometry(Protocol):
    """A region of space with named boundary parts; coordinates are columns in the order of ``Domain.space``."""

    dim: int
    parts: tuple[str, ...]  # names of the boundary parts, in declaration order

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounding box ``(lo [d], hi [d])``."""
        ...

    def inside(self, points: np.ndarray) -> np.ndarray:
        """``bool [N]``: the points ``[N, d]`` in the closed region."""
        ...

    def sample_interior(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points ``[n, d]`` drawn uniformly inside the region."""
        ...

    def sample_boundary(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points ``[n, d]`` on the boundary and the index into ``parts`` of the part each lies on ``[n]``."""
        ...

    def normals(self, points: np.ndarray) -> np.ndarray:
        """Outward unit normals ``[N, d]`` at boundary points."""
        ...


class GeometryError(UserError):
    """A shape that does not describe a region (bad arity, radius <= 0, too few vertices...); lists every mistake."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


# ----------------------------------------------------------------------------- shapes
class Shape:
    """A region described by values; :meth:`errors` says what is wrong with them (``path``: the key in a file)."""

    kind: ClassVar[str]

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def errors(self, path: str) -> list[str]:
        raise NotImplementedError

    def leaves(self) -> list[Primitive]:
        """The primitives, in declaration order (depth first)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The problem-file form (``{kind: {keys}}``), the inverse of :func:`pdesolve.config_geometry.parse_shape`."""
        raise NotImplementedError


def _arity(values: Sequence[float], n: int | tuple[int, ...], path: str, what: str) -> list[str]:
    ok = (n,) if isinstance(n, int) else n
    if len(values) not in ok:
        want = " or ".join(map(str, ok))
        return [f"{path}: expected {what} with {want} coordinates, got {len(values)} ({list(values)})"]
    if not all(math.isfinite(float(v)) for v in values):
        return [f"{path}: expected finite numbers, got {list(values)}"]
    return []


@dataclass(frozen=True)
class Primitive(Shape):
    """A shape DeepXDE knows directly; ``name`` names its boundary part (default: the kind, numbered if repeated)."""

    name: str | None = None
    size: ClassVar[int]  # the dimension it lives in

    @property
    def dim(self) -> int:
        return self.size

    def measure(self) -> float:
        """The boundary's measure (length in 2D, area in 3D; in 1D the number of end points): sampling weights."""
        raise NotImplementedError

    def build(self, dde_geometry: Any) -> Any:
        """The ``deepxde.geometry`` object (``dde_geometry`` is that module)."""
        raise NotImplementedError

    def leaves(self) -> list[Primitive]:
        return [self]

    def _name_errors(self, path: str) -> list[str]:
        if self.name is not None and not (isinstance(self.name, str) and self.name.isidentifier()):
            return [f"{path}.name: expected an identifier (letters, digits, '_'), got {self.name!r}"]
        return []

    def _named(self, keys: dict[str, Any]) -> dict[str, Any]:
        if self.name is not None:
            keys["name"] = self.name
        return {self.kind: keys}


@dataclass(frozen=True)
class Interval(Primitive):
    """``[lo, hi]`` on the line; its part is both end points."""

    kind: ClassVar[str] = "interval"
    size: ClassVar[int] = 1
    lo: float = 0.0
    hi: float = 1.0

    def errors(self, path: str) -> list[str]:
        out = self._name_errors(path)
        if not self.lo < self.hi:
            out.append(f"{path}: expected lo < hi, got [{self.lo}, {self.hi}]")
        return out

    def measure(self) -> float:
        return 2.0

    def build(self, g: Any) -> Any:
        return g.Interval(float(self.lo), float(self.hi))

    def to_dict(self) -> dict[str, Any]:
        return self._named({"lo": self.lo, "hi": self.hi})


@dataclass(frozen=True)
class Rectangle(Primitive):
    """The axis-aligned box ``[xmin, xmax]`` in 2D."""

    kind: ClassVar[str] = "rectangle"
    xmin: tuple[float, ...] = (0.0, 0.0)
    xmax: tuple[float, ...] = (1.0, 1.0)
    size: ClassVar[int] = 2

    def errors(self, path: str) -> list[str]:
        out = self._name_errors(path) + _arity(self.xmin, self.size, f"{path}.xmin", "a corner")
        out += _arity(self.xmax, self.size, f"{path}.xmax", "a corner")
        if not out and not all(a < b for a, b in zip(self.xmin, self.xmax)):
            out.append(f"{path}: expected xmin < xmax in every coordinate, got xmin {list(self.xmin)}, xmax {list(self.xmax)}")
        return out

    def measure(self) -> float:
        w, h = (b - a for a, b in zip(self.xmin, self.xmax))
        return 2.0 * (w + h)

    def build(self, g: Any) -> Any:
        return g.Rectangle(np.asarray(self.xmin, float), np.asarray(self.xmax, float))

    def to_dict(self) -> dict[str, Any]:
        return self._named({"xmin": list(self.xmin), "xmax": list(self.xmax)})


@dataclass(frozen=True)
class Cuboid(Rectangle):
    """The axis-aligned box ``[xmin, xmax]`` in 3D."""

    kind: ClassVar[str] = "cuboid"
    size: ClassVar[int] = 3

    def measure(self) -> float:
        a, b, c = (hi - lo for lo, hi in zip(self.xmin, self.xmax))
        return 2.0 * (a * b + b * c + c * a)

    def build(self, g: Any) -> Any:
        return g.Cuboid(np.asarray(self.xmin, float), np.asarray(self.xmax, float))


@dataclass(frozen=True)
class Disk(Primitive):
    """The disk ``|x - center| <= radius`` in 2D (YAML ``disk`` or ``circle``)."""

    kind: ClassVar[str] = "disk"
    center: tuple[float, ...] = (0.0, 0.0)
    radius: float = 1.0
    size: ClassVar[int] = 2

    def errors(self, path: str) -> list[str]:
        out = self._name_errors(path) + _arity(self.center, self.size, f"{path}.center", "a centre")
        if not (math.isfinite(self.radius) and self.radius > 0):
            out.append(f"{path}.radius: expected a radius > 0, got {self.radius}")
        return out

    def measure(self) -> float:
        return 2.0 * math.pi * self.radius

    def build(self, g: Any) -> Any:
        return g.Disk(np.asarray(self.center, float), float(self.radius))

    def to_dict(self) -> dict[str, Any]:
        return self._named({"center": list(self.center), "radius": self.radius})


@dataclass(frozen=True)
class Sphere(Disk):
    """The ball ``|x - center| <= radius`` in 3D."""

    kind: ClassVar[str] = "sphere"
    size: ClassVar[int] = 3

    def measure(self) -> float:
        return 4.0 * math.pi * self.radius**2

    def build(self, g: Any) -> Any:
        return g.Sphere(np.asarray(self.center, float), float(self.radius))


def _signed_area(v: np.ndarray) -> float:
    x, y = v[:, 0], v[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


@dataclass(frozen=True)
class Polygon(Primitive):
    """A simple polygon in 2D from its vertices (either orientation); one part for the whole outline."""

    kind: ClassVar[str] = "polygon"
    size: ClassVar[int] = 2
    vertices: tuple[tuple[float, ...], ...] = ()
    min_vertices: ClassVar[int] = 3
    max_vertices: ClassVar[int | None] = None

    def errors(self, path: str) -> list[str]:
        out = self._name_errors(path)
        n = len(self.vertices)
        if n < self.min_vertices or (self.max_vertices is not None and n > self.max_vertices):
            want = f"exactly {self.max_vertices}" if self.max_vertices is not None else f"at least {self.min_vertices}"
            return out + [f"{path}.vertices: expected {want} vertices, got {n}"]
        for i, v in enumerate(self.vertices):
            out += _arity(v, 2, f"{path}.vertices[{i}]", "a vertex")
        if not out and abs(_signed_area(np.asarray(self.vertices, float))) < 1e-12:
            out.append(f"{path}.vertices: the vertices enclose no area (collinear or repeated)")
        return out

    def _array(self) -> np.ndarray:
        return np.asarray(self.vertices, float)

    def measure(self) -> float:
        v = self._array()
        return float(np.sum(np.linalg.norm(np.roll(v, -1, axis=0) - v, axis=1)))

    def build(self, g: Any) -> Any:
        v = self._array()
        if g.Rectangle.is_valid(v):  # DeepXDE's Polygon refuses rectangles and triangles: they have classes of their own
            return g.Rectangle(v.min(axis=0), v.max(axis=0))
        shape = g.Triangle(*v) if len(v) == 3 else g.Polygon(v)
        # DeepXDE's boundary test compares l1 + l2 with an edge's length with a relative tolerance, which takes points up to
        # ~sqrt(1e-5 * length) from an edge as on it: the distance to the edges instead (a partial: the object still pickles)
        shape.on_boundary = functools.partial(_on_edges, v, 1e-10 * max(1.0, float(np.ptp(v))))
        return shape

    def to_dict(self) -> dict[str, Any]:
        return self._named({"vertices": [list(v) for v in self.vertices]})


def _on_edges(v: np.ndarray, tol: float, x: np.ndarray) -> np.ndarray:
    """``bool [N]``: the points within ``tol`` of the closed polyline through the vertices ``v``."""
    return _edge_distance(np.asarray(x, np.float64).reshape(-1, 2), v) <= tol


def _edge_distance(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The distance ``[N]`` of points ``x [N, 2]`` to the closed polyline through the vertices ``v [m, 2]``."""
    out = np.full(len(x), np.inf)
    for a, b in zip(v, np.roll(v, -1, axis=0)):
        ab = b - a
        s = np.clip(((x - a) @ ab) / float(ab @ ab), 0.0, 1.0)
        out = np.minimum(out, np.linalg.norm(x - (a + s[:, None] * ab), axis=1))
    return out


@dataclass(frozen=True)
class Triangle(Polygon):
    """A triangle in 2D from its three vertices."""

    kind: ClassVar[str] = "triangle"
    max_vertices: ClassVar[int | None] = 3


@dataclass(frozen=True)
class Combination(Shape):
    """A CSG combination of two or more shapes, folded left: ``a op b op c = (a op b) op c``."""

    shapes: tuple[Shape, ...]

    @property
    def dim(self) -> int:
        return self.shapes[0].dim

    def errors(self, path: str) -> list[str]:
        if len(self.shapes) < 2:
            return [f"{path}: a {self.kind} needs at least two shapes, got {len(self.shapes)}"]
        out = []
        for i, s in enumerate(self.shapes):
            out += s.errors(f"{path}[{i}].{_kind_of(s)}")
        dims = [s.dim for s in self.shapes]
        if len(set(dims)) > 1:
            out.append(f"{path}: the shapes must share one dimension, got {dims}")
        return out

    def leaves(self) -> list[Primitive]:
        return [leaf for s in self.shapes for leaf in s.leaves()]

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: [s.to_dict() for s in self.shapes]}

    def combine(self, a: Any, b: Any) -> Any:
        raise NotImplementedError


def _kind_of(s: Shape) -> str:
    return s.kind


@dataclass(frozen=True)
class Union(Combination):
    kind: ClassVar[str] = "union"

    def combine(self, a: Any, b: Any) -> Any:
        return a | b


@dataclass(frozen=True)
class Difference(Combination):
    """The first shape minus all the others (holes)."""

    kind: ClassVar[str] = "difference"

    def combine(self, a: Any, b: Any) -> Any:
        return a - b


@dataclass(frozen=True)
class Intersection(Combination):
    kind: ClassVar[str] = "intersection"

    def combine(self, a: Any, b: Any) -> Any:
        return a & b


PRIMITIVES: dict[str, type[Primitive]] = {
    "interval": Interval,
    "rectangle": Rectangle,
    "disk": Disk,
    "circle": Disk,
    "polygon": Polygon,
    "triangle": Triangle,
    "cuboid": Cuboid,
    "sphere": Sphere,
}
COMBINATIONS: dict[str, type[Combination]] = {"union": Union, "difference": Difference, "intersection": Intersection}
REGISTRY: dict[str, type[Shape]] = {**PRIMITIVES, **COMBINATIONS}  # YAML key -> shape class


def part_names(shape: Shape) -> list[str]:
    """The boundary part of each primitive in declaration order: its ``name``, or its kind numbered ``kind_2``, ...
    after the first (explicit names are kept; a default that collides with an explicit name takes the next number)."""
    leaves = shape.leaves()
    explicit = {leaf.name for leaf in leaves if leaf.name is not None}
    out, count = [], {}
    for leaf in leaves:
        if leaf.name is not None:
            out.append(leaf.name)
            continue
        k = count.get(leaf.kind, 0)
        while True:
            k += 1
            name = leaf.kind if k == 1 else f"{leaf.kind}_{k}"
            if name not in explicit:
                break
        count[leaf.kind] = k
        out.append(name)
    return out


def shape_errors(shape: Shape, path: str = "domain.geometry") -> list[str]:
    """Every mistake in a shape tree, each naming its key path; also repeated part names."""
    out = shape.errors(f"{path}.{shape.kind}")
    names = [leaf.name for leaf in shape.leaves() if leaf.name is not None]
    for name in sorted({n for n in names if names.count(n) > 1}):
        out.append(f"{path}: the part name {name!r} is given to {names.count(name)} shapes; part names must be unique")
    return out


# ----------------------------------------------------------------------------- the region
def _dde_geometry() -> Any:
    os.environ.setdefault("DDE_BACKEND", "pytorch")  # before the first import: DeepXDE picks its backend then
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its backend notice
        import deepxde.config
        import deepxde.geometry

    return deepxde.geometry, deepxde.config


@contextlib.contextmanager
def _deepxde(rng: np.random.Generator | None = None) -> Iterator[Any]:
    """DeepXDE's geometry module in float64, with numpy's global random state seeded from ``rng`` (restored after)."""
    geometry, config = _dde_geometry()
    precision = config.real.precision
    state = np.random.get_state()
    config.real.set_float64()
    with warnings.catch_warnings():  # numpy 2 deprecates the 2-vector np.cross that DeepXDE's polygons use
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            if rng is not None:
                np.random.seed(int(rng.integers(2**32)))
            yield geometry
        finally:
            np.random.set_state(state)
            {16: config.real.set_float16, 32: config.real.set_float32, 64: config.real.set_float64}[precision]()


class Region:
    """The :class:`Geometry` of a :class:`Shape` (checked on construction), backed by ``deepxde.geometry``."""

    def __init__(self, shape: Shape):
        errors = shape_errors(shape)
        if errors:
            raise GeometryError(errors)
        self.shape = shape
        self.dim = shape.dim
        self.parts: tuple[str, ...] = tuple(part_names(shape))
        self._leaves = shape.leaves()
        with _deepxde() as g:
            self._leaf_dde = [leaf.build(g) for leaf in self._leaves]
            self._dde = self._build(shape, iter(self._leaf_dde))

    def _build(self, shape: Shape, built: Iterator[Any]) -> Any:
        if isinstance(shape, Primitive):
            return next(built)
        assert isinstance(shape, Combination)
        parts = [self._build(s, built) for s in shape.shapes]
        out = parts[0]
        for p in parts[1:]:
            out = shape.combine(out, p)
        return out

    def __repr__(self) -> str:
        return f"Region({self.shape.to_dict()})"

    def _points(self, points: np.ndarray) -> np.ndarray:
        x = np.asarray(points, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points [N, {self.dim}], got shape {x.shape}")
        return x

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounding box of the region (an intersection's is the intersection of its shapes' boxes)."""
        lo, hi = self._dde.bbox
        return np.asarray(lo, np.float64).reshape(self.dim), np.asarray(hi, np.float64).reshape(self.dim)

    def inside(self, points: np.ndarray) -> np.ndarray:
        """``bool [N]``: the points in the closed region (DeepXDE's polygons leave some edges out of ``inside``: the
        boundary test puts them back)."""
        x = self._points(points)
        with _deepxde():
            inner = np.asarray(self._dde.inside(x), bool).reshape(len(x))
            return inner | np.asarray(self._dde.on_boundary(x), bool).reshape(len(x))

    def on_boundary(self, points: np.ndarray) -> np.ndarray:
        """``bool [N]``: the points on the region's boundary (DeepXDE's tolerance, 1e-8 in float64)."""
        x = self._points(points)
        with _deepxde():
            return np.asarray(self._dde.on_boundary(x), bool).reshape(len(x))

    def part_of(self, points: np.ndarray) -> np.ndarray:
        """``int [N]``: the index into ``parts`` of the part each point lies on (-1: not on the boundary)."""
        x = self._points(points)
        out = np.full(len(x), -1)
        with _deepxde():
            on = np.asarray(self._dde.on_boundary(x), bool).reshape(len(x))
            for i, leaf in enumerate(self._leaf_dde):
                hit = on & (out < 0) & np.asarray(leaf.on_boundary(x), bool).reshape(len(x))
                out[hit] = i
        return out

    def sample_interior(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points ``[n, d]`` uniform in the region (DeepXDE's ``random_points``)."""
        if n <= 0:
            return np.zeros((0, self.dim))
        with _deepxde(rng):
            return np.asarray(self._dde.random_points(int(n)), np.float64).reshape(n, self.dim)

    def sample_boundary(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points ``[n, d]`` uniform on the boundary and their part indices ``[n]``."""
        if n <= 0:
            return np.zeros((0, self.dim)), np.zeros(0, dtype=int)
        weights = np.array([leaf.measure() for leaf in self._leaves])
        weights = weights / weights.sum()
        kept_x, kept_part, total = [], [], 0
        with _deepxde(rng):
            for _ in range(1000):
                draw = max(n - total, 16)
                for i, (leaf, w) in enumerate(zip(self._leaf_dde, weights)):
                    k = int(np.ceil(1.25 * draw * w)) + 1
                    x = np.asarray(leaf.random_boundary_points(k), np.float64).reshape(-1, self.dim)
                    x = x[np.asarray(self._dde.on_boundary(x), bool).reshape(len(x))]
                    kept_x.append(x)
                    kept_part.append(np.full(len(x), i))
                    total += len(x)
                if total >= n:
                    break
            else:
                raise GeometryError(["the region has (almost) no boundary: no sampled point of its shapes lies on it"])
            x, part = np.concatenate(kept_x), np.concatenate(kept_part)
            keep = np.random.permutation(len(x))[:n]
        return x[keep], part[keep]

    def normals(self, points: np.ndarray) -> np.ndarray:
        """Outward unit normals ``[N, d]`` (DeepXDE's ``boundary_normal``); zero off the boundary. Where two parts meet
        (a corner) DeepXDE adds their normals; the result is normalised to unit length."""
        x = self._points(points)
        with _deepxde():
            nrm = np.asarray(self._dde.boundary_normal(x), np.float64).reshape(len(x), self.dim)
        length = np.linalg.norm(nrm, axis=1, keepdims=True)
        return np.where(length > 0, nrm / np.where(length > 0, length, 1.0), 0.0)
