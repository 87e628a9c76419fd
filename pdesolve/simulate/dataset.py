"""Write simulated trajectories to an HDF5 file, appending as they finish, resumable after a crash.

Layout (``format = "pdesolve-trajectories"``, version 1)::

    u             [trajectory, time, channel, *space] float32, one trajectory per chunk (time split so
                  that a chunk stays under 4 MiB), gzip + shuffle; grows as trajectories finish
    t             [time] float64, the saved times
    <axis>        [n] float64, one coordinate array per space axis (``x``, ``y``, ...)
    params/<name> [trajectory] float64, the per-trajectory parameters that were drawn
    attributes    problem (the YAML text), settings (JSON), simulator, simulator_description, seed,
                  pdesolve_version, fields, axes, periodic, n_trajectories (the target), complete, layout

The file is opened, appended to and closed for every finished batch, so it is closed (and consistent)
while the simulator runs: an interrupted run, even by ``kill -9``, leaves every finished batch readable,
and rerunning the same command resumes after the last one. Trajectory ``i`` is member ``i`` of the
settings' initial-condition family (:class:`~pdesolve.simulate.family.InitialConditionFamily`, no stream):
it depends only on the seed and ``i`` (not on the batch size or on interruptions), so a resumed file
equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..errors import UserError
from ..grid import Grid
from ..io import atomic_path
from ..problem import Problem
from .api import select_simulator, simulate
from .base import Simulator
from .family import InitialConditionFamily
from .settings import SimulateSettings

FORMAT = "pdesolve-trajectories"
FORMAT_VERSION = 1
LAYOUT = "u[trajectory, time, channel, *space]"
CHUNK_BYTES = 4 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetReport:
    path: Path
    trajectories: int
    resumed_from: int
    simulator: str


def generate_dataset(
    path: str | os.PathLike[str],
    problem: Problem,
    settings: SimulateSettings,
    *,
    problem_text: str,
    seed: int,
    quiet: bool = False,
    overwrite: bool = False,
) -> DatasetReport:
    """Simulate ``settings.trajectories`` trajectories of ``problem`` into ``path`` (resuming if it exists)."""
    path = Path(path)
    sim = select_simulator(problem, settings.simulator)
    grid = problem.domain.grid(settings.shape(problem.domain.space_names))
    n = settings.trajectories
    family = _family(problem, settings, seed, sim)
    design = family.design(n)  # a stream of its own, apart from the initial states
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layout": LAYOUT,
        "problem": problem_text,
        "problem_name": problem.name,
        "equation": problem.equation.name,
        "settings": settings.model_dump_json(),
        "simulator": sim.name,
        "simulator_description": sim.description,
        "seed": int(seed),
        "n_trajectories": n,
        "pdesolve_version": __version__,
        "fields": json.dumps(list(problem.equation.fields)),
        "axes": json.dumps(list(problem.domain.space_names)),
        "periodic": json.dumps([a.periodic for a in problem.domain.space]),
    }
    if path.is_dir():
        raise UserError(f"{path}: a directory; --out names the HDF5 file to write")
    with writer_lock(path):
        return _generate(path, problem, settings, sim, grid, meta, family, design, overwrite=overwrite, quiet=quiet)


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """One writer per dataset: an exclusive lock on ``<file>.lock`` that a second writer meets at once (a clear
    error), and that the operating system releases if the writer dies."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(f"{path}: cannot write beside it ({err.strerror or err}); choose another --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{path} is being written by another process (it holds {lock.name}); wait for it to finish, "
                            "or write to another --out") from None
        yield
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _generate(path: Path, problem: Problem, settings: SimulateSettings, sim: Simulator, grid: Grid, meta: Mapping[str, object],
              family: InitialConditionFamily, design: Mapping[str, np.ndarray], *, overwrite: bool, quiet: bool) -> DatasetReport:
    """Append the missing trajectories (the caller holds the writer's lock)."""
    n = settings.trajectories
    if path.exists() and overwrite:
        path.unlink()
    if path.exists():
        done = _check_resume(path, meta)
        if done:
            log.info("resuming %s: %d of %d trajectories already there", path, done, n)
    else:
        _create(path, meta, grid, len(problem.equation.fields), sorted(design))
        done = 0
    start = done
    with tqdm(total=n, initial=done, unit="traj", disable=quiet, desc=f"simulate {problem.name}") as bar:
        while done < n:
            stop = min(n, done + settings.batch_size)
            index = np.arange(done, stop)
            u0 = family.states(index, grid, design)
            sol = simulate(
                problem,
                grid,
                u0=torch.as_tensor(u0),
                params=family.simulation_parameters(design, index),
                numerics=settings.numerics(),
                simulator=sim.name,
                device=settings.device,
                dtype=torch.float64 if settings.dtype == "float64" else torch.float32,
            )
            _append(path, sol.numpy().astype(np.float32), {k: v[index] for k, v in design.items()}, complete=stop == n)
            bar.update(stop - done)
            done = stop
    return DatasetReport(path, n, start, sim.name)


