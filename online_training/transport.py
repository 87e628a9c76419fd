"""Both ends of a client-server link over MPI: non-blocking sends of numpy buffers, credits for back-pressure.

A client may have at most ``window`` frames that the server has not yet put in its buffer: each frame
spends a credit, and the server hands credits back as it stores frames. When the buffer is full the
server stops storing, no credits come back, and the client waits before its next frame, so memory stays
bounded on both sides however fast the simulations run. Sends are ``Isend`` from a pool of buffers,
each reused once MPI reports its send complete; waits poll with short sleeps rather than spinning,
because clients and servers may share cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .protocol import CONTROL, STREAM, Kind, Message, control, lost, message_bytes, pack, unpack
from .roles import StopFlag

POLL_S = 5e-4


class Backoff:
    """Sleeps that double from ``first`` up to ``longest`` while nothing happens; ``reset`` when something does."""

    def __init__(self, first: float = 2e-4, longest: float = 2e-3):
        self.first, self.longest, self.now = first, longest, first

    def wait(self) -> None:
        time.sleep(self.now)
        self.now = min(2 * self.now, self.longest)

    def reset(self) -> None:
        self.now = self.first


@dataclass(frozen=True)
class Task:
    sim: int
    attempt: int
    params: np.ndarray  # [P] float64


class _Sends:
    """Outstanding ``Isend`` requests and the buffers they use."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.buffers: list[np.ndarray] = []
        self.dests: list[int] = []

    def add(self, request: Any, buf: np.ndarray, dest: int = -1) -> None:
        self.requests.append(request)
        self.buffers.append(buf)
        self.dests.append(dest)

    def forget(self, dests: set[int]) -> None:
        """Drop the sends to failed processes: they will never complete (a receive that never comes)."""
        keep = [i for i, d in enumerate(self.dests) if d not in dests]
        self.requests = [self.requests[i] for i in keep]
        self.buffers = [self.buffers[i] for i in keep]
        self.dests = [self.dests[i] for i in keep]

    def reap(self) -> list[np.ndarray]:
        """Forget completed sends (and sends to a failed process); returns their buffers."""
        from mpi4py import MPI

        if not self.requests:
            return []
        try:
            done = MPI.Request.Testsome(self.requests) or []
        except MPI.Exception as err:  # a send to a process that failed (ULFM): test them one by one
            if not _process_failure(err):
                raise
            done = [i for i, r in enumerate(self.requests) if _settled(r)]
        freed = [self.buffers[i] for i in done]
        for i in sorted(done, reverse=True):
            del self.requests[i], self.buffers[i], self.dests[i]
        return freed

    def wait_any(self) -> list[np.ndarray]:
        while True:
            freed = self.reap()
            if freed or not self.requests:
                return freed
            time.sleep(POLL_S)

    def wait_all(self) -> None:
        while self.requests:
            self.wait_any()


class ClientLink:
    """A client's end: asks for tasks, streams frames within its credits, reports the outcome."""

    def __init__(self, comm: Any, server: int, frame_bytes: int, n_params: int, window: int, stop: StopFlag):
        self.comm, self.server, self.stop = comm, server, stop
        self.credits = window
        size = message_bytes(frame_bytes)
        self.free = [np.empty(size, np.uint8) for _ in range(window + 4)]
        self.sends = _Sends()
        self.inbox = np.empty(4 + n_params, np.float64)
        self.task: Task | None = None
        self.stopped = False  # the server said STOP
        self.wait_s = 0.0  # time spent waiting for credits (back-pressure)

    @property
    def leaving(self) -> bool:
        return self.stopped or self.stop.is_set

    def _poll(self) -> None:
        from mpi4py import MPI

        while self.comm.Iprobe(source=self.server, tag=CONTROL):
            self.comm.Recv([self.inbox, MPI.DOUBLE], source=self.server, tag=CONTROL)
            kind = Kind(int(self.inbox[0]))
            if kind == Kind.CREDIT:
                self.credits += int(self.inbox[3])
            elif kind == Kind.TASK:
                self.task = Task(int(self.inbox[1]), int(self.inbox[2]), self.inbox[4:].copy())
            elif kind == Kind.STOP:
                self.stopped = True

    def _send(self, kind: Kind, **fields: Any) -> None:
        from mpi4py import MPI

        self.free += self.sends.reap()
        if not self.free:
            self.free += self.sends.wait_any()
        buf = self.free.pop()
        n = pack(buf, kind, **fields)
        self.sends.add(self.comm.Isend([buf, n, MPI.BYTE], dest=self.server, tag=STREAM), buf)

    def request(self) -> Task | None:
        """The next simulation to run, or None once the server says stop (or a stop signal came)."""
        self.task = None
        self._send(Kind.REQUEST)
        idle = Backoff(longest=2e-2)
        while True:
            self._poll()
            if self.task is not None:
                return self.task
            if self.leaving:
                return None
            idle.wait()

    def send_frame(self, task: Task, step: int, steps: int, frame: np.ndarray) -> bool:
        """Stream one frame (float32, contiguous); False if the run must stop instead."""
        self._poll()
        if self.credits <= 0:
            t0, pause = time.perf_counter(), Backoff()
            while self.credits <= 0 and not self.leaving:
                pause.wait()
                self._poll()
            self.wait_s += time.perf_counter() - t0
        if self.leaving:
            return False
        self._send(Kind.DATA, sim=task.sim, attempt=task.attempt, step=step, a=steps, payload=frame)
        self.credits -= 1
        return True

    def end(self, task: Task, frames: int, seconds: float) -> None:
        self._send(Kind.END, sim=task.sim, attempt=task.attempt, a=frames, b=int(seconds * 1e6))

    def fail(self, task: Task, reason: str) -> None:
        self._send(Kind.FAIL, sim=task.sim, attempt=task.attempt, payload=reason.encode("utf-8")[: 512])

    def bye(self, alive_s: float) -> None:
        """Say goodbye and wait until every send is complete (the server drains until it hears this)."""
        self._send(Kind.BYE, a=int(self.wait_s * 1e6), b=int(alive_s * 1e6))
        self.sends.wait_all()


