"""Input features of coordinate networks: scaling to [-1, 1], periodic embeddings and random Fourier features.

A periodic axis enters as ``cos(k theta), sin(k theta)`` for ``k = 1..K`` with
``theta = 2 pi (x - lo) / L``: the network is then exactly periodic in that axis, so the periodic
boundary condition needs no loss term.

Random Fourier features (Tancik et al., "Fourier features let networks learn high frequency functions in low
dimensional domains", NeurIPS 2020; for PINNs Wang, Wang, Perdikaris, "On the eigenvector bias of Fourier
feature networks", CMAME 2021) add ``cos(2 pi B z), sin(2 pi B z)`` of the scaled non-periodic coordinates ``z``
with ``B ~ N(0, sigma^2)``: a network then fits high frequencies that a plain MLP learns only very slowly
(spectral bias). ``sigma`` sets the frequencies; ``B`` is drawn from a seed, so a resumed run rebuilds it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..problem import Domain
from .jet import Jet


class CoordinateFeatures:
    """Coordinates ``(t, x, ...)`` -> network features; works on tensors and on jets."""

    def __init__(self, domain: Domain, periodic_modes: int = 1):
        self.names = domain.names
        self.bounds = domain.bounds
        self.periodic = {a.name for a in domain.space if a.periodic}
        self.modes = int(periodic_modes)

    @property
    def size(self) -> int:
        return sum(2 * self.modes if n in self.periodic else 1 for n in self.names)

    def _columns(self, cols: list[Any], sin: Any, cos: Any) -> list[Any]:
        out: list[Any] = []
        for name, c in zip(self.names, cols):
            lo, hi = self.bounds[name]
            if name in self.periodic:
                theta = (c - lo) * (2 * math.pi / (hi - lo))
                for k in range(1, self.modes + 1):
                    out += [cos(theta * k), sin(theta * k)]
            else:
                out.append((c - lo) * (2.0 / (hi - lo)) - 1.0)
        return out

    def __call__(self, coords: Tensor) -> Tensor:
        """``[N, d] -> [N, size]``."""
        return torch.stack(self._columns(list(coords.unbind(-1)), torch.sin, torch.cos), dim=-1)

    def jet(self, cols: list[Jet]) -> Jet:
        return Jet.stack(self._columns(cols, lambda j: j.sin(), lambda j: j.cos()))


class FourierFeatures:
    """:class:`CoordinateFeatures` followed by ``count`` random Fourier features of the non-periodic coordinates."""

    def __init__(self, base: CoordinateFeatures, count: int, sigma: float, seed: int = 0):
        self.base = base
        self.columns = [i for i, n in enumerate(base.names) if n not in base.periodic]
        if not self.columns:
            raise ValueError("random Fourier features need a non-periodic coordinate (time or a bounded axis); every axis is periodic")
        generator = torch.Generator().manual_seed(seed)
        self.frequencies = 2 * math.pi * sigma * torch.randn(count, len(self.columns), generator=generator, dtype=torch.float64)
        lo = torch.tensor([base.bounds[base.names[i]][0] for i in self.columns], dtype=torch.float64)
        hi = torch.tensor([base.bounds[base.names[i]][1] for i in self.columns], dtype=torch.float64)
        self.scale, self.shift = 2.0 / (hi - lo), -2.0 * lo / (hi - lo) - 1.0  # z = scale x + shift, in [-1, 1]

    @property
    def size(self) -> int:
        return self.base.size + 2 * self.frequencies.shape[0]

    def _projection(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(B diag(scale), B shift)``: the map from the raw columns to ``2 pi B z``, in ``like``'s dtype and device."""
        w = self.frequencies * self.scale
        return w.to(like), (self.frequencies @ self.shift).to(like)

    def __call__(self, coords: Tensor) -> Tensor:
        w, b = self._projection(coords)
        p = coords[:, self.columns] @ w.T + b
        return torch.cat([self.base(coords), torch.cos(p), torch.sin(p)], dim=-1)

    def jet(self, cols: list[Jet]) -> Jet:
        w, b = self._projection(cols[0].v)
        p = Jet.stack([cols[i] for i in self.columns]).linear(w, b)
        return Jet.cat([self.base.jet(cols), p.cos(), p.sin()])
