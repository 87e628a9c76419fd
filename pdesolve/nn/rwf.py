"""Random weight factorization (RWF) of dense layers.

Wang, Wang, Seidman, Perdikaris, "Random weight factorization improves the training of continuous neural
representations" (2022): every dense layer's weight is written ``W = diag(exp(s)) V`` with a trainable scale
per output unit, ``s ~ N(mu, sigma)`` at initialisation and ``V = W_0 / exp(s)`` so that the network starts as
the one it replaces. Gradient descent on ``(s, V)`` then takes steps of different sizes per unit, which the
paper shows speeds training of coordinate networks (PINNs among them); JAX-PI uses mu = 1, sigma = 0.1 (0.5 and
0.1 in some examples).

:func:`factorize` swaps every ``nn.Linear`` of a network for a :class:`FactorizedLinear` in place: the layer's
``weight`` is computed from ``(s, V)``, so code that reads ``layer.weight`` (the jets' dense layers) is unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FactorizedLinear(nn.Module):
    """``x W^T + b`` with ``W = exp(s)[:, None] * V``."""

    def __init__(self, layer: nn.Linear, mu: float, sigma: float, generator: torch.Generator):
        super().__init__()
        w = layer.weight.detach()
        s = mu + sigma * torch.randn(w.shape[0], generator=generator, dtype=torch.float64).to(w)
        self.log_scale = nn.Parameter(s)
        self.direction = nn.Parameter(w / torch.exp(s)[:, None])
        self.bias = layer.bias
        self.in_features, self.out_features = layer.in_features, layer.out_features

    @property
    def weight(self) -> Tensor:
        return torch.exp(self.log_scale)[:, None] * self.direction

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


def factorize(net: nn.Module, mu: float = 1.0, sigma: float = 0.1, seed: int = 0) -> nn.Module:
    """Replace every ``nn.Linear`` below ``net`` by its :class:`FactorizedLinear` (the same function at the start)."""
    generator = torch.Generator().manual_seed(seed)
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, FactorizedLinear(child, mu, sigma, generator))
    return net
