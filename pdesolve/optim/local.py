"""Shared parts of the block-wise training rules: stages, gradient cuts, read-out heads, the model's tail.

A local rule (AugLocal, MAN, forward-only, target projection, synthetic gradients, ...) trains a
:class:`~pdesolve.nn.blocks.BlockModel` stage by stage. This module gives every such rule the same view of
the model:

- :func:`stages` groups the model's blocks into gradient-isolated *stages*: each stage holds one or more
  blocks with parameters; blocks without parameters (a normalization, a residual-and-units output) join a
  neighbour, so that no stage is empty.
- :func:`cut` detaches a :class:`~pdesolve.nn.blocks.Carry` at a stage boundary: the next stage's loss
  cannot reach earlier parameters.
- :class:`Tail` is the model's trailing parameter-free blocks (the SineNet stepper's residual update and
  physical units, the field MLP's de-normalization). A read-out head maps a stage's features to the tail's
  input and then runs the tail, so an auxiliary prediction is in the units of the targets and gets the
  same residual connection as the network's own output.
- :func:`readout` builds a shape-generic head: a linear map for ``[N, C]`` features, a 1x1 convolution
  plus resampling for ``[B, C, *space]`` features.
- :class:`Probe` runs the model once, stage by stage, and records each stage's output shape and how many
  kept tensors the tail needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..nn.blocks import Block, Carry
from .backprop import AdamOptions


class StagewiseOptions(AdamOptions):
    """Adam's options (learning rate, betas, weight decay, warm-up and schedule) plus the stage split, for every
    block-wise rule: so that ``--set train.optimizer.name=<rule>`` works on any problem file whose optimizer is Adam's."""

    stages: int | None = Field(None, gt=0, description="gradient-isolated stages (default: one per block with parameters)")
    seed: int = Field(0, description="seed of the rule's own networks' initialisation (and fixed random matrices): a private random state")


def has_parameters(block: nn.Module) -> bool:
    return any(True for _ in block.parameters())


class Stage(Block):
    """Consecutive blocks trained as one unit (gradients flow inside it, not out of it)."""

    def __init__(self, blocks: Sequence[Block]):
        super().__init__()
        self.members = nn.ModuleList(blocks)

    def forward(self, carry: Carry) -> Carry:
        for block in self.members:
            carry = block(carry)
        return carry


def stages(blocks: Sequence[Block], count: int | None = None, tail: int = 0) -> list[Stage]:
    """Group ``blocks[: len(blocks) - tail]`` into ``count`` stages (default: one per block with parameters).

    Parameter-free blocks join the next block with parameters (trailing ones join the last stage); with
    ``count`` the parametrized blocks are split into ``count`` contiguous groups of nearly equal size.
    """
    body = list(blocks[: len(blocks) - tail])
    units: list[list[Block]] = []
    pending: list[Block] = []
    for block in body:
        pending.append(block)
        if has_parameters(block):
            units.append(pending)
            pending = []
    if not units:
        raise ValueError("the model has no block with parameters")
    units[-1].extend(pending)
    n = len(units) if count is None else count
    if not 1 <= n <= len(units):
        raise ValueError(f"cannot split {len(units)} blocks with parameters into {n} stages")
    bounds = [round(i * len(units) / n) for i in range(n + 1)]
    return [Stage([b for unit in units[bounds[i] : bounds[i + 1]] for b in unit]) for i in range(n)]


def tail_length(blocks: Sequence[Block]) -> int:
    """How many trailing blocks have no parameters (the model's fixed output transform)."""
    n = 0
    for block in reversed(blocks):
        if has_parameters(block):
            break
        n += 1
    return n


def cut(carry: Carry) -> Carry:
    """The carry with its features and kept tensors detached: a gradient-isolating stage boundary."""
    return Carry(carry.h.detach(), tuple(k.detach() for k in carry.kept))


class Tail(nn.Module):
    """The model's trailing parameter-free blocks, applied to a head's output with the carry's oldest kept tensors."""

    def __init__(self, blocks: Sequence[Block], kept: int):
        super().__init__()
        self.members = nn.ModuleList(blocks)
        self.kept = kept  # the tail pops the ``kept`` oldest tensors of the stack

    def forward(self, h: Tensor, carry: Carry) -> Tensor:
        c = Carry(h, carry.kept[: self.kept])
        for block in self.members:
            c = block(c)
        return c.h


@dataclass(frozen=True)
class Probe:
    """Shapes seen on one pass: each stage's output features, the tail's input, and the tail's kept count."""

    stage_shapes: tuple[torch.Size, ...]
    tail_input: torch.Size
    tail_kept: int

    @classmethod
    def run(cls, stage_list: Sequence[Stage], tail_blocks: Sequence[Block], x: Tensor) -> Probe:
        shapes = []
        with torch.no_grad():
            carry = Carry(x)
            for stage in stage_list:
                carry = stage(carry)
                shapes.append(carry.h.shape)
        return cls(tuple(shapes), carry.h.shape, len(carry.kept) if tail_blocks else 0)


class Readout(nn.Module):
    """Features ``[N, C]`` -> ``[N, D]`` (linear), or ``[B, C, *s]`` -> ``[B, D, *t]`` (1x1 conv, then resampled)."""

    def __init__(self, features: torch.Size, out: torch.Size):
        super().__init__()
        if len(features) != len(out):
            raise ValueError(f"a read-out from features {tuple(features)} to {tuple(out)}: different ranks")
        self.size = tuple(out[2:])
        if len(features) == 2:
            self.map: nn.Module = nn.Linear(features[1], out[1])
        elif len(features) in (3, 4, 5):
            conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[len(features)]
            self.map = conv(features[1], out[1], kernel_size=1)
        else:
            raise ValueError(f"no read-out for features of shape {tuple(features)}")
        self.resample = len(features) > 2 and tuple(features[2:]) != self.size

    def forward(self, h: Tensor) -> Tensor:
        y = self.map(h)
        if self.resample:
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(self.size)]
            y = F.interpolate(y, size=self.size, mode=mode, align_corners=False)
        return y


def readout(features: torch.Size, out: torch.Size) -> Readout:
    """A head from a stage's features to the tail's input (see :class:`Readout`)."""
    return Readout(features, out)


def stage_parameters(stage_list: Sequence[Stage]) -> list[list[nn.Parameter]]:
    return [list(s.parameters()) for s in stage_list]
