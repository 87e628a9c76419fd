"""Observations of an inverse problem: measured field values at scattered points of the domain.

A problem with unknown coefficients (:class:`pdesolve.problem.Unknown`) learns them from these: a solver adds the
misfit ``weight * mean((u(points) - values)^2)`` to its loss (the ``data`` term). They come from a table file
(:mod:`pdesolve.datafiles`) whose coordinate columns are named like the domain's axes (``t``, ``x``, ...) and whose value
columns are named like the fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datafiles import DataFileError, read_columns


@dataclass(frozen=True, eq=False)
class Observations:
    """Measured values ``values [N, len(fields)]`` at ``points [N, len(names)]`` (columns in the order ``names``:
    the domain's coordinate names, t first).

    ``noise`` is the stated standard deviation of the measurement noise (None: not stated); it is reported beside the
    fitted misfit, which a consistent fit brings down to about ``noise``. ``weight`` multiplies the misfit in the loss.
    ``source`` is the file they came from (for messages and the run's record).
    """

    names: tuple[str, ...]
    points: np.ndarray
    fields: tuple[str, ...]
    values: np.ndarray
    weight: float = 1.0
    noise: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "fields", tuple(self.fields))
        points, values = np.asarray(self.points, np.float64), np.asarray(self.values, np.float64)
        if points.ndim != 2 or points.shape[1] != len(self.names):
            raise ValueError(f"observation points: expected shape [N, {len(self.names)}] (columns {list(self.names)}), got {points.shape}")
        if values.shape != (len(points), len(self.fields)):
            raise ValueError(f"observation values: expected shape [{len(points)}, {len(self.fields)}], got {values.shape}")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return len(self.points)

    def outside(self, bounds: Mapping[str, tuple[float, float]]) -> list[str]:
        """Why some points lie outside ``bounds`` (per coordinate: the count and the first offender), or []."""
        out = []
        for i, n in enumerate(self.names):
            if n not in bounds:
                out.append(f"column {n!r} is not an axis of the domain {sorted(bounds)}")
                continue
            lo, hi = bounds[n]
            tol = 1e-9 * max(1.0, abs(lo), abs(hi))
            bad = (self.points[:, i] < lo - tol) | (self.points[:, i] > hi + tol)
            if bad.any():
                out.append(f"{int(bad.sum())} point(s) with {n} outside [{lo:g}, {hi:g}] (e.g. {n} = {self.points[bad, i][0]:g})")
        return out


def load_observations(path: str | Path, names: Sequence[str], fields: Sequence[str], weight: float = 1.0,
                      noise: float | None = None) -> Observations:
    """Observations from a table file (columns ``names`` and ``fields``); raises :class:`DataFileError`."""
    columns = read_columns(path, [*names, *fields])
    points = np.stack([columns[n] for n in names], axis=1)
    values = np.stack([columns[f] for f in fields], axis=1)
    return Observations(tuple(names), points, tuple(fields), values, weight, noise, str(path))


__all__ = ["DataFileError", "Observations", "load_observations"]
