"""Black-box blocks: a physical system, a simulator step or any NumPy function inside a block model.

A :class:`BlackBox` computes its output without autograd (NumPy, a simulator, a measurement): the forward
pass works like any block's, but it is *declared non-differentiable*: a backward pass that reaches it raises
:class:`NotDifferentiable` instead of silently giving earlier parameters no gradient. Only rules that never
differentiate through it can train a model that contains one (:mod:`pdesolve.optim.model_free`); a rule may
call :meth:`BlackBox.evaluate` (forward only) as often as it likes, as an experiment would query the system.

:class:`Chain` is a block model made of given blocks (digital blocks around black boxes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .blocks import Block, BlockModel, Carry, compose


class NotDifferentiable(RuntimeError):
    """A backward pass reached a black box (train the model with a rule that does not differentiate through it)."""


class _Opaque(torch.autograd.Function):
    """The black box's output in the graph: forward evaluates it, backward refuses."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, box: BlackBox) -> Tensor:  # type: ignore[override]
        ctx.box_name = box.label
        return box.evaluate(h)

    @staticmethod
    def backward(ctx: Any, *grad: Tensor) -> Any:  # type: ignore[override]
        raise NotDifferentiable(
            f"black box {ctx.box_name!r} is not differentiable: autograd cannot pass through it; "
            "train this model with train.optimizer.name: model_free"
        )


class BlackBox(Block):
    """A block whose map ``h -> fn(h)`` is evaluated without autograd (``fn``: NumPy array in, array out).

    ``fn`` receives the batch ``[n, ...]`` as a float64 array and must map each sample on its own (as a
    simulator steps each field of a batch). The output has ``h``'s dtype and device. No parameters.
    """

    differentiable: ClassVar[bool] = False

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], label: str = "black box"):
        super().__init__()
        self.fn, self.label = fn, label

    def evaluate(self, h: Tensor) -> Tensor:
        """The black box's output for ``h`` (forward only, no graph)."""
        with torch.no_grad():
            out = np.asarray(self.fn(h.detach().to("cpu", torch.float64).numpy()))
        return torch.tensor(out, dtype=h.dtype, device=h.device)

    def forward(self, carry: Carry) -> Carry:
        return carry.with_h(_Opaque.apply(carry.h, self))

    def extra_repr(self) -> str:
        return repr(self.label)


class Chain(nn.Module, BlockModel):
    """A block model of the given blocks in order: ``forward(x) == compose(blocks, x)``."""

    def __init__(self, *blocks: Block):
        super().__init__()
        self.members = nn.ModuleList(blocks)

    def blocks(self) -> Sequence[Block]:
        return list(self.members)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        return compose(self.blocks(), x)
