"""NeuralStagger's network: coarse networks on the interleaved sub-grids of a fine grid, advancing s_T fine steps.

(Huang et al., "NeuralStagger: Accelerating Physics-constrained Neural PDE Solver with Spatial-temporal
Decomposition", ICML 2023.) The fine grid splits into ``P = prod(s_d)`` strided pieces (piece ``k`` with
offsets ``(i, j)`` is ``u[..., i::s_h, j::s_w]``, :meth:`pdesolve.grid.Grid.stagger`'s sub-grids) and the
time axis into ``s_T`` interleaved sequences: one call reads the last ``s_T`` fine frames and returns the
next ``s_T``, each piece's coarse network predicting its own piece of them. The pieces run at once, as a batch
dimension (``shared_weights``: one network) or as ``P`` networks evaluated together by ``torch.func.vmap``.
A piece's network reads its own piece (``inputs: own``) or every piece as channels (``inputs: all``); on
periodic axes the pieces it reads are taken relative to its own position (the field shifted so that its
piece comes first), so that one shared network serves every piece.

Shapes: frames ``[batch, s_T, channel, *space]`` in and out, physical units (the buffer ``scale`` per channel
normalizes the network's input and scales its residual update).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from .sinenet import SineNet, SineNetOptions

Inputs = Literal["own", "all"]
Features = Callable[[Tensor], Tensor]


def piece_offsets(factors: Sequence[int]) -> list[tuple[int, ...]]:
    """The offsets of every piece, in the order of :meth:`pdesolve.grid.Grid.stagger` (the last axis fastest)."""
    return list(itertools.product(*(range(f) for f in factors)))


def gather_index(shape: Sequence[int], factors: Sequence[int], periodic: Sequence[bool], inputs: Inputs) -> Tensor:
    """Flat fine-grid indices ``[P, Q, *coarse]``: what piece ``k``'s network reads as its ``Q`` input pieces.

    ``own``: Q = 1, piece k itself. ``all``: Q = P; on fully periodic grids the pieces relative to piece k
    (input q of piece k is the piece at offset ``offset(k) + offset(q)``, wrapped onto the next coarse cell),
    otherwise every piece in the fixed order.
    """
    offsets = piece_offsets(factors)
    coarse = [n // f for n, f in zip(shape, factors, strict=True)]
    grids = torch.meshgrid(*(torch.arange(c) for c in coarse), indexing="ij")
    relative = all(periodic)
    rows = []
    for own in offsets:
        cols = []
        for src in [own] if inputs == "own" else offsets:
            if inputs == "own":
                shift = own
            elif relative:
                shift = tuple(o + s for o, s in zip(own, src, strict=True))
            else:
                shift = src
            flat = torch.zeros(coarse, dtype=torch.long)
            for d, (n, f, g, sh) in enumerate(zip(shape, factors, grids, shift, strict=True)):
                pos = (g * f + sh) % n  # wraps onto the next coarse cell (periodic axes only get there)
                flat = flat * n + pos if d else pos
            cols.append(flat)
        rows.append(torch.stack(cols))
    return torch.stack(rows)


def own_column(pieces: int, periodic: Sequence[bool], inputs: Inputs) -> Tensor:
    """``[P]``: which of its ``Q`` input pieces is piece ``k``'s own (0, except for ``all`` in the fixed order: k)."""
    fixed = inputs == "all" and not all(periodic)
    return torch.arange(pieces) if fixed else torch.zeros(pieces, dtype=torch.long)


def _zero_last(net: SineNet) -> SineNet:
    """The network with its output convolution at zero (its update starts at zero)."""
    for t in net.project.conv.parameters():
        nn.init.zeros_(t)
    return net


