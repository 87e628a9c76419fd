"""Data-parallel training across server ranks: a torch.distributed group and gradient averaging.

The group is gloo on CPU (the CPU build of torch has no MPI backend) and NCCL on GPUs. Its rendezvous is
a TCP store that the first server opens on a free port, announced to the other servers over MPI: on one
node at 127.0.0.1, across nodes at the first server's host name. Gradients are averaged with one
all-reduce of the flattened gradients once a backward pass has produced all of them
(:class:`pdesolve.distributed.GradientAverager`; torch's DistributedDataParallel would do the same but
costs seconds of imports on every rank).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch

from pdesolve.distributed import GradientAverager

from .roles import Roles

__all__ = ["GradientAverager", "init_data_parallel"]


def init_data_parallel(roles: Roles, device: torch.device, timeout_s: float = 300.0) -> Any:
    """Join the servers in one torch.distributed group (None with a single server)."""
    if roles.servers == 1:
        return None
    import torch.distributed as dist
    from mpi4py import MPI

    comm = roles.server_comm
    hosts = comm.allgather(MPI.Get_processor_name())
    host = "127.0.0.1" if len(set(hosts)) == 1 else hosts[0]
    first = comm.Get_rank() == 0
    store = dist.TCPStore(host, 0, roles.servers, True, timeout=timedelta(seconds=timeout_s), wait_for_workers=False) if first else None
    port = comm.bcast(store.port if store is not None else None, root=0)
    if store is None:
        store = dist.TCPStore(host, port, roles.servers, False, timeout=timedelta(seconds=timeout_s))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=comm.Get_rank(), world_size=roles.servers)
    return dist.group.WORLD
