"""Who does what in one MPI job, and how a run is asked to stop.

The first ``servers`` ranks train (one data-parallel model); the others are clients that simulate.
Client ``r`` (world rank ``r >= servers``) streams to server ``(r - servers) % servers``; server ``i``
owns simulations ``i, i + servers, i + 2 servers, ...`` and hands them out to its own clients. The roles
are made in ``main`` and passed down; nothing here runs at import time.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pdesolve.errors import UserError

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")


@dataclass(frozen=True)
class Roles:
    """This rank's place in the job. ``comm`` is a private duplicate of the world communicator."""

    comm: Any
    rank: int
    size: int
    servers: int
    server_comm: Any | None  # the servers' own communicator (None on a client)
    node_index: int  # this rank's index among the ranks of its role on its node (picks a GPU)

    @property
    def is_server(self) -> bool:
        return self.rank < self.servers

    @property
    def server_of_client(self) -> int:
        """The server this client streams to."""
        return (self.rank - self.servers) % self.servers

    def clients_of(self, server: int) -> list[int]:
        return [r for r in range(self.servers, self.size) if (r - self.servers) % self.servers == server]

    def simulations_of(self, server: int, total: int) -> np.ndarray:
        return np.arange(server, total, self.servers)


def create_roles(world: Any, servers: int) -> Roles:
    """Split ``world`` (an mpi4py communicator) into ``servers`` servers and the clients."""
    from mpi4py import MPI

    size, rank = world.Get_size(), world.Get_rank()
    if size - servers < servers:
        raise UserError(
            f"online.servers = {servers} needs at least {2 * servers} ranks (one client per server), got {size}; "
            f"run mpiexec -n {2 * servers} or more, or lower online.servers"
        )
    comm = world.Dup()
    is_server = rank < servers
    group = comm.Split(0 if is_server else 1, rank)
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    node_role = node.Split(0 if is_server else 1, rank)
    node_index = node_role.Get_rank()
    node_role.Free()
    node.Free()
    if not is_server:
        group.Free()
    return Roles(comm, rank, size, servers, group if is_server else None, node_index)


class StopFlag:
    """Set by SIGTERM, SIGINT or SIGUSR1 (or by the code); the loops poll it and stop cleanly.

    Open MPI's ``mpiexec`` forwards SIGUSR1 to every rank and keeps the job alive, whereas on SIGTERM or
    Ctrl-C it kills the ranks a fraction of a second after forwarding the signal: send SIGUSR1 to
    ``mpiexec`` for a clean stop with a final checkpoint.
    """

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    @property
    def is_set(self) -> bool:
        return self.reason is not None

    def install(self) -> Callable[[], None]:
        """Route the stop signals here; returns a function that restores the previous handlers."""
        previous = {}
        for name in STOP_SIGNALS:
            sig = getattr(signal, name)
            previous[sig] = signal.signal(sig, lambda s, _f: self.set(signal.Signals(s).name))

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
