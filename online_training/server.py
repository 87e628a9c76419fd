"""A server rank: hands out simulations, stores what its clients stream, trains, checkpoints.

Training is pdesolve's one loop (:func:`pdesolve.train.train`) on a :class:`~online_training.trainer.SurrogateTask`
whose records come from this server (a :class:`~online_training.trainer.RecordSource`). Before each step the
server pumps the stream: take every message that has arrived; hand tasks to idle clients; move received
frames into the buffer while it has room (credits go back to the clients as frames are stored: the
back-pressure); agree with the other servers (one small all-reduce) whether to stop and whether every
server can draw a batch; then let the step run, or wait a moment and pump again. A stop (a signal, no
clients left, the stream ended and the buffers empty) ends the loop through :class:`pdesolve.train.StopTraining`.
Messages from a client are handled in the order it sent them, so a failure report finds every frame of
that run already stored and removes them all: a failed run leaves no partial time steps in the buffer.
Checkpoints (every ``train.checkpoint_every`` steps and at the end) hold the model, the rule, the buffer,
the scheduler and the monitor of every server (:class:`~online_training.checkpoint.Checkpoints`); running
the same command again resumes from them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdesolve.distributed import GradientAverager, Ranks
from pdesolve.io import write_json, write_with
from pdesolve.optim import make_optimizer
from pdesolve.train import StopTraining, TrainSettings, train

from .buffer import Buffer
from .checkpoint import Checkpoints
from .gradient_coding import GradientCoder
from .monitor import Monitor, open_audit, progress_line, write_figures
from .protocol import Kind, Message
from .roles import Roles, StopFlag
from .scheduler import FAILED, FINISHED, Scheduler
from .simulation import SimulationPlan
from .study import Study
from .surrogate import Surrogate
from .trainer import RecordSource, SurrogateTask
from .transport import POLL_S, Backoff, ServerLink

log = logging.getLogger(__name__)

COMPLETE, STOPPED, DIVERGED = 0, 3, 4  # exit codes
ROW_EVERY_S = 1.0  # a metrics row at least this often while waiting for data


@dataclass
class Parts:
    """Everything one server works with, built by ``main``."""

    study: Study
    roles: Roles
    plan: SimulationPlan
    design: np.ndarray  # [simulations, P] parameters of every simulation
    surrogate: Surrogate
    device: torch.device
    group: Any  # the servers' torch.distributed group (None with one server)
    buffer: Buffer
    scheduler: Scheduler
    link: ServerLink
    checkpoints: Checkpoints
    monitor: Monitor
    folder: Path
    validation: np.ndarray | None  # held-out records (first server only)


class Server(RecordSource):
    def __init__(self, parts: Parts, stop: StopFlag):
        self.p, self.stop = parts, stop
        self.index = parts.roles.rank
        self.live = set(parts.roles.clients_of(self.index))
        self.idle: deque[int] = deque()
        self.staged: deque[Message] = deque()
        self.owed: dict[int, int] = dict.fromkeys(self.live, 0)
        self.previous: dict[int, np.ndarray] = {}  # last frame of each running simulation (one-step pairs)
        self.scaled = parts.plan.scaled(parts.design).astype(np.float32)
        self.t_scaled = parts.plan.scaled_times()
        self.credit_batch = max(1, parts.study.online.window // 4)
        self.checksum_errors = 0
        self.audit = self._open_audit() if parts.study.online.audit else None
        study = parts.study
        self.task = SurrogateTask(parts.surrogate, parts.device, study.seed, self, parts.monitor, validation=parts.validation,
                               validate_every=study.train.validate_every, reduce=self._sum)
        self.averager: GradientAverager | None = None
        self.coder: GradientCoder | None = None
        coding = study.online.gradient_coding
        self.task.server, self.task.delay = self.index, study.online.inject_delay
        if parts.roles.servers > 1 and coding.scheme != "none":  # coded: MPI only, no torch.distributed group
            self.coder = self.task.coder = GradientCoder(self.task.model, parts.roles.server_comm, coding, study.online.inject_delay)
        elif parts.group is not None:
            self.averager = self.task.averager = GradientAverager(self.task.model, parts.group)
            self.task.ranks = Ranks.of(parts.group)
        parts.checkpoints.after_save = self._write_tables

    # ------------------------------------------------------------------------------ the record source
    def state_dict(self) -> dict[str, Any]:
        p = self.p
        return {
            "buffer": p.buffer.state_dict(exclude_sims=p.scheduler.unfinished()),
            "scheduler": p.scheduler.state_dict(),
            "checksum_errors": self.checksum_errors,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        p = self.p
        p.buffer.load_state_dict(state["buffer"])
        p.scheduler.load_state_dict(state["scheduler"])
        self.checksum_errors = state["checksum_errors"]
        s, info = p.scheduler, p.checkpoints.manifest()
        log.info("resuming from the checkpoint at step %s: %d simulations finished, %d to run, %d given up; %d records in the buffer",
                 info["step"] if info else "?", s.count(FINISHED), len(s.unfinished()) - s.count(FAILED), s.count(FAILED), p.buffer.size)

    def wait(self, step: int) -> None:
        """Pump the stream until every server can draw a batch; raise StopTraining when the servers agree to stop."""
        p = self.p
        pause = Backoff()
        while True:
            if self._receive():
                pause.reset()
            self._ingest()
            self._assign()
            if p.scheduler.complete and not self.staged and not p.buffer.draining:
                p.buffer.drain()
                log.info("all simulations of server %d are done; training on what its buffer holds", self.index)
            lost = not self.live and not p.scheduler.complete
            exhausted = p.buffer.draining and p.buffer.size == 0
            waiting = not exhausted and not p.buffer.ready(p.study.train.batch_size)
            # [any asked to stop, any lost its clients, all exhausted, any waits]
            flags = self._reduce(np.array([self.stop.is_set, lost, not exhausted, waiting], dtype=np.int64), "MAX")
            if flags[0] or flags[1] or not flags[2]:
                raise self._stopping(step, flags)
            if not flags[3]:
                return
            if p.monitor.now() - p.monitor.last_row >= ROW_EVERY_S:  # the buffer filling up shows too
                self._row(step, {})
            pause.wait()

    def sample(self) -> np.ndarray:
        if not self.task.normalized:  # (fitted just before) the first batch
            log.info("training starts: %d records in the buffer", self.p.buffer.size)
        return self.p.buffer.sample(self.p.study.train.batch_size)  # empty on a server whose buffer ran dry

    def normalization_records(self) -> np.ndarray:
        return self.p.buffer.records()

    def _stopping(self, step: int, flags: np.ndarray) -> StopTraining:
        """The StopTraining that ends the run at ``step``, after a last validation and metrics row."""
        if flags[0]:
            kind, reason = "interrupted", f"stopped by {self.stop.reason}" if self.stop.is_set else "stopped by a signal to another server"
        elif flags[1]:
            kind, reason = "interrupted", "no clients left"
        else:
            kind, reason = "ended", "complete: the stream ended and the buffers are empty"
        self.task.validate()
        if not self.p.monitor.rows or self.p.monitor.rows[-1]["step"] != step:
            self._row(step, {})
        return StopTraining(kind, reason)

    # -------------------------------------------------------------------------------- the loop
    def run(self) -> int:
        """Train until the budget, the end of the stream or a stop; resume from the folder's checkpoint if it has one."""
        p, spec = self.p, self.p.study.train
        rule = make_optimizer(spec.optimizer.name, p.study.optimizer_options, spec.steps)  # type: ignore[arg-type]
        settings = TrainSettings(steps=spec.steps, checkpoint_every=spec.checkpoint_every, log_every=spec.log_every, quiet=True,
                                 divergence_remedy="lower the learning rate (train.optimizer.lr)")
        result = train(self.task, rule, settings, checkpoint=p.checkpoints, resume=p.checkpoints.exists(), callbacks=[self._log])
        status = result.status
        reason = {"budget": "complete", "diverged": "diverged"}.get(status.kind, status.message)
        if status.kind == "diverged":
            log.error("%s", status.message)
        return self._finish(reason, status.step)

    def _log(self, step: int, record: dict[str, float]) -> None:
        row = self._row(step, record)
        if self.index == 0:
            val = self.p.monitor.validation
            log.info(progress_line(row, self.p.study.train.steps, val[-1]["val_rel_l2"] if val else None))

    def _write_tables(self) -> None:
        self.p.monitor.write(self.p.buffer.seen_histogram())

    def _sum(self, values: np.ndarray) -> np.ndarray:
        return self._reduce(np.ascontiguousarray(values, dtype=np.float64), "SUM")

    def _reduce(self, local: np.ndarray, op: str) -> np.ndarray:
        if self.p.roles.servers == 1:
            return local
        from mpi4py import MPI

        out = np.empty_like(local)
        self.p.roles.server_comm.Allreduce(local, out, op=getattr(MPI, op))
        return out

    # ------------------------------------------------------------------------------- messages
    def _receive(self) -> int:
        """Take the messages that have arrived; returns how many."""
        messages = self.p.link.poll()
        for m in messages:
            if m.kind == Kind.REQUEST:
                self.idle.append(m.source)
            else:
                if m.kind == Kind.DATA and self.audit is not None:
                    self.audit.write(f"{m.sim},{m.attempt},{m.step},{m.crc},{int(m.intact)},{m.source}\n")
                self.staged.append(m)
        return len(messages)

    def _assign(self) -> None:
        p = self.p
        while self.idle and p.scheduler.queue:
            client = self.idle.popleft()
            if client not in self.live:
                continue
            sim, attempt = p.scheduler.next(client)  # type: ignore[misc]
            p.link.send(client, Kind.TASK, sim=sim, attempt=attempt, params=p.design[sim])

    def _ingest(self) -> None:
        """Handle staged messages in order; stop at a frame the buffer has no room for."""
        p = self.p
        while self.staged:
            m = self.staged[0]
            if m.kind == Kind.DATA and not self._store(m):
                break
            if m.kind == Kind.END:
                self._end(m)
            elif m.kind == Kind.FAIL:
                self._fail(m.sim, m.attempt, m.source, m.text())
            elif m.kind == Kind.BYE:
                self._bye(m)
            elif m.kind == Kind.LOST:
                self._lost(m)
            self.staged.popleft()
        for client, n in self.owed.items():
            if client in self.live and (n >= self.credit_batch or (n and not self.staged)):
                p.link.send(client, Kind.CREDIT, credits=n)
                self.owed[client] = 0

    def _store(self, m: Message) -> bool:
        """Store one frame; False if the buffer has no room (the message stays staged)."""
        p = self.p
        current = p.scheduler.is_current(m.sim, m.attempt)
        if current and not m.intact:
            self.checksum_errors += 1
            self._fail(m.sim, m.attempt, m.source, f"CRC-32 mismatch on time step {m.step}")
            current = False
        if current:
            frame = m.payload.view(np.float32).reshape(p.plan.frame_shape)  # type: ignore[union-attr]
            record = p.surrogate.record(self.scaled[m.sim], float(self.t_scaled[m.step]), frame, self.previous.get(m.sim))
            if record is not None and not p.buffer.put(record, m.sim, m.step):
                return False
            self.previous[m.sim] = frame
            p.monitor.got_frame()
            p.monitor.stored += record is not None
        self.owed[m.source] = self.owed.get(m.source, 0) + 1
        return True

    def _end(self, m: Message) -> None:
        p = self.p
        if not p.scheduler.is_current(m.sim, m.attempt):
            return
        expected = p.study.simulate.steps + 1
        if m.a != expected:
            self._fail(m.sim, m.attempt, m.source, f"the client reported {m.a} frames, expected {expected}")
            return
        p.scheduler.finish(m.sim)
        self.previous.pop(m.sim, None)
        p.monitor.client(m.source, simulations=1, frames=m.a, simulate_s=m.b * 1e-6)

    def _fail(self, sim: int, attempt: int, client: int, reason: str) -> None:
        p = self.p
        if not p.scheduler.is_current(sim, attempt):
            return
        removed = p.buffer.remove(sim)
        self.previous.pop(sim, None)
        requeued = p.scheduler.fail(sim)
        p.monitor.failed(sim, attempt, client, reason, requeued, removed)
        log.warning(
            "simulation %d (run %d) failed on rank %d: %s; %d records removed; %s", sim, attempt, client, reason, removed,
            "queued again" if requeued else f"given up after {p.scheduler.max_retries + 1} failures",
        )

    def _lost(self, m: Message) -> None:
        """A client whose process failed: its simulations go back in the queue, its partial frames out of the buffer."""
        self.live.discard(m.source)
        p = self.p
        for sim in p.scheduler.release(m.source):
            removed = p.buffer.remove(sim)
            self.previous.pop(sim, None)
            p.monitor.failed(sim, -1, m.source, f"the client's process (rank {m.source}) failed", True, removed)
            log.warning("client rank %d failed while running simulation %d: %d records removed; queued again", m.source, sim, removed)
        log.warning("client rank %d is gone (process failure); %d clients left", m.source, len(self.live))

    def _bye(self, m: Message) -> None:
        self.live.discard(m.source)
        self.p.monitor.client(m.source, wait_s=m.a * 1e-6, alive_s=m.b * 1e-6)
        for sim in self.p.scheduler.release(m.source):
            self.p.buffer.remove(sim)
            self.previous.pop(sim, None)

    def _row(self, step: int, record: dict[str, float]) -> dict[str, float]:
        p, s = self.p, self.p.scheduler
        return p.monitor.row(step, record, p.buffer.size, p.buffer.capacity, s.count(FINISHED), s.count(FAILED), len(s.ids))

    # ------------------------------------------------------------------------------------ end
    def _finish(self, reason: str, step: int) -> int:
        p = self.p
        for client in sorted(self.live):
            p.link.send(client, Kind.STOP)
        while self.live:  # drain: every client's sends must complete before it may leave
            self._receive()  # frames still in flight are audited, then dropped
            for m in self.staged:
                if m.kind == Kind.BYE:
                    self._bye(m)
                elif m.kind == Kind.LOST:
                    self._lost(m)
            self.staged.clear()
            if self.live:
                time.sleep(POLL_S)
        p.link.close()
        if self.audit is not None:
            self.audit.close()
        if self.coder is not None:
            self.coder.close()
            if self.index == 0:
                log.info("gradient coding: the last round decoded from servers %s; %d late results dropped on server 0",
                         list(self.coder.responders), self.coder.exchange.stale)
        if self.averager is not None:
            self.averager.close()
        self._write_tables()
        self._summary(reason, step)
        code = COMPLETE if reason.startswith("complete") else DIVERGED if reason == "diverged" else STOPPED
        level = logging.INFO if code == COMPLETE else logging.WARNING
        if self.index == 0:
            log.log(level, "%s at step %d; run folder %s%s", reason, step, p.folder,
                    "" if code != STOPPED else " (run the same command again to resume)")
        return code

    def _summary(self, reason: str, step: int) -> None:
        p = self.p
        s = p.scheduler
        counts = self._sum(np.array([
            p.monitor.received, p.monitor.stored, p.monitor.trained, s.count(FINISHED), s.count(FAILED), len(s.ids),
            self.checksum_errors, p.buffer.evicted,
        ], dtype=np.float64))
        if p.roles.servers > 1:
            p.roles.server_comm.Barrier()  # every server's CSV files are written
        first, last = p.monitor.stream
        span = self._reduce(np.array([-np.inf if first is None else -first, -np.inf if last is None else last]), "MAX")
        stream_s = max(float(span.sum()), 0.0) if np.isfinite(span).all() else 0.0  # first frame to last, any server
        if self.index != 0:
            return
        elapsed = p.monitor.now()
        val = p.monitor.validation[-1]["val_rel_l2"] if p.monitor.validation else None
        started, ended = p.monitor.train_started, p.monitor.train_ended
        training_s = ended - started if started is not None and ended is not None else 0.0
        model = self.task.model
        write_with(p.folder / "model.pt", lambda path: torch.save({"model": model.state_dict(), "study": p.study.raw}, path))
        write_json(p.folder / "summary.json", {
            "mode": "online", "status": reason, "steps": step, "servers": p.roles.servers,
            "clients": p.roles.size - p.roles.servers, "time_s": round(elapsed, 3),
            "samples_received": int(counts[0]), "records_stored": int(counts[1]), "samples_trained": int(counts[2]),
            "training_s": round(training_s, 3), "stream_s": round(stream_s, 3), "received_per_s": counts[0] / max(stream_s, 1e-9),
            "trained_per_s": counts[2] / max(training_s, 1e-9),
            "simulations_finished": int(counts[3]), "simulations_failed": int(counts[4]), "simulations": int(counts[5]),
            "checksum_errors": int(counts[6]), "evicted": int(counts[7]), "val_rel_l2": val,
        })
        write_figures(p.folder, p.roles.servers)

    def _open_audit(self) -> Any:
        return open_audit(self.p.folder / "audit" / f"received-server{self.index}.csv", "sim,attempt,step,crc,intact,client")

