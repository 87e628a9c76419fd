"""The server's bookkeeping without MPI: a scripted link feeds it messages, as clients would.

Back-pressure (no credits while the buffer is full, credits once frames are stored), removal of a failed
run's partial time steps, stale frames of an abandoned run, incomplete runs, and a client that leaves.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_online_study import write_study

from online_training.buffer import make_buffer
from online_training.checkpoint import Checkpoints
from online_training.monitor import Monitor
from online_training.protocol import Kind, message_bytes, pack, unpack
from online_training.roles import Roles, StopFlag
from online_training.scheduler import FINISHED, WAITING, Scheduler
from online_training.server import Parts, Server
from online_training.simulation import SimulationPlan
from online_training.study import load_study
from online_training.surrogate import make_surrogate
from pdesolve.optim import make_optimizer


class ScriptedLink:
    """Stands in for the MPI link: ``poll`` returns what the test queued, ``send`` records what the server sent."""

    def __init__(self, frame_bytes: int):
        self.inbox: list = []
        self.sent: list[tuple[int, Kind, int, int, int]] = []
        self.buf = np.zeros(message_bytes(frame_bytes), np.uint8)

    def deliver(self, source: int, kind: Kind, **fields) -> None:
        n = pack(self.buf, kind, **fields)
        self.inbox.append(unpack(source, self.buf[:n]))

    def poll(self, limit: int = 256) -> list:
        out, self.inbox = self.inbox[:limit], self.inbox[limit:]
        return out

    def send(self, client: int, kind: Kind, sim: int = -1, attempt: int = -1, credits: int = 0, params=None) -> None:
        self.sent.append((client, kind, sim, attempt, credits))

    def credits(self, client: int) -> int:
        return sum(c for to, k, _, _, c in self.sent if to == client and k == Kind.CREDIT)

    def close(self) -> None:
        pass


@pytest.fixture()
def server(tmp_path):
    study = load_study(write_study(
        tmp_path, simulate={"trajectories": 4, "resolution": 16, "steps": 10},
        online={"window": 4, "max_retries": 1}, buffer={"kind": "fifo", "capacity": 3, "watermark": 2},
        train={"batch_size": 2, "steps": 1000, "checkpoint_every": 0, "validate_every": 0},
    ))
    plan = SimulationPlan(study.problem, study.simulate, 0)
    surrogate = make_surrogate(study.surrogate, plan.frame_shape, len(plan.names), (False, False))
    roles = Roles(comm=None, rank=0, size=3, servers=1, server_comm=None, node_index=0)  # clients 1 and 2
    link = ScriptedLink(int(np.prod(plan.frame_shape)) * 4)
    parts = Parts(
        study=study, roles=roles, plan=plan, design=plan.design(4), surrogate=surrogate, device=torch.device("cpu"), group=None,
        buffer=make_buffer("fifo", 3, surrogate.record_size, watermark=2), scheduler=Scheduler(np.arange(4), 1),
        link=link, checkpoints=Checkpoints(tmp_path, 0, 1, study.digest(), lambda: None), monitor=Monitor(tmp_path, 0),
        folder=tmp_path, validation=None,
    )
    srv = Server(parts, StopFlag())
    srv.frames = {s: [f.astype(np.float32) for _, f in plan.frames(s, parts.design[s])] for s in range(2)}
    srv.rule = make_optimizer("adam", {}, 1000)
    srv.rule.bind(srv.task)
    srv.steps = 0
    return srv


def train_step(srv) -> None:
    """One step of the training loop: the task pumps the stream and draws its batch, the rule updates."""
    srv.task.before_step(srv.steps)
    srv.rule.step(srv.steps, srv.task)
    srv.steps += 1


def stream(srv, client: int, sim: int, attempt: int, steps) -> None:
    for k in steps:
        srv.p.link.deliver(client, Kind.DATA, sim=sim, attempt=attempt, step=k, a=10, payload=srv.frames[sim][k])


def step(srv) -> None:
    """One pass of the server loop without the collective decision."""
    srv._receive()
    srv._ingest()
    srv._assign()


def test_full_buffer_withholds_credits_and_failed_runs_leave_nothing_behind(server):
    link, buf, sched = server.p.link, server.p.buffer, server.p.scheduler
    link.deliver(1, Kind.REQUEST)
    link.deliver(2, Kind.REQUEST)
    step(server)
    tasks = [(c, s, a) for c, k, s, a, _ in link.sent if k == Kind.TASK]
    assert tasks == [(1, 0, 0), (2, 1, 0)]

    # client 1 streams five frames into a buffer of three: two wait, and only stored frames earn credits
    stream(server, 1, 0, 0, range(5))
    step(server)
    assert buf.size == 3 and len(server.staged) == 2 and link.credits(1) == 3
    step(server)
    assert link.credits(1) == 3  # nothing new stored: no new credits (back-pressure)

    # training takes two frames out; the waiting ones go in and earn their credits
    train_step(server)
    step(server)
    assert buf.size == 3 and not server.staged and link.credits(1) == 5

    # sim 1 on client 2 streams two frames, then fails: its frames leave the buffer, it is queued again
    stream(server, 2, 1, 0, range(2))
    train_step(server)
    step(server)
    link.deliver(2, Kind.FAIL, sim=1, attempt=0, payload=b"RuntimeError: boom")
    step(server)
    assert 1 not in buf.sim[buf.used] and sched.state[1] == WAITING and sched.queue[0] == 1  # first in line again
    assert server.p.monitor.failures[0]["removed"] == 2 and server.p.monitor.failures[0]["requeued"]
    # a late frame of the abandoned run is dropped (but still earns its credit)
    before = buf.size
    stream(server, 2, 1, 0, [2])
    step(server)
    assert buf.size == before and link.credits(2) == 3

    # an END that reports too few frames is a failure, not a finished simulation
    link.deliver(1, Kind.END, sim=0, attempt=0, a=5, b=1000)
    step(server)
    assert sched.state[0] == WAITING and "reported 5 frames, expected 11" in server.p.monitor.failures[-1]["reason"]


def test_a_finished_simulation_and_a_client_that_leaves(server):
    link, sched = server.p.link, server.p.scheduler
    link.deliver(1, Kind.REQUEST)
    step(server)
    for k in range(11):  # the whole trajectory, trained on as it comes
        stream(server, 1, 0, 0, [k])
        step(server)
        if server.p.buffer.ready(2):
            train_step(server)
    link.deliver(1, Kind.END, sim=0, attempt=0, a=11, b=2000)
    link.deliver(1, Kind.REQUEST)
    step(server)
    assert sched.state[0] == FINISHED and server.p.monitor.received == 11
    assert server.p.monitor.clients[1]["frames"] == 11
    # client 1 runs sim 1 and leaves half way: sim 1 waits again, not counted as a failure, its frames go
    stream(server, 1, 1, 0, range(2))
    link.deliver(1, Kind.BYE, a=0, b=10**6)
    step(server)
    assert sched.state[1] == WAITING and sched.failures[1] == 0 and 1 not in server.p.buffer.sim[server.p.buffer.used]
    assert server.live == {2}
