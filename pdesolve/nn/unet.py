"""One U-shaped wave: a multi-level U-Net that advances a latent state by a residual update.

Levels run from the full resolution (level 0) to the coarsest (level L-1), each coarser by a factor 2
(average pooling). The encoder applies a :class:`ConvBlock` per level; the decoder upsamples (with wrap
on periodic axes), concatenates the encoder skip of that level and applies another block. The wave
returns ``x + update`` so that a SineNet is the plain composition of its waves.

Entangled (classic U-Net): encoder level l reads the pooled output of encoder level l-1.
Disentangled (SineNet): encoder level l reads the wave input pooled l times, so the downsampling branch
is pure pooling shared by all levels and the processing at each scale is parallel rather than serial.

A plain U-Net baseline is a SineNet with one entangled wave (see ``SineNetOptions.unet``).

As a :class:`~pdesolve.nn.blocks.BlockModel` a wave is one block per encoder level, one per decoder level and
a closing block for its residual; the carry keeps the wave input (for the residual), the skips (popped by
the decoder level that joins them) and, in the disentangled wave, the pooled input the next level reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pdesolve.nn.blocks import Block, BlockModel, Carry
from pdesolve.nn.conv_blocks import ConvBlock
from pdesolve.nn.padding import BoundaryUpsample

_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def pool2(x: torch.Tensor) -> torch.Tensor:
    """Average over 2 x ... x 2 cells: [batch, channel, *space] -> [batch, channel, *space / 2]."""
    return _POOL[x.dim() - 2](x, 2)


class UNetWave(nn.Module, BlockModel):
    """One wave: [batch, width, *space] -> [batch, width, *space] (input plus a residual update).

    ``channels[l]`` is the channel count at level l (``channels[0]`` is the latent width); space sizes
    must be divisible by ``2 ** (len(channels) - 1)``.
    """

    def __init__(
        self,
        channels: Sequence[int],
        periodic: Sequence[bool],
        *,
        disentangled: bool = False,
        interpolation: str = "linear",
        norm_groups: int = 1,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise ValueError(f"expected at least one level with positive channel counts, got {channels}")
        self.channels = channels
        self.disentangled = disentangled
        width = channels[0]
        enc_in = [width] + [width if disentangled else c for c in channels[:-1]]
        self.encoder = nn.ModuleList(
            ConvBlock(i, o, periodic, norm_groups) for i, o in zip(enc_in, channels, strict=True)
        )
        # decoder level l (coarse to fine): upsampled level l+1 concatenated with the skip of level l
        self.decoder = nn.ModuleList(
            ConvBlock(channels[l + 1] + channels[l], channels[l], periodic, norm_groups) for l in range(len(channels) - 1)
        )
        self.up = BoundaryUpsample(periodic, interpolation)

    @property
    def levels(self) -> int:
        return len(self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []  # encoder outputs, level 0 (finest) to L-1 (coarsest)
        h = x
        down = x  # the wave input pooled l times (disentangled branch)
        for level, block in enumerate(self.encoder):
            if level > 0 and self.disentangled:
                down = pool2(down)
                h = down
            elif level > 0:
                h = pool2(skips[-1])
            skips.append(block(h))  # [batch, channels[level], *space / 2**level]
        h = skips[-1]
        for level in reversed(range(self.levels - 1)):
            skip = skips[level]
            h = self.up(h, skip.shape[2:])  # [batch, channels[level+1], *skip space]
            h = self.decoder[level](torch.cat([h, skip], dim=1))  # [batch, channels[level], ...]
        return x + h

    def blocks(self) -> Sequence[Block]:
        last = self.levels - 1
        enc = [_EncoderLevel(b, level, level == last, self.disentangled) for level, b in enumerate(self.encoder)]
        dec = [_DecoderLevel(self.decoder[level], self.up) for level in reversed(range(last))]
        return [*enc, *dec, _WaveEnd()]


class _EncoderLevel(Block):
    """Encoder level ``level``: keeps the previous level's output as a skip and applies the level's block to
    the pooled previous output (entangled) or the wave input pooled ``level`` times (disentangled)."""

    def __init__(self, block: ConvBlock, level: int, last: bool, disentangled: bool):
        super().__init__()
        self.block, self.level, self.last, self.disentangled = block, level, last, disentangled

    def forward(self, carry: Carry) -> Carry:
        if self.level == 0:
            x = carry.h
            kept = carry.push(carry.h, x)  # the wave input, for the closing residual
            h = self.block(x)
            down = x
        elif self.disentangled:
            (down,), kept = carry.pop()
            down = pool2(down)
            kept = kept.push(kept.h, carry.h)  # the previous level's output: a skip
            h = self.block(down)
        else:
            kept = carry.push(carry.h, carry.h)
            h = self.block(pool2(carry.h))
        if self.disentangled and not self.last:
            return kept.push(h, down)
        return kept.with_h(h)


class _DecoderLevel(Block):
    """Decoder level: upsample, join the skip of its level (popped), apply the level's block."""

    def __init__(self, block: ConvBlock, up: BoundaryUpsample):
        super().__init__()
        self.block, self.up = block, up

    def forward(self, carry: Carry) -> Carry:
        (skip,), rest = carry.pop()
        h = self.up(carry.h, skip.shape[2:])
        return rest.with_h(self.block(torch.cat([h, skip], dim=1)))


class _WaveEnd(Block):
    """The wave's residual: its input (popped) plus the update."""

    def forward(self, carry: Carry) -> Carry:
        (x,), rest = carry.pop()
        return rest.with_h(x + carry.h)