def _process_failure(err: Any) -> bool:
    """Whether an MPI error says a peer process failed (ULFM: ``mpiexec --with-ft ulfm``)."""
    from mpi4py import MPI

    return err.Get_error_class() in (MPI.ERR_PROC_FAILED, MPI.ERR_PROC_FAILED_PENDING)


def failures_agreed(comm: Any, tries: int = 16) -> int:
    """How many processes of ``comm`` have failed, agreed on by every survivor (a collective call).

    The agreement is ULFM's fault-tolerant consensus (``MPIX_Comm_agree``): it completes on every surviving
    rank whatever failed, and it returns only once every survivor has called it, so no survivor is still at
    work when it returns. It reports a failure that was not yet acknowledged by raising; the failures are then
    acknowledged and the agreement retried. 0 where the MPI library has no ULFM extension.
    """
    from mpi4py import MPI

    for _ in range(tries):
        try:
            comm.Agree(1)
            break
        except NotImplementedError:
            return 0
        except MPI.Exception as err:
            if not _process_failure(err):
                raise
            comm.Ack_failed()
    group = comm.Get_failed()
    failed = group.Get_size()
    group.Free()
    return failed


def _settled(request: Any) -> bool:
    """A send request that completed, or failed because its peer did."""
    from mpi4py import MPI

    try:
        return bool(request.Test())
    except MPI.Exception as err:
        if not _process_failure(err):
            raise
        return True


class ServerLink:
    """A server's end: receives whatever its clients sent, and sends them tasks, credits and STOP.

    Under ``mpiexec --with-ft ulfm`` a client whose process dies (a crash, an out-of-memory kill) does not take
    the job down: the link notices the failure (MPI errors return instead of aborting), acknowledges it, and
    reports a ``LOST`` message for that client after everything it had sent, so that the server puts its
    unfinished simulation back in the queue. Without it, Open MPI ends the whole job, and a rerun resumes from
    the last checkpoint.
    """

    def __init__(self, comm: Any, frame_bytes: int, n_params: int):
        from mpi4py import MPI

        self.comm, self.n_params = comm, n_params
        self.buf = np.empty(message_bytes(frame_bytes), np.uint8)
        self.sends = _Sends()
        self.lost: set[int] = set()
        comm.Set_errhandler(MPI.ERRORS_RETURN)

    def poll(self, limit: int = 256) -> list[Message]:
        """Up to ``limit`` messages that have arrived, in arrival order (per client: in sending order), and a
        ``LOST`` message for each client whose process has failed since the last poll."""
        from mpi4py import MPI

        status = MPI.Status()
        out: list[Message] = []
        try:
            while len(out) < limit and self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=STREAM, status=status):
                source, n = status.Get_source(), status.Get_count(MPI.BYTE)
                self.comm.Recv([self.buf, n, MPI.BYTE], source=source, tag=STREAM)
                out.append(unpack(source, self.buf))
        except MPI.Exception as err:
            if not _process_failure(err):
                raise
            out += self._failed()
        return out

    def _failed(self) -> list[Message]:
        """Acknowledge the failed processes (so that receives from any source go on) and report the new ones."""
        self.comm.Ack_failed()
        group = self.comm.Get_failed()
        ranks = group.Translate_ranks(list(range(group.Get_size())), self.comm.Get_group())
        group.Free()
        new = sorted(set(ranks) - self.lost)
        self.lost |= set(new)
        self.sends.forget(self.lost)
        return [lost(r) for r in new]

    def send(self, client: int, kind: Kind, sim: int = -1, attempt: int = -1, credits: int = 0, params: np.ndarray | None = None) -> None:
        from mpi4py import MPI

        if client in self.lost:
            return
        self.sends.reap()
        msg = control(kind, self.n_params, sim, attempt, credits, params)
        try:
            self.sends.add(self.comm.Isend([msg, MPI.DOUBLE], dest=client, tag=CONTROL), msg, client)
        except MPI.Exception as err:
            if not _process_failure(err):
                raise
            self.lost.add(client)
            self.sends.forget(self.lost)

    def close(self) -> None:
        self.sends.forget(self.lost)
        self.sends.wait_all()
