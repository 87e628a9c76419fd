"""A client rank: asks its server for a simulation, runs it, streams every time step, reports the outcome.

A simulation that raises, or makes a frame with non-finite values, is reported to the server (which
removes its frames from the buffer and queues it again); the client then asks for the next one. A stop
from the server or a stop signal ends the run in progress at the next frame.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .monitor import open_audit
from .roles import Roles, StopFlag
from .simulation import SimulationPlan
from .study import Study
from .transport import ClientLink, Task

log = logging.getLogger(__name__)

Runner = Callable[[int, np.ndarray], Iterator[tuple[int, np.ndarray]]]
"""``(simulation, parameters [P]) -> (step, frame [channel, *space])`` for steps 0..steps, in order."""


def run_client(study: Study, roles: Roles, plan: SimulationPlan, folder: Path, stop: StopFlag, runner: Runner | None = None) -> int:
    """Serve simulations until the server says stop; returns the exit code (0)."""
    frame_bytes = int(np.prod(plan.frame_shape)) * 4
    link = ClientLink(roles.comm, roles.server_of_client, frame_bytes, len(plan.names), study.online.window, stop)
    run = runner or plan.frames
    audit = open_audit(Path(folder) / "audit" / f"sent-rank{roles.rank}.csv", "sim,attempt,step,crc") if study.online.audit else None
    start = time.perf_counter()
    while True:
        task = link.request()
        if task is None:
            break
        outcome = _simulate(link, task, run, plan, study.simulate.steps, audit)
        if outcome is None:  # told to stop mid-run
            break
    link.bye(time.perf_counter() - start)
    if audit is not None:
        audit.close()
    return 0


def _simulate(link: ClientLink, task: Task, run: Runner, plan: SimulationPlan, steps: int, audit) -> bool | None:
    """Run one simulation and stream it; True if it ended, False if it failed, None if told to stop."""
    sent, simulating = 0, 0.0
    try:
        frames = run(task.sim, task.params)
        while True:
            t0 = time.perf_counter()
            item = next(frames, None)
            simulating += time.perf_counter() - t0
            if item is None:
                break
            step, frame = item
            frame = np.ascontiguousarray(frame, dtype=np.float32)
            if frame.shape != plan.frame_shape:
                raise ValueError(f"time step {step}: a frame of shape {frame.shape}, expected {plan.frame_shape}")
            if not np.all(np.isfinite(frame)):
                raise FloatingPointError(f"non-finite values at time step {step}")
            if not link.send_frame(task, step, steps, frame):
                return None
            if audit is not None:
                audit.write(f"{task.sim},{task.attempt},{step},{zlib.crc32(frame.tobytes())}\n")
            sent += 1
    except Exception as err:  # noqa: BLE001 - any failure of a simulation is reported and the run is queued again
        log.warning("rank %d: simulation %d (run %d) failed: %s: %s", link.comm.Get_rank(), task.sim, task.attempt, type(err).__name__, err)
        link.fail(task, f"{type(err).__name__}: {err}")
        return False
    link.end(task, sent, simulating)
    return True

