"""Trajectory datasets: HDF5 files of ``[trajectory, time, channel, *space]`` and lazy torch views of them.

Three layouts are read, detected from the file itself:

- ``pdesolve``: written by ``pdesolve simulate`` (see :mod:`pdesolve.simulate.dataset`): ``u``, ``t``, one
  coordinate array per axis, ``params/``, attributes with the problem and the settings;
- ``pdebench-tensor``: PDEBench's single-file layout, one array ``[trajectory, time, *space]`` per field
  (``tensor`` for the scalar 1D families; ``density``, ``Vx``, ... for the compressible ones) with
  ``x-coordinate``, ``t-coordinate`` (... ) arrays;
- ``pdebench-groups``: PDEBench's per-seed groups ``0000/data [time, *space, channel]`` with
  ``0000/grid/x``, ``0000/grid/t`` (diffusion-sorption, diffusion-reaction, shallow water).

:class:`TrajectoryFile` opens the file on first read (and again in each DataLoader worker process);
:class:`OneStepDataset` gives ``history`` frames and the next one, :class:`RolloutDataset` ``history``
frames and the next ``window``; both split by trajectory (:func:`split_trajectories`) and can normalize
per channel with :func:`channel_stats`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import UserError

LAYOUTS = ("pdesolve", "pdebench-tensor", "pdebench-groups")
_PDEBENCH_COORDS = {"x-coordinate": "x", "y-coordinate": "y", "z-coordinate": "z"}
_CACHE_BYTES = 64 << 20  # chunk cache per open file: whole trajectories stay decompressed while read


class TrajectoryFile:
    """A read-only, lazily opened view of the trajectories in one HDF5 file (any supported layout)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"no such file: {self.path}")
        self._file: h5py.File | None = None
        self._pid = -1
        try:
            with h5py.File(self.path, "r") as f:
                self._inspect(f)
        except OSError as err:
            raise UserError(f"{self.path} is not a readable HDF5 file ({err})") from None

    # --------------------------------------------------------------------------- description
    def _inspect(self, f: h5py.File) -> None:
        self.attrs: dict[str, Any] = {k: _plain(v) for k, v in f.attrs.items()}
        if self.attrs.get("format") == "pdesolve-trajectories" and "u" in f:
            self.layout = "pdesolve"
            u = f["u"]
            self.n_trajectories, self.n_times = int(u.shape[0]), int(u.shape[1])
            self.fields = tuple(json.loads(self.attrs["fields"]))
            axes = json.loads(self.attrs["axes"])
            self.space_shape = tuple(int(s) for s in u.shape[3:])
            self.times = np.asarray(f["t"][...], dtype=np.float64)
            self.coords = {a: np.asarray(f[a][...], dtype=np.float64) for a in axes}
            return
        datasets = {k: v for k, v in f.items() if isinstance(v, h5py.Dataset)}
        groups = sorted(k for k, v in f.items() if isinstance(v, h5py.Group) and "data" in v)
        fields = [k for k, v in datasets.items() if v.ndim >= 3 and not k.endswith("-coordinate")]
        if fields:
            self.layout = "pdebench-tensor"
            if "tensor" in fields:
                fields = ["tensor"]
            shape = datasets[fields[0]].shape
            bad = [k for k in fields if datasets[k].shape != shape]
            if bad:
                raise UserError(f"{self.path}: field arrays {fields} differ in shape ({[datasets[k].shape for k in fields]})")
            self._names = fields
            self.fields = tuple("u" if k == "tensor" else k for k in fields)
            self.n_trajectories, self.n_times = int(shape[0]), int(shape[1])
            self.space_shape = tuple(int(s) for s in shape[2:])
            axes = [a for k, a in _PDEBENCH_COORDS.items()][: len(self.space_shape)]
            self.coords = {}
            for a, n in zip(axes, self.space_shape, strict=True):
                key = f"{a}-coordinate"
                self.coords[a] = np.asarray(f[key][...], dtype=np.float64) if key in f else np.arange(n, dtype=np.float64)
            t = (
                np.asarray(f["t-coordinate"][...], dtype=np.float64)
                if "t-coordinate" in f
                else np.arange(self.n_times, dtype=np.float64)
            )
            self.times = t[: self.n_times]  # PDEBench stores one more time stamp than frames in some files
            return
        if groups:
            self.layout = "pdebench-groups"
            self._names = groups
            g = f[groups[0]]
            data = g["data"]
            self.n_trajectories, self.n_times = len(groups), int(data.shape[0])
            self.space_shape = tuple(int(s) for s in data.shape[1:-1])
            self.fields = tuple(f"u{c}" for c in range(data.shape[-1])) if data.shape[-1] > 1 else ("u",)
            grid = g.get("grid")
            axes = ["x", "y", "z"][: len(self.space_shape)]
            self.coords = {
                a: np.asarray(grid[a][...], dtype=np.float64)
                if grid is not None and a in grid
                else np.arange(n, dtype=np.float64)
                for a, n in zip(axes, self.space_shape, strict=True)
            }
            t = (
                np.asarray(grid["t"][...], dtype=np.float64)
                if grid is not None and "t" in grid
                else np.arange(self.n_times, dtype=np.float64)
            )
            self.times = t[: self.n_times]
            return
        raise UserError(
            f"{self.path}: not a supported trajectory file; expected one of {list(LAYOUTS)} "
            f"(found datasets {sorted(datasets)} and groups {sorted(k for k in f if k not in datasets)[:5]})"
        )

    @property
    def channels(self) -> int:
        return len(self.fields)

    # ------------------------------------------------------------------------------- reading
    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r", rdcc_nbytes=_CACHE_BYTES)
            self._pid = os.getpid()
        return self._file

    def read(self, i: int, time: slice | Sequence[int] = slice(None)) -> np.ndarray:
        """Trajectory ``i`` at ``time`` (a slice or increasing indices): ``[time, channel, *space]`` float32."""
        if not 0 <= i < self.n_trajectories:
            raise IndexError(f"trajectory {i} out of range; the file has {self.n_trajectories}")
        f = self._handle()
        if self.layout == "pdesolve":
            out = f["u"][i, time]
        elif self.layout == "pdebench-tensor":
            out = np.stack([f[k][i, time] for k in self._names], axis=1)
        else:
            out = np.moveaxis(f[self._names[i]]["data"][time], -1, 1)
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, -1  # each process opens its own handle
        return state

    def __repr__(self) -> str:
        return (
            f"TrajectoryFile({str(self.path)!r}, layout={self.layout!r}, trajectories={self.n_trajectories}, "
            f"times={self.n_times}, fields={list(self.fields)}, space={self.space_shape})"
        )


