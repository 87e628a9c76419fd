"""Autoregressive rollouts of a learned time stepper on a grid, and their errors against reference data.

A grid solver's stepper maps the last ``history`` frames to the next one, in physical units:
``[batch, history, channel, *space] -> [batch, channel, *space]``. A rollout slides that window forward,
feeding each prediction back in, so errors compound the way they do in use. The errors are relative L2
norms per frame and field (over space), averaged over trajectories, fields and several start times:

- one-step: from the true ``history`` frames, at every start time (teacher forcing);
- rollout: over a window of ``steps`` predicted frames (the norms taken over time and space);
- error vs step: the per-frame error at each step of the rollouts.

Trajectories are held in memory as :class:`Trajectories` (the small grids grid solvers train on fit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data import TrajectoryFile
from .grid import Grid, GridAxis
from .problem import Problem

Stepper = Callable[[Tensor], Tensor]
"""``[batch, history, channel, *space] -> [batch, channel, *space]`` (physical units)."""


class DatasetMismatch(ValueError):
    """A dataset that does not belong to the problem (fields, axes, boundary kinds, coordinates)."""


@dataclass(frozen=True)
class Trajectories:
    """Reference trajectories in memory: ``frames [trajectory, time, channel, *space]`` float32 on ``grid``.

    ``grid`` has the space axes and a time axis with the frame times; ``indices`` are the trajectories'
    numbers in the file they came from.
    """

    frames: Tensor
    grid: Grid
    fields: tuple[str, ...]
    indices: tuple[int, ...]

    def __post_init__(self) -> None:
        want = (len(self.indices), self.grid.time.n if self.grid.time else -1, len(self.fields), *self.grid.space_shape)
        if tuple(self.frames.shape) != want:
            raise ValueError(f"expected frames [trajectory, time, channel, *space] = {want}, got {tuple(self.frames.shape)}")

    @property
    def dt(self) -> float:
        """Time between frames."""
        assert self.grid.time is not None
        return self.grid.time.spacing

    def __len__(self) -> int:
        return len(self.indices)

    def head(self, n: int) -> Trajectories:
        """The first ``n`` trajectories."""
        return Trajectories(self.frames[:n], self.grid, self.fields, self.indices[:n])


def check_dataset(problem: Problem, file: TrajectoryFile) -> None:
    """Raise :class:`DatasetMismatch` unless ``file`` holds trajectories of ``problem``'s fields on its domain."""
    errors = []
    fields = tuple(problem.equation.fields)
    if tuple(file.fields) != fields:
        errors.append(f"fields {list(file.fields)}, expected {list(fields)}")
    names = problem.domain.space_names
    if tuple(file.coords) != names:
        errors.append(f"space axes {list(file.coords)}, expected {list(names)}")
    elif problem.domain.time is None:
        errors.append(f"problem {problem.name!r} has no time axis; a grid solver learns time steps")
    else:
        grid = dataset_grid(problem, file)
        for a in grid.space:
            if not np.allclose(file.coords[a.name], a.coords, rtol=0, atol=1e-9 * a.length):
                kind = "periodic" if a.periodic else "bounded"
                errors.append(f"axis {a.name!r} coordinates differ from the problem's {kind} axis [{a.lo:g}, {a.hi:g}] with {a.n} points")
    periodic = file.attrs.get("periodic")
    if periodic is not None and not errors:
        import json

        want = [a.periodic for a in problem.domain.space]
        if list(json.loads(periodic)) != want:
            errors.append(f"periodic flags {json.loads(periodic)}, expected {want}")
    if file.n_times < 2:
        errors.append(f"{file.n_times} frames, expected at least 2")
    if errors:
        raise DatasetMismatch(f"{file.path} does not fit problem {problem.name!r}: " + "; ".join(errors))


def dataset_grid(problem: Problem, file: TrajectoryFile, stride: int = 1) -> Grid:
    """The problem's space axes at the file's resolution, with the file's frame times (every ``stride``-th)."""
    space = tuple(GridAxis(a.name, a.lo, a.hi, n, a.periodic) for a, n in zip(problem.domain.space, file.space_shape, strict=True))
    t = file.times[::stride]
    if len(t) < 2:
        raise DatasetMismatch(f"{file.path}: {file.n_times} frames with time stride {stride} leave fewer than 2")
    if not np.allclose(np.diff(t), t[1] - t[0], rtol=1e-6, atol=0):
        raise DatasetMismatch(f"{file.path}: frame times are not uniformly spaced")
    return Grid(space, GridAxis("t", float(t[0]), float(t[-1]), len(t)))


