"""The ``domain.geometry`` key of a problem file -> a :class:`~pdesolve.geometry.Shape`, every mistake at once.

The form mirrors the shapes: one key per shape naming its kind, its keys beneath it; a CSG operation takes a
list of shapes::

    domain:
      geometry:
        difference:
          - rectangle: {xmin: [-1, -1], xmax: [1, 1]}
          - disk: {center: [0, 0], radius: 0.3, name: hole}
      t: [0, 1]          # optional time axis beside it

Numbers may be constant expressions (``pi/4``). Part of the configuration edge (:mod:`pdesolve.config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .config_messages import _did_you_mean, unknown_name
from .expr import ExpressionError, constant
from .geometry import (
    COMBINATIONS,
    PRIMITIVES,
    REGISTRY,
    Cuboid,
    Disk,
    Interval,
    Polygon,
    Rectangle,
    Shape,
    Sphere,
    Triangle,
)

AXIS_NAMES = ("x", "y", "z")  # the space axes of a geometry, in the order of its coordinates

_KEYS: dict[type, dict[str, str]] = {  # the keys of each primitive: key -> what it holds (for messages)
    Interval: {"lo": "number", "hi": "number"},
    Rectangle: {"xmin": "point", "xmax": "point"},
    Cuboid: {"xmin": "point", "xmax": "point"},
    Disk: {"center": "point", "radius": "number"},
    Sphere: {"center": "point", "radius": "number"},
    Polygon: {"vertices": "points"},
    Triangle: {"vertices": "points"},
}


def parse_shape(raw: Any, path: str, errors: list[str]) -> Shape | None:
    """The shape a problem file's ``raw`` value describes (None after appending errors at ``path``)."""
    if not isinstance(raw, Mapping) or len(raw) != 1:
        got = f"keys {sorted(map(str, raw))}" if isinstance(raw, Mapping) else type(raw).__name__
        errors.append(f"{path}: expected one shape, a mapping with a single key naming its kind ({sorted(REGISTRY)}), got {got}")
        return None
    kind, body = next(iter(raw.items()))
    kind = str(kind)
    where = f"{path}.{kind}"
    if kind not in REGISTRY:
        errors.append(unknown_name(where, "shape", kind, REGISTRY))
        return None
    if kind in COMBINATIONS:
        if not isinstance(body, list) or not body:
            errors.append(f"{where}: expected a list of two or more shapes, got {body!r}")
            return None
        shapes = [parse_shape(item, f"{where}[{i}]", errors) for i, item in enumerate(body)]
        if any(s is None for s in shapes):
            return None
        return COMBINATIONS[kind](tuple(shapes))  # type: ignore[arg-type]
    return _primitive(PRIMITIVES[kind], body, where, errors)


def _primitive(cls: type, body: Any, where: str, errors: list[str]) -> Shape | None:
    keys = _KEYS[cls]
    if not isinstance(body, Mapping):
        errors.append(f"{where}: expected a mapping with keys {sorted(keys) + ['name']}, got {body!r}")
        return None
    before = len(errors)
    values: dict[str, Any] = {}
    for key, value in body.items():
        key = str(key)
        if key == "name":
            values["name"] = value if isinstance(value, str) else repr(value)
        elif key not in keys:
            valid = [*keys, "name"]
            errors.append(f"{where}: unknown key {key!r}" + _did_you_mean(key, valid) + f"; valid keys are {sorted(valid)}")
        else:
            values[key] = _READERS[keys[key]](value, f"{where}.{key}", errors)
    missing = [k for k in keys if k not in body]
    errors += [f"{where}.{k}: missing required key" for k in missing]
    if len(errors) > before:
        return None
    shape = cls(**values)
    errors += shape.errors(where)
    return shape if len(errors) == before else None


def _number(value: Any, where: str, errors: list[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        errors.append(f"{where}: expected a number, got {value!r}")
        return float("nan")
    try:
        return constant(value)
    except ExpressionError as e:
        errors.append(f"{where}: {e}")
        return float("nan")


def _point(value: Any, where: str, errors: list[str]) -> tuple[float, ...]:
    if not isinstance(value, list):
        errors.append(f"{where}: expected a list of coordinates such as [0, 0], got {value!r}")
        return ()
    return tuple(_number(v, f"{where}[{i}]", errors) for i, v in enumerate(value))


def _points(value: Any, where: str, errors: list[str]) -> tuple[tuple[float, ...], ...]:
    if not isinstance(value, list):
        errors.append(f"{where}: expected a list of vertices such as [[0, 0], [1, 0], [0, 1]], got {value!r}")
        return ()
    return tuple(_point(v, f"{where}[{i}]", errors) for i, v in enumerate(value))


_READERS: dict[str, Callable[[Any, str, list[str]], Any]] = {"number": _number, "point": _point, "points": _points}