def describe(path: str | os.PathLike[str]) -> str:
    """A human-readable account of a trajectory file: layout, shapes, coordinates and attributes."""
    tf = TrajectoryFile(path)
    lines = [
        f"file:         {tf.path}",
        f"layout:       {tf.layout}",
        f"trajectories: {tf.n_trajectories}",
        f"fields:       {', '.join(tf.fields)}",
        f"space shape:  {tf.space_shape}",
        f"times:        {tf.n_times} from {tf.times[0]:.6g} to {tf.times[-1]:.6g}" if tf.n_times else "times:        0",
    ]
    for a, c in tf.coords.items():
        lines.append(f"axis {a}:       {len(c)} points from {c[0]:.6g} to {c[-1]:.6g}")
    lines.append("arrays:")
    with h5py.File(tf.path, "r") as f:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                extra = f", chunks {obj.chunks}" if obj.chunks else ""
                extra += f", {obj.compression}" if obj.compression else ""
                lines.append(f"  {obj.name.lstrip('/')}: {obj.shape} {obj.dtype}{extra}")

        if tf.layout == "pdebench-groups":  # thousands of alike groups: show the first
            f[tf._names[0]].visititems(visit)
            lines.append(f"  ... and {tf.n_trajectories - 1} more groups like {tf._names[0]!r}")
        else:
            f.visititems(visit)
    lines += integrity(tf)
    if tf.attrs:
        lines.append("attributes:")
        for k, v in tf.attrs.items():
            text = str(v)
            if "\n" in text or len(text) > 100:
                first = text.strip().splitlines()[0] if text.strip() else ""
                text = f"{first[:80]} ... ({len(str(v))} characters)"
            lines.append(f"  {k}: {text}")
    return "\n".join(lines)


def integrity(tf: TrajectoryFile) -> list[str]:
    """Checks of a pdesolve dataset: the trajectory count against the target and the complete flag, and repeated
    trajectories (identical first and last frames: what two writers appending the same trajectories leave)."""
    if tf.layout != "pdesolve":
        return []
    target, complete = tf.attrs.get("n_trajectories"), bool(tf.attrs.get("complete", False))
    out = ["checks:"]
    if target is not None:
        n, t = tf.n_trajectories, int(target)
        state = "complete" if complete and n == t else "incomplete (rerun `pdesolve simulate` to finish it)" if n < t else (
            f"PROBLEM: {n} trajectories for a target of {t}")
        out.append(f"  count: {n} of {t}, {state}")
    seen: dict[bytes, int] = {}
    repeats = []
    with h5py.File(tf.path, "r") as f:
        u = f["u"]
        for i in range(u.shape[0]):
            key = np.ascontiguousarray(u[i, 0]).tobytes() + np.ascontiguousarray(u[i, -1]).tobytes()
            if key in seen:
                repeats.append((seen[key], i))
            else:
                seen[key] = i
    out.append("  duplicates: none" if not repeats else
               f"  duplicates: PROBLEM: {len(repeats)} trajectories repeat earlier ones, e.g. {repeats[0][1]} = {repeats[0][0]}")
    return out


