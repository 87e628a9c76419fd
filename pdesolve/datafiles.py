"""Users' data files: named columns (observations) and fields on a grid (references), read the same way.

Two layouts, each in every format a lab or a paper hands out:

- a **table** (:func:`read_columns`): named 1-D columns of one common length; CSV with a header row, HDF5 with one
  dataset per column, NumPy ``.npz`` with one array per column, MATLAB ``.mat`` with one variable per column;
- a **grid** (:func:`read_gridded`): one coordinate vector per axis (named like the domain's axes, ``t``, ``x``, ...)
  and one array per field of shape ``(len(t), len(x), ...)`` (axes in the domain's order, time first); HDF5, ``.npz``
  or ``.mat`` (scipy.io).

Every failure is a :class:`DataFileError` whose message names the file and what was expected, so the configuration
can put the key in front of it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TABLE_SUFFIXES = (".csv", ".h5", ".hdf5", ".npz", ".mat")
GRID_SUFFIXES = (".h5", ".hdf5", ".npz", ".mat")


class DataFileError(ValueError):
    """A data file that is missing, unreadable, or lacks what the problem needs."""


def _arrays(path: Path, suffixes: Sequence[str]) -> dict[str, np.ndarray]:
    """Every named array of an HDF5 / npz / mat file (top level), float64."""
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.suffix.lower() not in suffixes:
        raise DataFileError(f"{path}: expected a file ending in one of {list(suffixes)}, got {path.suffix or 'no suffix'!r}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                raw = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                raw = {k: f[k] for k in f.files}
        else:
            import scipy.io

            raw = {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    except (OSError, ValueError, KeyError) as err:
        raise DataFileError(f"{path}: not a readable {suffix} file ({type(err).__name__}: {err})") from None
    out = {}
    for k, v in raw.items():
        try:
            out[k] = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataFileError(f"{path}: entry {k!r} is not numeric") from None
    return out


def read_columns(path: str | Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The columns ``names`` of a table file, each ``[N]`` float64 (every one present, finite, of one length)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        columns = _csv(path)
    else:
        columns = {k: v.reshape(-1) if v.ndim == 2 and 1 in v.shape else v for k, v in _arrays(path, TABLE_SUFFIXES).items()}
    missing = [n for n in names if n not in columns]
    if missing:
        raise DataFileError(f"{path}: no column(s) {missing}; expected columns {list(names)}, found {sorted(columns)}")
    out = {n: columns[n] for n in names}
    for n, v in out.items():
        if v.ndim != 1:
            raise DataFileError(f"{path}: column {n!r} has shape {v.shape}; expected one value per row (1-D)")
        if not np.isfinite(v).all():
            raise DataFileError(f"{path}: column {n!r} holds {int((~np.isfinite(v)).sum())} value(s) that are not finite numbers")
    lengths = {n: len(v) for n, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise DataFileError(f"{path}: columns of different lengths {lengths}; expected one value per row in every column")
    if not next(iter(lengths.values()), 0):
        raise DataFileError(f"{path}: no rows")
    return out


def _csv(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(row for row in fh if row.strip() and not row.lstrip().startswith("#")))
    except (OSError, UnicodeDecodeError) as err:
        raise DataFileError(f"{path}: not a readable CSV file ({err})") from None
    if not rows:
        raise DataFileError(f"{path}: empty; expected a header row naming the columns, then one row per point")
    header = [h.strip() for h in rows[0]]
    try:
        values = np.array([[float(c) for c in r] for r in rows[1:]], dtype=np.float64).reshape(-1, len(header))
    except ValueError as err:
        raise DataFileError(f"{path}: expected a header row, then rows of {len(header)} numbers ({err})") from None
    return {h: values[:, i] for i, h in enumerate(header)}


def write_columns(path: str | Path, columns: dict[str, np.ndarray]) -> None:
    """Write a table (CSV with a header, HDF5 or npz by the suffix), atomically."""
    from .io import write_with

    path = Path(path)
    names = list(columns)
    data = np.stack([np.asarray(columns[n], dtype=np.float64) for n in names], axis=1)
    suffix = path.suffix.lower()

    def write(tmp: Path) -> None:
        if suffix == ".csv":
            with open(tmp, "w", newline="") as fh:
                fh.write(",".join(names) + "\n")
                np.savetxt(fh, data, delimiter=",", fmt="%.17g")
        elif suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(tmp, "w") as f:
                for i, n in enumerate(names):
                    f.create_dataset(n, data=data[:, i])
        elif suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez(fh, **{n: data[:, i] for i, n in enumerate(names)})
        else:
            raise DataFileError(f"{path}: expected .csv, .h5 or .npz")

    write_with(path, write)


def read_gridded(path: str | Path, axes: Sequence[str], fields: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The coordinate vector of each axis and the fields stacked ``[*axes_shape, channel]`` from a grid file.

    Each field array must have shape ``(len(axes[0]), len(axes[1]), ...)``; a field stored with the axes reversed
    (MATLAB's habit, ``(len(x), len(t))``) is refused with the shape expected rather than transposed by guess.
    """
    path = Path(path)
    arrays = _arrays(path, GRID_SUFFIXES)
    missing = [n for n in (*axes, *fields) if n not in arrays]
    if missing:
        raise DataFileError(f"{path}: no entry for {missing}; expected a coordinate vector per axis {list(axes)} and an array per "
                            f"field {list(fields)}, found {sorted(arrays)}")
    coords = {}
    for a in axes:
        v = arrays[a]
        if v.ndim == 2 and 1 in v.shape:
            v = v.reshape(-1)
        if v.ndim != 1 or len(v) < 2:
            raise DataFileError(f"{path}: coordinate {a!r} has shape {arrays[a].shape}; expected a vector of at least 2 points")
        if not (np.isfinite(v).all() and (np.diff(v) > 0).all()):
            raise DataFileError(f"{path}: coordinate {a!r} must be finite and strictly increasing")
        coords[a] = v
    shape = tuple(len(coords[a]) for a in axes)
    values = []
    for f in fields:
        v = arrays[f]
        if v.shape != shape:
            raise DataFileError(f"{path}: field {f!r} has shape {v.shape}; expected {shape} (one value per point of the axes "
                                f"{list(axes)}, in that order)")
        if not np.isfinite(v).all():
            raise DataFileError(f"{path}: field {f!r} holds values that are not finite numbers")
        values.append(v)
    return coords, np.stack(values, axis=-1)