class StaggeredStepper(nn.Module):
    """``[batch, s_T, C, *space] -> [batch, s_T, C, *space]``: the next ``s_T`` fine frames from the last ``s_T``.

    ``options``: the coarse network (a SineNet on a piece's grid: ``history = out_frames = s_T``, ``fields = C``).
    Convolutional, so any resolution whose sizes are multiples of the factors (and of the network's pooling)
    works; the piece indices are made for each resolution met. Buffers: ``scale`` (per channel) and ``frame_dt``.

    The network predicts each output frame's change as a rate: frame ``j`` (1..s_T) of a call is the last input
    frame plus ``j frame_dt scale net_j``, and the network's last layer starts at zero, so an untrained stepper
    is persistence and its updates have the size of a time step's change from the start.
    """

    def __init__(self, factors: Sequence[int], s_t: int, channels: int, periodic: Sequence[bool], options: SineNetOptions,
                 inputs: Inputs = "own", shared_weights: bool = True, features: Features | None = None, extra: int = 0):
        """``features(frames) -> [B, s_T, extra, *space]``: fields derived from the frames on the fine grid (an
        equation's auxiliary fields, e.g. the stream function) that every piece's network reads beside its frames."""
        super().__init__()
        self.factors, self.s_t, self.channels = tuple(factors), s_t, channels
        self.features, self.extra = features, extra
        self.periodic, self.inputs, self.shared = tuple(periodic), inputs, shared_weights
        self.pieces = math.prod(factors)
        self._indices: dict[tuple[tuple[int, ...], str], tuple[Tensor, Tensor]] = {}
        self.register_buffer("own_q", own_column(self.pieces, periodic, inputs), persistent=False)
        self.register_buffer("piece_ids", torch.arange(self.pieces), persistent=False)
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("feature_scale", torch.ones(max(extra, 1)))
        self.register_buffer("frame_dt", torch.ones((), dtype=torch.float64))
        self.register_buffer("lead", torch.arange(1, s_t + 1, dtype=torch.float64), persistent=False)  # fine steps ahead
        q = 1 if inputs == "own" else self.pieces
        in_channels = q * s_t * (channels + extra)
        if shared_weights:
            self.net = _zero_last(SineNet(options, in_channels=in_channels))
            self.bank = None
        else:
            nets = [_zero_last(SineNet(options, in_channels=in_channels)) for _ in range(self.pieces)]
            params, buffers = stack_module_state(nets)
            self.bank = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(v) for k, v in params.items()})
            for k, v in buffers.items():
                self.register_buffer("bank_buffer__" + k.replace(".", "__"), v)
            self._template = [copy.deepcopy(nets[0]).to("meta")]  # a list: not a submodule (no parameters of its own)
            self.net = None

    def indices(self, shape: tuple[int, ...], device: torch.device) -> tuple[Tensor, Tensor]:
        """For a fine grid of ``shape``: the gather index ``[P, Q, *coarse]`` of the inputs and the inverse
        permutation that puts the pieces' own points back in place."""
        key = (shape, str(device))
        if key not in self._indices:
            bad = [n for n, f in zip(shape, self.factors, strict=True) if n % f]
            if bad:
                raise ValueError(f"space sizes {shape} must be multiples of the factors {self.factors}")
            index = gather_index(shape, self.factors, self.periodic, self.inputs).to(device)
            own = gather_index(shape, self.factors, self.periodic, "own")[:, 0].reshape(-1)  # a permutation of the points
            self._indices[key] = (index, torch.argsort(own).to(device))
        return self._indices[key]

    def set_scale(self, frames: Tensor) -> None:
        """Fit the per-channel sizes to typical frames ``[B, s_T, C, *space]``: the network reads ``u / scale`` (and the
        features by their own scale) and updates by ``net * scale``."""
        def std(x: Tensor) -> Tensor:
            return x.transpose(0, 2).flatten(1).std(dim=1).clamp_min(1e-12)

        self.scale.copy_(std(frames).to(self.scale))
        if self.features is not None:
            self.feature_scale[: self.extra].copy_(std(self.features(frames)).to(self.feature_scale))

    # ------------------------------------------------------------------ pieces
    def split(self, frames: Tensor) -> Tensor:
        """``[B, s_T, C, *space] -> [B, P, Q, s_T, C, *coarse]``: what every piece's network reads (C: any channels)."""
        b, shape = frames.shape[0], tuple(frames.shape[3:])
        index, _ = self.indices(shape, frames.device)
        flat = frames.reshape(b, self.s_t, frames.shape[2], -1)[..., index]  # [B, s_T, C, P, Q, *coarse]
        return flat.permute(0, 3, 4, 1, 2, *range(5, 5 + len(shape)))

    def join(self, pieces: Tensor, shape: tuple[int, ...]) -> Tensor:
        """``[B, P, s_T, C, *coarse] -> [B, s_T, C, *space]`` (the inverse of taking every piece's own points)."""
        b = pieces.shape[0]
        _, inverse = self.indices(shape, pieces.device)
        flat = pieces.reshape(b, self.pieces, self.s_t, self.channels, -1).permute(0, 2, 3, 1, 4).reshape(b, self.s_t, self.channels, -1)
        return flat[..., inverse].reshape(b, self.s_t, self.channels, *shape)

    def _networks(self, x: Tensor) -> Tensor:
        """Every piece's network on its input ``x [B, P, channels_in, *coarse]`` -> ``[B, P, s_T * C, *coarse]``."""
        b, p = x.shape[:2]
        if self.net is not None:
            return self.net(x.flatten(0, 1)).reshape(b, p, -1, *x.shape[3:])
        assert self.bank is not None
        params = {k.replace("__", "."): v for k, v in self.bank.items()}
        buffers = {k[len("bank_buffer__"):].replace("__", "."): v for k, v in self.named_buffers() if k.startswith("bank_buffer__")}
        template = self._template[0]

        def one(pr: dict, bu: dict, xi: Tensor) -> Tensor:
            return functional_call(template, (pr, bu), (xi,))

        return vmap(one)(params, buffers, x.transpose(0, 1)).transpose(0, 1)

    def forward(self, frames: Tensor) -> Tensor:
        shape = tuple(frames.shape[3:])
        scale = self.scale.view((-1,) + (1,) * len(shape))  # [C, 1, ...] against [..., C, *coarse]
        x = self.split(frames) / scale  # [B, P, Q, s_T, C, *coarse]
        coarse = x.shape[5:]
        if self.features is None:
            inputs = x
        else:
            fscale = self.feature_scale[: self.extra].view((-1,) + (1,) * len(shape))
            inputs = torch.cat([x, self.split(self.features(frames)) / fscale], dim=4)
        update = self._networks(inputs.flatten(2, 4))  # [B, P, s_T * C, *coarse]
        update = update.reshape(frames.shape[0], self.pieces, self.s_t, self.channels, *coarse) * self._steps(len(shape))
        own_last = x[:, self.piece_ids, self.own_q, -1:]  # [B, P, 1, C, *coarse]: each piece's own last frame
        return self.join((own_last + update) * scale, shape)

    def _steps(self, ndim: int) -> Tensor:
        """``j frame_dt`` for output frame j, shaped ``[s_T, 1, 1, ...]`` against ``[..., s_T, C, *space]``."""
        return (self.lead * self.frame_dt).to(self.scale.dtype).view((-1, 1) + (1,) * ndim)

    def piece_step(self, piece: int, frames: Tensor) -> Tensor:
        """Piece ``piece``'s network alone, as a coarse simulator: ``[B, s_T, C, *coarse] -> [B, s_T, C, *coarse]``
        (``inputs: own`` only: its network reads nothing but its own piece)."""
        if self.inputs != "own" or self.features is not None:
            raise ValueError("a piece's network reads every piece (inputs: all) or fields derived from the whole grid "
                             "(features); it cannot run alone")
        coarse = tuple(frames.shape[3:])
        scale = self.scale.view((-1,) + (1,) * len(coarse))
        x = frames / scale
        if self.net is not None:
            update = self.net(x.flatten(1, 2))
        else:
            assert self.bank is not None
            params = {k.replace("__", "."): v[piece] for k, v in self.bank.items()}
            buffers = {k[len("bank_buffer__"):].replace("__", "."): v[piece]
                       for k, v in self.named_buffers() if k.startswith("bank_buffer__")}
            update = functional_call(self._template[0], (params, buffers), (x.flatten(1, 2),))
        update = update.reshape(frames.shape[0], self.s_t, self.channels, *coarse) * self._steps(len(coarse))
        return (x[:, -1:] + update) * scale
