"""Data-parallel training across server ranks: a torch.distributed group and gradient averaging.

The group is gloo on CPU (the CPU build of torch has no MPI backend) and NCCL on GPUs. Its rendezvous is
a TCP store that the first server opens on a free port, announced to the other servers over MPI: on one
node at 127.0.0.1, across nodes at the first server's host name. Gradients are averaged with one
all-reduce of the flattened gradients once a backward pass has produced all of them (torch's
DistributedDataParallel would do the same but costs seconds of imports on every rank).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch
from torch import nn

from .roles import Roles


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


class GradientAverager:
    """Averages the gradients of ``model`` over the group right after each backward pass.

    A hook on every parameter counts the gradients as autograd accumulates them; the last one triggers
    one all-reduce of all gradients flattened. Each server's gradient is weighted by its batch size
    (``weight``, set before each step), so the result is the mean over every sample of the step, also
    when batches differ or a server with an empty buffer contributes nothing. :meth:`check` raises if a
    backward pass left some parameter without a gradient (the servers would fall out of step).
    """

    def __init__(self, model: nn.Module, group: Any):
        import torch.distributed as dist

        self.dist, self.group = dist, group
        self.world = dist.get_world_size(group)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.pending = 0
        self.weight = 1.0
        for p in self.params:
            p.register_post_accumulate_grad_hook(self._arrived)
        with torch.no_grad():  # start from the first server's parameters
            for p in model.state_dict().values():
                dist.broadcast(p, src=0, group=group)

    def _arrived(self, _p: torch.Tensor) -> None:
        self.pending += 1
        if self.pending < len(self.params):
            return
        self.pending = 0
        grads = [p.grad for p in self.params]
        flat = torch.cat([g.reshape(-1) * self.weight for g in grads] + [grads[0].new_full((1,), self.weight)])  # type: ignore[union-attr]
        self.dist.all_reduce(flat, group=self.group)
        flat /= flat[-1].clamp_min(1.0)
        offset = 0
        for g in grads:
            n = g.numel()  # type: ignore[union-attr]
            g.copy_(flat[offset : offset + n].view_as(g))  # type: ignore[union-attr]
            offset += n

    def check(self) -> None:
        if self.pending:
            raise RuntimeError(
                f"only {self.pending} of {len(self.params)} parameters received a gradient in the last step; "
                "data-parallel training needs a network whose every parameter takes part in the loss"
            )

    def close(self) -> None:
        self.dist.destroy_process_group()