def load_trajectories(problem: Problem, file: TrajectoryFile, indices: Sequence[int], stride: int = 1) -> Trajectories:
    """Read trajectories ``indices`` of ``file`` (every ``stride``-th frame) into memory."""
    check_dataset(problem, file)
    grid = dataset_grid(problem, file, stride)
    idx = tuple(int(i) for i in indices)
    shape = (0, grid.time.n, len(problem.equation.fields), *grid.space_shape)  # type: ignore[union-attr]
    frames = []
    for i in idx:
        try:
            frames.append(torch.from_numpy(file.read(i, slice(None, None, stride))))
        except (OSError, ValueError, KeyError) as err:  # a damaged chunk, a truncated file
            raise DatasetMismatch(f"{file.path}: trajectory {i} cannot be read ({type(err).__name__}: {err}); "
                                  "regenerate the file") from None
        if not bool(torch.isfinite(frames[-1]).all()):
            raise DatasetMismatch(f"{file.path}: trajectory {i} holds non-finite values (NaN or inf): the data, not the "
                                  "training, is at fault; regenerate the file or drop the trajectory")
    stacked = torch.stack(frames) if frames else torch.empty(shape)
    return Trajectories(stacked, grid, tuple(problem.equation.fields), idx)


# ----------------------------------------------------------------------------------------- rollout
def rollout(step: Stepper, start: Tensor, steps: int) -> Tensor:
    """Predict ``steps`` frames from ``start [batch, history, channel, *space]``, sliding the window.

    ``step`` returns the next frame ``[batch, channel, *space]`` or the next few ``[batch, k, channel, *space]``
    (a stepper that advances several frames per call). Returns ``[batch, steps, channel, *space]`` (the start
    frames not included).
    """
    history = start.shape[1]
    window = start
    out: list[Tensor] = []
    made = 0
    while made < steps:  # each call needs the previous prediction: sequential by nature
        nxt = step(window)
        frames = nxt if nxt.dim() == start.dim() else nxt.unsqueeze(1)  # [batch, k, channel, *space]
        out.append(frames)
        made += frames.shape[1]
        window = torch.cat([window, frames], dim=1)[:, -history:]
    if not out:
        return start.new_empty((start.shape[0], 0, *start.shape[2:]))
    return torch.cat(out, dim=1)[:, :steps]


def first_frame(pred: Tensor, window: Tensor) -> Tensor:
    """The first predicted frame ``[batch, channel, *space]`` of a step's output (one frame, or several)."""
    return pred[:, 0] if pred.dim() == window.dim() else pred


def relative_l2_frames(pred: Tensor, ref: Tensor, space_dims: int) -> Tensor:
    """``||pred - ref|| / ||ref||`` over the last ``space_dims`` axes: ``[..., *space] -> [...]``.

    A reference that is zero everywhere divides by 1 (the error is then absolute).
    """
    dims = tuple(range(-space_dims, 0))
    num = torch.linalg.vector_norm(pred - ref, dim=dims)
    den = torch.linalg.vector_norm(ref, dim=dims)
    return num / torch.where(den > 0, den, torch.ones_like(den))


@dataclass
class RolloutReport:
    """Errors of a stepper on reference trajectories (relative L2, averaged over trajectories and fields)."""

    one_step: float
    rollout: float
    per_step: np.ndarray  # [steps]: error at each rollout step, averaged over starts, trajectories, fields
    steps: int
    starts: tuple[int, ...]
    trajectories: int
    per_field: dict[str, float] = field(default_factory=dict)  # rollout error per field

    def as_dict(self) -> dict[str, Any]:
        return {
            "one_step_rel_l2": self.one_step,
            "rollout_rel_l2": self.rollout,
            "rollout_rel_l2_per_field": self.per_field,
            "rollout_steps": self.steps,
            "rollout_starts": list(self.starts),
            "trajectories": self.trajectories,
            "error_vs_step": [float(e) for e in self.per_step],
        }