# --------------------------------------------------------------------------------------- internals
def _family(problem: Problem, settings: SimulateSettings, seed: int, sim: Simulator) -> InitialConditionFamily:
    """The settings' initial conditions and parameter design, after checking the names against the simulator."""
    valid = set(problem.equation.parameters) | {f"initial.{f}" for f in problem.equation.fields} | set(sim.boundary_keys(problem))
    unknown = sorted(set(settings.parameters) - valid)
    if unknown:
        raise UserError(f"simulate.parameters: unknown names {unknown}; valid names for {sim.name} are {sorted(valid)}")
    return InitialConditionFamily(problem, settings.initial, settings.parameters, settings.sampler, seed, sim.name)


def _create(path: Path, meta: Mapping[str, object], grid, channels: int, param_names: list[str]) -> None:
    """Write the empty file (coordinates, attributes, zero trajectories) atomically."""
    clash = {a.name for a in grid.space} & {"u", "t", "params"}
    if clash:
        raise UserError(f"axis names {sorted(clash)} clash with the dataset names u, t, params; rename the axes")
    nt = grid.time.n
    frame = channels * int(np.prod(grid.space_shape)) * 4
    tc = int(max(1, min(nt, CHUNK_BYTES // max(frame, 1))))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(
            "u",
            shape=(0, nt, channels) + grid.space_shape,
            maxshape=(None, nt, channels) + grid.space_shape,
            dtype="float32",
            chunks=(1, tc, channels) + grid.space_shape,
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        f["t"] = grid.time.coords
        for a in grid.space:
            f[a.name] = a.coords
        g = f.create_group("params")
        for name in param_names:
            g.create_dataset(name, shape=(0,), maxshape=(None,), dtype="float64", chunks=(1024,))
        for k, v in meta.items():
            f.attrs[k] = v
        f.attrs["complete"] = False


def _check_resume(path: Path, meta: Mapping[str, object]) -> int:
    """The number of trajectories already in ``path``, after checking it was made by the same run."""
    try:
        with h5py.File(path, "r") as f:
            differ = [k for k in ("format", "problem", "settings", "seed", "simulator") if _attr(f.attrs.get(k)) != meta[k]]
            done = int(f["u"].shape[0])
    except (OSError, KeyError) as err:
        raise UserError(f"{path} exists but is not a readable pdesolve dataset ({err}); remove it or pass --overwrite") from None
    if differ:
        raise UserError(
            f"{path} was made with a different {', '.join(differ)}; pass --overwrite to start over, or choose another --out"
        )
    return done


def _attr(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.integer):
        return int(value)
    return value


def _open_for_append(path: Path, patience: float = 30.0) -> h5py.File:
    """Open for appending, waiting while a reader holds the file's lock (``pdesolve data describe``, a loader)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return h5py.File(path, "a")
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _append(path: Path, u: np.ndarray, params: Mapping[str, np.ndarray], complete: bool) -> None:
    """Append finished trajectories ``u [batch, time, channel, *space]`` and close the file again."""
    with _open_for_append(path) as f:
        ds = f["u"]
        start = ds.shape[0]  # the trajectory count is u's length: parameters first, u last
        for name, values in params.items():
            p = f["params"][name]
            p.resize(start + len(u), axis=0)
            p[start:] = values
        ds.resize(start + len(u), axis=0)
        ds[start:] = u
        f.attrs["complete"] = complete
        f.flush()
