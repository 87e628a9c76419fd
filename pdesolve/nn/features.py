"""Input features of coordinate networks: scaling to [-1, 1] and periodic embeddings.

A periodic axis enters as ``cos(k theta), sin(k theta)`` for ``k = 1..K`` with
``theta = 2 pi (x - lo) / L``: the network is then exactly periodic in that axis, so the periodic
boundary condition needs no loss term.
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