# ------------------------------------------------------------------------------ splits and statistics
def split_trajectories(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """Disjoint ``train``/``val``/``test`` trajectory indices (shuffled by ``seed``, sorted within a split)."""
    if len(fractions) != 3 or any(x < 0 for x in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"expected three non-negative fractions summing to 1, got {list(fractions)}")
    order = np.random.default_rng(seed).permutation(n)
    cut = np.round(np.cumsum(fractions)[:2] * n).astype(int)
    parts = np.split(order, cut)
    return {name: np.sort(p) for name, p in zip(("train", "val", "test"), parts, strict=True)}


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``mean`` and ``std`` ``[channel]``; ``apply`` maps a field ``[..., channel, *space]``."""

    mean: np.ndarray
    std: np.ndarray

    def _shape(self, x: Any, space_dims: int) -> tuple[Any, Any]:
        shape = (-1,) + (1,) * space_dims
        m, s = self.mean.reshape(shape), self.std.reshape(shape)
        if isinstance(x, torch.Tensor):
            return torch.as_tensor(m, dtype=x.dtype, device=x.device), torch.as_tensor(s, dtype=x.dtype, device=x.device)
        return m.astype(x.dtype), s.astype(x.dtype)

    def apply(self, x: Any, space_dims: int) -> Any:
        m, s = self._shape(x, space_dims)
        return (x - m) / s

    def invert(self, x: Any, space_dims: int) -> Any:
        m, s = self._shape(x, space_dims)
        return x * s + m


def channel_stats(file: TrajectoryFile, trajectories: Sequence[int] | None = None) -> Normalization:
    """Mean and standard deviation per channel over every frame of ``trajectories`` (float64 sums)."""
    idx = range(file.n_trajectories) if trajectories is None else trajectories
    total = np.zeros(file.channels)
    squares = np.zeros(file.channels)
    count = 0
    axes = (0,) + tuple(range(2, 2 + len(file.space_shape)))
    for i in idx:
        x = file.read(int(i)).astype(np.float64)
        total += x.sum(axis=axes)
        squares += (x * x).sum(axis=axes)
        count += x.size // file.channels
    if count == 0:
        raise ValueError("no trajectories to compute statistics from")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return Normalization(mean, np.where(std > 0, std, 1.0))


# ----------------------------------------------------------------------------------- torch datasets
class _Windows(Dataset):
    """``history`` input frames followed by ``horizon`` target frames, at every start time of every trajectory."""

    def __init__(
        self,
        source: str | os.PathLike[str] | TrajectoryFile,
        history: int,
        horizon: int,
        split: str | Sequence[int],
        fractions: Sequence[float],
        seed: int,
        normalization: Normalization | None,
        time_stride: int,
    ):
        self.file = source if isinstance(source, TrajectoryFile) else TrajectoryFile(source)
        if history < 1 or horizon < 1 or time_stride < 1:
            raise ValueError(f"expected history, horizon and time_stride >= 1, got {history}, {horizon}, {time_stride}")
        if isinstance(split, str):
            splits = split_trajectories(self.file.n_trajectories, fractions, seed)
            if split not in splits and split != "all":
                raise ValueError(f"unknown split {split!r}; expected one of {sorted(splits) + ['all']}")
            self.trajectories = np.arange(self.file.n_trajectories) if split == "all" else splits[split]
        else:
            self.trajectories = np.asarray(split, dtype=int)
        self.history, self.horizon, self.stride = history, horizon, time_stride
        frames = (self.file.n_times + time_stride - 1) // time_stride
        self.starts = frames - history - horizon + 1
        if self.starts < 1:
            raise ValueError(
                f"{self.file.n_times} frames (stride {time_stride}) are too few for {history} history + {horizon} target frames"
            )
        self.normalization = normalization

    def __len__(self) -> int:
        return len(self.trajectories) * self.starts

    def _frames(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} windows")
        traj, start = divmod(index, self.starts)
        s = self.stride
        first = start * s
        x = self.file.read(int(self.trajectories[traj]), slice(first, first + (self.history + self.horizon - 1) * s + 1, s))
        if self.normalization is not None:
            x = self.normalization.apply(x, len(self.file.space_shape))
        return torch.from_numpy(np.ascontiguousarray(x))


class OneStepDataset(_Windows):
    """Pairs ``(x [history, channel, *space], y [channel, *space])``: ``history`` frames and the next, float32."""

    def __init__(
        self,
        source: str | os.PathLike[str] | TrajectoryFile,
        history: int = 1,
        split: str | Sequence[int] = "train",
        *,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        normalization: Normalization | None = None,
        time_stride: int = 1,
    ):
        super().__init__(source, history, 1, split, fractions, seed, normalization, time_stride)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self._frames(index)
        return frames[: self.history], frames[self.history]


class RolloutDataset(_Windows):
    """Windows ``(x [history, channel, *space], y [window, channel, *space])`` for rollout training and tests."""

    def __init__(
        self,
        source: str | os.PathLike[str] | TrajectoryFile,
        history: int = 1,
        window: int = 10,
        split: str | Sequence[int] = "test",
        *,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        normalization: Normalization | None = None,
        time_stride: int = 1,
    ):
        super().__init__(source, history, window, split, fractions, seed, normalization, time_stride)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self._frames(index)
        return frames[: self.history], frames[self.history :]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
