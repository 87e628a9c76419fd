"""MAN: the momentum auxiliary network for supervised local learning.

Su, Cai, Zhu, He, Xu, Guan, Si, "Momentum Auxiliary Network for Supervised Local Learning", ECCV 2024.

The model's blocks are grouped into ``K`` gradient-isolated stages. Stage ``j < K - 1`` is trained on the
task's criterion of an auxiliary prediction whose network starts with an exponential moving average (EMA)
copy of the NEXT stage: after every update, ``ema <- momentum * ema + (1 - momentum) * theta_{j+1}``. The
EMA copy gets no gradient; it passes information about the next stage's current weights back to stage
``j``. Since the next stage's input statistics differ from what stage ``j`` produces, the paper adds a
learnable correction, its "learnable bias": a trainable, freshly initialised copy of the next stage whose
output is added to the EMA copy's (``bias: block``, the paper's); ``bias: scale`` is a cheaper per-channel
affine correction of the EMA output (a scale and shift, zero at the start), in the spirit of the follow-up
MAN++'s learnable scaling bias. The last stage is trained on the criterion of the model's own output.

Regression form: the paper's auxiliary classifier after the EMA block becomes a
:func:`~pdesolve.optim.local.readout` head to the input of the model's tail (its trailing parameter-free
blocks: de-normalization, the stepper's residual update) and the tail itself, scored by the task's own
criterion, so that the auxiliary prediction is in the targets' units. Where the next stage is the model's
last (its output layer), its EMA output already is the tail's input and no read-out is added. A U-Net's
skips compose: the EMA copy runs on exactly the carry the next stage receives.

The prediction is the model's own forward pass, ``task.model(x)``: the auxiliary networks only train.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from ..nn.blocks import Block, Carry
from .aux_heads import Adapt, Chain, Signature, StagewiseRule, fresh_copy, frozen_copy
from .local import StagewiseOptions


class MANOptions(StagewiseOptions):
    momentum: float = Field(0.995, ge=0, lt=1, description="EMA decay of the next stage's copy (the paper's 0.995)")
    bias: Literal["block", "scale"] = Field(
        "block", description="learnable correction: a trainable copy of the next stage, or a per-channel affine map",
    )


class _ChannelAffine(nn.Module):
    """``h * (1 + scale) + shift`` per channel (dimension 1), both zero at the start."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, h: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (h.dim() - 2)
        return h * (1 + self.scale.view(shape)) + self.shift.view(shape)


class MomentumHead(Block):
    """The EMA copy of the next stage plus its learnable correction: ``Carry -> Carry`` like the next stage."""

    def __init__(self, ema: nn.Module, bias: nn.Module, mode: str):
        super().__init__()
        self.ema, self.bias, self.mode = ema, bias, mode

    def forward(self, carry: Carry) -> Carry:
        out = self.ema(carry)
        if self.mode == "block":
            return out.with_h(out.h + self.bias(carry).h)
        return out.with_h(self.bias(out.h))


class MAN(StagewiseRule):
    """Stage-wise training; each stage's auxiliary network is an EMA copy of the next stage plus a learnable bias."""

    name = "man"
    options: MANOptions

    def _aux_network(self, j: int, sigs: list[Signature]) -> nn.Module:
        nxt = self.stage_list[j + 1]
        ema = frozen_copy(nxt, self.model)
        bias = fresh_copy(nxt, self.model) if self.options.bias == "block" else _ChannelAffine(sigs[j + 2][0][0])
        parts: list[nn.Module] = [MomentumHead(ema, bias, self.options.bias)]
        if j + 1 < len(self.stage_list) - 1:  # the next stage is not the output stage: read out to the tail's input
            parts.append(Adapt(sigs[j + 2], sigs[-1], force=True))
        return Chain(parts)

    def _after_update(self) -> None:
        m = self.options.momentum
        with torch.no_grad():
            for j, aux in enumerate(self.aux):
                head = aux.parts[0]
                nxt = self.stage_list[j + 1]
                for e, p in zip(head.ema.parameters(), nxt.parameters(), strict=True):
                    e.mul_(m).add_(p, alpha=1 - m)
                for e, b in zip(head.ema.buffers(), nxt.buffers(), strict=True):
                    e.copy_(b)
