"""SineNet (Zhang et al., ICLR 2024): a learned time stepper made of K U-shaped waves in sequence.

A single U-Net must move every feature by a whole time step between its encoder and decoder, so the
skip connections join features that no longer line up in space. SineNet splits the step across K waves,
each advancing the latent state a fraction of it with a residual update, which shrinks that misalignment.

    frames [batch, history * fields, *space]
      -> lift (3-conv)          [batch, width, *space]
      -> wave_1 ... wave_K      [batch, width, *space]       (each returns x + update)
      -> project (norm, 3-conv) [batch, out_frames * fields, *space]

Frames are stacked frame-major on channels, i.e. ``u.flatten(1, 2)`` of ``[batch, time, field, *space]``;
the output unflattens the same way. Padding and upsampling follow the boundary kind of each axis
(:mod:`pdesolve.nn.padding`), so on a fully periodic grid the network commutes with shifts by multiples
of ``2 ** (levels - 1)`` cells (the pooling stride). ``SineNetOptions.unet`` gives the U-Net baseline.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from pdesolve.nn.blocks import Block, BlockModel, Lambda
from pdesolve.nn.conv_blocks import check_groups
from pdesolve.nn.padding import INTERPOLATION, BoundaryConv
from pdesolve.nn.unet import UNetWave


@dataclass(frozen=True)
class SineNetOptions:
    """Architecture of a SineNet.

    Must set: ``fields`` (channels per frame) and ``periodic`` (one flag per space axis; its length sets
    the space dimension, 1 to 3). Usually set: ``history`` (input frames), ``waves`` (K), ``width``.
    Advanced: ``channel_mults`` (per level, level 0 first; its length is the number of levels),
    ``disentangled`` (encoder levels read the pooled wave input), ``interpolation`` (linear | cubic,
    cubic in 2D only), ``norm_groups`` (GroupNorm groups; must divide every channel count),
    ``out_frames`` (frames predicted per call).
    """

    fields: int
    periodic: tuple[bool, ...]
    history: int = 4
    out_frames: int = 1
    waves: int = 4
    width: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    disentangled: bool = True
    interpolation: str = "linear"
    norm_groups: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "periodic", tuple(bool(p) for p in self.periodic))
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        if not 1 <= len(self.periodic) <= 3:
            raise ValueError(f"periodic: expected one flag per space axis (1 to 3 axes), got {self.periodic}")
        for name in ("fields", "history", "out_frames", "waves", "width", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not self.channel_mults or any(not isinstance(m, int) or m < 1 for m in self.channel_mults):
            raise ValueError(f"channel_mults: expected positive integers, one per level, got {self.channel_mults}")
        modes = INTERPOLATION.get(self.interpolation)
        if modes is None:
            raise ValueError(f"interpolation: expected one of {sorted(INTERPOLATION)}, got {self.interpolation!r}")
        if len(self.periodic) not in modes:
            raise ValueError(f"interpolation {self.interpolation!r} works in {sorted(modes)}D, got {len(self.periodic)}D")
        for c in self.level_channels:
            check_groups(c, self.norm_groups)

    @property
    def ndim(self) -> int:
        return len(self.periodic)

    @property
    def levels(self) -> int:
        return len(self.channel_mults)

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.width * m for m in self.channel_mults)

    @property
    def in_channels(self) -> int:
        return self.history * self.fields

    @property
    def out_channels(self) -> int:
        return self.out_frames * self.fields

    @property
    def size_multiple(self) -> int:
        """Every space size must be a multiple of this (the total pooling factor)."""
        return 2 ** (self.levels - 1)

    @classmethod
    def unet(cls, **options: Any) -> SineNetOptions:
        """The U-Net baseline: one entangled wave, otherwise the same network."""
        return cls(**{**options, "waves": 1, "disentangled": False})

    @classmethod
    def for_parameter_budget(cls, target_params: int, *, tolerance: float = 0.05, **options: Any) -> SineNetOptions:
        """Options with the ``width`` whose parameter count is closest to ``target_params``.

        ``options`` are the other fields (not ``width``). Widths move in steps of ``norm_groups``. Raises
        if the closest count is off by more than ``tolerance`` (relative), e.g. a budget too small for K.
        """
        if "width" in options:
            raise ValueError("for_parameter_budget picks the width; got width as well")
        groups = options.get("norm_groups", 1)

        @functools.cache
        def count(w: int) -> int:
            return parameter_count(cls(width=w * groups, **options))

        hi = 1
        while count(hi) < target_params:
            hi *= 2
        lo = max(hi // 2, 1)
        while hi - lo > 1:  # count is increasing in width: bisect for the first width reaching the target
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if count(mid) < target_params else (lo, mid)
        best = min({lo, hi}, key=lambda w: abs(count(w) - target_params))
        got = count(best)
        if abs(got - target_params) > tolerance * target_params:
            raise ValueError(
                f"no width gives {target_params} parameters within {tolerance:.0%}: "
                f"closest is width={best * groups} with {got} parameters"
            )
        return cls(width=best * groups, **options)

    def describe(self) -> dict[str, Any]:
        """Plain values of every field (for config files and result folders)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Projection(nn.Module):
    """Latent state to output frames: GroupNorm, GELU, boundary-aware 3-conv."""

    def __init__(self, width: int, out_channels: int, periodic: Sequence[bool], norm_groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, width)
        self.act = nn.GELU()
        self.conv = BoundaryConv(width, out_channels, periodic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.norm(x)))


class SineNet(nn.Module, BlockModel):
    """[batch, history * fields, *space] -> [batch, out_frames * fields, *space].

    Its blocks: the lift, every wave's level blocks (:meth:`UNetWave.blocks`), the projection.
    """

    def __init__(self, options: SineNetOptions, in_channels: int | None = None, out_channels: int | None = None) -> None:
        """``in_channels`` / ``out_channels``: other counts than ``history x fields`` in and ``out_frames x fields`` out
        (a network whose inputs carry more than its own frames, e.g. NeuralStagger's neighbouring pieces)."""
        super().__init__()
        self.options = o = options
        self.in_channels = in_channels or o.in_channels
        self.out_channels = out_channels or o.out_channels
        self.lift = BoundaryConv(self.in_channels, o.width, o.periodic)
        self.waves = nn.ModuleList(
            UNetWave(
                o.level_channels, o.periodic, disentangled=o.disentangled, interpolation=o.interpolation,
                norm_groups=o.norm_groups,
            )
            for _ in range(o.waves)
        )
        self.project = Projection(o.width, self.out_channels, o.periodic, o.norm_groups)

    def blocks(self) -> Sequence[Block]:
        return [Lambda(self.lift), *(b for wave in self.waves for b in wave.blocks()), Lambda(self.project)]

    def check_input(self, x: torch.Tensor) -> None:
        o = self.options
        space = tuple(x.shape[2:])
        if x.dim() != 2 + o.ndim or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected [batch, {self.in_channels} (= history {o.history} x fields {o.fields}), {o.ndim} space axes], "
                f"got shape {tuple(x.shape)}"
            )
        if any(n % o.size_multiple for n in space):
            raise ValueError(f"space sizes must be multiples of {o.size_multiple} ({o.levels} levels), got {space}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.lift(x)  # [batch, width, *space]
        for wave in self.waves:
            h = wave(h)  # [batch, width, *space]
        return self.project(h)  # [batch, out_frames * fields, *space]


def parameter_count(options: SineNetOptions) -> int:
    """Trainable parameters of ``SineNet(options)``, counted without allocating them (meta device)."""
    with torch.device("meta"):
        model = SineNet(options)
    return sum(p.numel() for p in model.parameters())