def start_times(frames: int, history: int, steps: int | None, starts: int) -> tuple[int, tuple[int, ...]]:
    """The rollout length and ``starts`` start indices spread evenly over the frames that allow it.

    ``steps=None`` rolls as far as the data reaches from the first start.
    """
    room = frames - history
    if room < 1:
        raise ValueError(f"{frames} frames are too few for history {history} plus one step")
    steps = room if steps is None else steps
    if not 1 <= steps <= room:
        raise ValueError(f"rollout steps: expected 1 to {room} ({frames} frames, history {history}), got {steps}")
    last = room - steps
    n = min(starts, last + 1)
    return steps, tuple(int(s) for s in np.unique(np.linspace(0, last, n).round().astype(int)))


@torch.no_grad()
def evaluate_rollouts(
    step: Stepper,
    data: Trajectories,
    history: int,
    steps: int | None = None,
    starts: int = 1,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    roll: Callable[[Stepper, Tensor, int], Tensor] = rollout,
) -> RolloutReport:
    """One-step and rollout errors of ``step`` on ``data`` (see the module docstring).

    Windows are evaluated ``batch_size`` at a time on ``device``; errors are accumulated in float64. ``roll`` executes
    the rollouts (:func:`rollout`, or a parallel-in-time executor's, :mod:`pdesolve.parallel_time`).
    """
    if len(data) == 0:
        raise ValueError("no trajectories to evaluate on")
    frames = data.frames  # [traj, time, channel, *space]
    n_traj, n_time = frames.shape[:2]
    sd = data.grid.ndim
    steps, firsts = start_times(n_time, history, steps, starts)

    def run(x: Tensor) -> Tensor:
        return step(x.to(device=device, dtype=dtype)).to(device="cpu", dtype=torch.float64)

    # one step, at every start time of every trajectory: windows [traj * starts, history + 1, ...]
    windows = frames.unfold(1, history + 1, 1).movedim(-1, 2).flatten(0, 1)
    one = torch.cat([
        relative_l2_frames(first_frame(run(w[:, :history]), w), w[:, history].double(), sd)  # [chunk, channel]
        for w in windows.split(batch_size)
    ])
    # rollouts of `steps` steps from each start time
    begin = torch.stack([frames[:, s : s + history] for s in firsts], dim=1).flatten(0, 1)  # [traj * starts, history, ...]
    truth = torch.stack([frames[:, s + history : s + history + steps] for s in firsts], dim=1).flatten(0, 1)
    per_frame, whole = [], []
    for x, y in zip(begin.split(batch_size), truth.split(batch_size), strict=True):
        pred = roll(run, x.double(), steps)  # [chunk, steps, channel, *space] float64
        y = y.double()
        per_frame.append(relative_l2_frames(pred, y, sd))  # [chunk, steps, channel]
        whole.append(relative_l2_frames(pred.movedim(1, -1 - sd), y.movedim(1, -1 - sd), sd + 1))  # [chunk, channel]
    frame_err, roll = torch.cat(per_frame), torch.cat(whole)
    return RolloutReport(
        one_step=float(one.mean()),
        rollout=float(roll.mean()),
        per_step=frame_err.mean(dim=(0, 2)).numpy(),
        steps=steps,
        starts=firsts,
        trajectories=n_traj,
        per_field={f: float(roll[:, c].mean()) for c, f in enumerate(data.fields)},
    )


@torch.no_grad()
def full_rollout(step: Stepper, data: Trajectories, history: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, roll: Callable[[Stepper, Tensor, int], Tensor] = rollout) -> np.ndarray:
    """Roll every trajectory out from its first ``history`` frames to the last frame time.

    Returns ``[trajectory, time, channel, *space]`` float64 whose first ``history`` frames are the given ones.
    """
    start = data.frames[:, :history]
    pred = roll(lambda x: step(x.to(device=device, dtype=dtype)).cpu().double(), start.double(), data.grid.time.n - history)  # type: ignore[union-attr]
    return torch.cat([start.double(), pred], dim=1).numpy()
