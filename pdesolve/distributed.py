"""torch.distributed for training: rows of a batch split over ranks, and gradients summed or averaged.

Two uses: the hard-constraint solvers spread their experts' solves over the ranks of a ``torchrun``
launch (:class:`Ranks`: each rank solves a contiguous block of the batch rows, :meth:`Ranks.gather`
puts the blocks together with a backward that returns each block its gradient from every rank), and the
online trainer averages data-parallel gradients between servers (:class:`GradientAverager`).

The group is gloo on CPU and NCCL on GPUs. Without a group, :meth:`Ranks.single` does everything locally,
so code written against :class:`Ranks` runs unchanged in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def join_torchrun_group(device: torch.device) -> Any:
    """The default process group, started from a ``torchrun`` launch's rendezvous when not started yet
    (on GPUs, each rank first takes the GPU of its ``LOCAL_RANK``).

    Raises ``RuntimeError`` saying how to launch when this process was not started by torchrun.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.group.WORLD
    missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
    if missing:
        raise RuntimeError(f"distributed training needs a torchrun launch (missing {', '.join(missing)}): run "
                           "`torchrun --standalone --nproc-per-node 2 -m pdesolve solve FILE ...`")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return dist.group.WORLD


@dataclass(frozen=True)
class Ranks:
    """This process's place in a group: ``rank`` of ``world``; ``group`` None means a single process."""

    rank: int = 0
    world: int = 1
    group: Any = None

    @classmethod
    def single(cls) -> Ranks:
        return cls()

    @classmethod
    def of(cls, group: Any) -> Ranks:
        import torch.distributed as dist

        return cls(dist.get_rank(group), dist.get_world_size(group), group)

    @property
    def primary(self) -> bool:
        """The rank that writes results (rank 0)."""
        return self.rank == 0

    def splits(self, n: int) -> bool:
        """Whether a batch of ``n`` rows is split: with fewer rows than ranks, every rank takes them all."""
        return self.world > 1 and n >= self.world

    def bounds(self, n: int) -> list[int]:
        """Start of every rank's block of ``n`` rows, plus ``n``: near-equal contiguous blocks."""
        return [r * n // self.world for r in range(self.world + 1)]

    def block(self, n: int) -> slice:
        """This rank's rows of a batch of ``n`` (all of them when the batch is not split)."""
        if not self.splits(n):
            return slice(0, n)
        b = self.bounds(n)
        return slice(b[self.rank], b[self.rank + 1])

    def share(self, n: int) -> float:
        """The factor of a sum over this rank's rows that makes the ranks' shares add up to one sum: 1 for a
        split batch, 1 / world for one every rank computes in full."""
        return 1.0 if self.world == 1 or self.splits(n) else 1.0 / self.world

    def gather(self, local: Tensor, n: int) -> Tensor:
        """All ``n`` rows from every rank's block ``local [rows, ...]`` (differentiable; the block itself
        when the batch is not split)."""
        if not self.splits(n):
            return local
        return _GatherRows.apply(local, n, self)

    def sum(self, x: Tensor) -> Tensor:
        """The sum over ranks (no gradient)."""
        return self._reduce(x, "SUM")

    def max(self, x: Tensor) -> Tensor:
        """The maximum over ranks (no gradient)."""
        return self._reduce(x, "MAX")

    def _reduce(self, x: Tensor, op: str) -> Tensor:
        if self.group is None:
            return x
        import torch.distributed as dist

        out = x.detach().clone()
        dist.all_reduce(out, op=getattr(dist.ReduceOp, op), group=self.group)
        return out

    def broadcast_tensor(self, x: Tensor) -> None:
        """Overwrite ``x`` with the primary rank's values, in place."""
        if self.group is not None:
            import torch.distributed as dist

            dist.broadcast(x, src=0, group=self.group)

    def broadcast(self, obj: Any) -> Any:
        """The primary rank's ``obj`` on every rank (picklable objects)."""
        if self.group is None:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]


class _GatherRows(torch.autograd.Function):
    """Forward: all-gather the row blocks (padded to the largest). Backward: the gradient of all rows summed
    over ranks (every rank's loss may use every row), then this rank's block."""

    @staticmethod
    def forward(ctx: Any, local: Tensor, n: int, ranks: Ranks) -> Tensor:  # type: ignore[override]
        import torch.distributed as dist

        bounds = ranks.bounds(n)
        size = max(b - a for a, b in zip(bounds, bounds[1:]))
        padded = local.new_zeros((size,) + tuple(local.shape[1:]))
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(ranks.world)]
        dist.all_gather(parts, padded.contiguous(), group=ranks.group)
        ctx.ranks, ctx.n = ranks, n
        return torch.cat([p[: b - a] for p, a, b in zip(parts, bounds, bounds[1:])])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        total = ctx.ranks.sum(grad.contiguous())
        return total[ctx.ranks.block(ctx.n)], None, None


class GradientAverager:
    """Combines the gradients of ``model`` over the group right after each backward pass.

    A hook on every parameter counts the gradients as autograd accumulates them; the last one triggers
    one all-reduce of all gradients flattened. ``reduce="mean"``: each rank's gradient is weighted by
    ``weight`` (its batch size, set before each step), so the result is the mean over every sample of the
    step, also when batches differ or a rank with an empty batch contributes nothing (data parallelism).
    ``reduce="sum"``: the plain sum, for losses that are already each rank's share of one total (the
    hard-constraint experts). The first rank's parameters and buffers are broadcast at the start.
    :meth:`check` raises if a backward pass left some parameter without a gradient (the ranks would fall
    out of step).
    """

    def __init__(self, model: nn.Module, group: Any, reduce: Literal["mean", "sum"] = "mean"):
        import torch.distributed as dist

        self.dist, self.group, self.reduce = dist, group, reduce
        self.world = dist.get_world_size(group)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.pending = 0
        self.weight = 1.0
        for p in self.params:
            p.register_post_accumulate_grad_hook(self._arrived)
        with torch.no_grad():  # start from the first rank's parameters
            for p in model.state_dict().values():
                dist.broadcast(p, src=0, group=group)

    def _arrived(self, _p: Tensor) -> None:
        self.pending += 1
        if self.pending < len(self.params):
            return
        self.pending = 0
        grads = [p.grad for p in self.params]
        weight = self.weight if self.reduce == "mean" else 1.0
        flat = torch.cat([g.reshape(-1) * weight for g in grads] + [grads[0].new_full((1,), weight)])  # type: ignore[union-attr]
        self.dist.all_reduce(flat, group=self.group)
        if self.reduce == "mean":
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
                "distributed training needs a network whose every parameter takes part in the loss"
            )

    def close(self) -> None:
        self.dist.destroy_process_group()
