"""Hypernetworks: PDE parameters -> the weights of a primary MLP, naive or magnitude invariant.

A hypernetwork maps a parameter vector (beta of convection, nu of heat) to every weight of a primary network,
so one training run covers a range of parameters. Ortiz, Guttag and Dalca ("Magnitude Invariant
Parametrizations Improve Hypernetwork Learning", ICLR 2024) show that the naive form, raw parameters in and
weights out, makes the primary weights' magnitude proportional to the input's, which destabilises training.
Their magnitude invariant parametrization (MIP) changes two things:

- the input encoding: each parameter, scaled to ``g`` in [0, 1], enters as ``[cos(pi g / 2), sin(pi g / 2)]``,
  a vector of norm one whatever the value (:func:`mip_encoding`);
- an additive (residual) output: the primary weights are ``theta0 + delta(g)``, ``theta0`` learned and
  independent of the parameters (initialised like a plain network, Glorot-normal weights, zero biases),
  ``delta`` the hypernetwork's output, initialised small (:data:`MIP_DELTA`) so that the primary network starts
  like a normally initialised one.

The naive baseline takes the raw parameter values and outputs the weights directly; its output head is scaled
per primary layer by that layer's Glorot standard deviation (a fan-in scaling: unit-magnitude hidden features
give weights of the plain network's scale), without which it does not train at all.

The primary network has one set of weights per parameter sample: :func:`batched_mlp` and
:func:`batched_mlp_jet` run it as a batched matmul over the samples, on tensors and on forward jets
(:class:`~pdesolve.nn.jet.Jet`, the stacked value / gradient / Hessian rows of each sample in one matmul).
Points are laid out sample-major: ``[S * n, ...]``, sample ``s`` owning rows ``s n .. (s + 1) n - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .jet import Jet

Encoding = Literal["mip", "naive"]
MIP_DELTA = 0.1  # the MIP head's initial scale relative to the naive head's: theta0 dominates at the start
Weights = list[tuple[Tensor, Tensor]]  # per layer: W [S, out, in], b [S, out]


def mip_encoding(unit: Tensor) -> Tensor:
    """``[S, P]`` parameters scaled to [0, 1] -> ``[S, 2P]`` ``(cos(pi g/2), sin(pi g/2))`` pairs (each pair of norm 1)."""
    angle = unit * (math.pi / 2)
    return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)


def naive_encoding(values: Tensor) -> Tensor:
    """The raw parameter values ``[S, P]``, unchanged."""
    return values


class HyperNetwork(nn.Module):
    """``[S, P]`` parameters -> the weights of an MLP with layer sizes ``sizes`` (one set per sample).

    ``encoding``: ``mip`` (input :func:`mip_encoding` of the unit coordinates, output ``theta0 + delta``) or ``naive``
    (raw values in, weights out). The body is ``depth`` LeakyReLU layers of ``width`` units.
    """

    def __init__(self, n_params: int, sizes: Sequence[int], width: int = 64, depth: int = 2, encoding: Encoding = "mip"):
        super().__init__()
        if encoding not in ("mip", "naive"):
            raise ValueError(f"unknown encoding {encoding!r}; expected 'mip' or 'naive'")
        self.encoding, self.sizes = encoding, tuple(int(s) for s in sizes)
        self.shapes = [(b, a) for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        in_dim = 2 * n_params if encoding == "mip" else n_params
        dims = [in_dim] + [width] * depth
        self.body = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        total = sum(o * i + o for o, i in self.shapes)
        self.head = nn.Linear(dims[-1], total)
        # the Glorot std of each primary layer, for its weights and its biases: the head's output scale per entry
        scale = torch.cat([torch.full((o * i + o,), math.sqrt(2.0 / (o + i))) for o, i in self.shapes])
        self.register_buffer("scale", scale)
        nn.init.normal_(self.head.weight, std=(MIP_DELTA if encoding == "mip" else 1.0) / math.sqrt(dims[-1]))
        nn.init.zeros_(self.head.bias)
        self.base = None
        if encoding == "mip":
            parts = []
            for o, i in self.shapes:
                w = torch.empty(o, i)
                nn.init.xavier_normal_(w)
                parts += [w.flatten(), torch.zeros(o)]
            self.base = nn.Parameter(torch.cat(parts))

    def encode(self, values: Tensor, unit: Tensor) -> Tensor:
        """The hypernetwork's input for parameters ``values`` whose unit-range coordinates are ``unit`` (both ``[S, P]``)."""
        return mip_encoding(unit) if self.encoding == "mip" else naive_encoding(values)

    def flat(self, values: Tensor, unit: Tensor) -> Tensor:
        """All primary weights of each sample, ``[S, total]``."""
        h = self.encode(values, unit)
        for layer in self.body:
            h = nn.functional.leaky_relu(layer(h), 0.01)
        delta = self.head(h) * self.scale
        return delta if self.base is None else self.base + delta

    def forward(self, values: Tensor, unit: Tensor) -> Weights:
        """Per layer ``(W [S, out, in], b [S, out])`` for parameters ``values`` ``[S, P]`` (``unit``: their [0, 1] coordinates)."""
        return split_weights(self.flat(values, unit), self.shapes)


def split_weights(flat: Tensor, shapes: Sequence[tuple[int, int]]) -> Weights:
    """``[S, total]`` -> per layer ``(W [S, out, in], b [S, out])`` (layer by layer: weights row-major, then biases)."""
    out, at, s = [], 0, flat.shape[0]
    for o, i in shapes:
        w = flat[:, at : at + o * i].reshape(s, o, i)
        at += o * i
        out.append((w, flat[:, at : at + o]))
        at += o
    return out


def batched_linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """``[S * n, in]`` -> ``[S * n, out]``: sample ``s``'s rows times ``W[s]^T`` plus ``b[s]``."""
    s = w.shape[0]
    y = torch.bmm(x.reshape(s, -1, x.shape[-1]), w.transpose(1, 2)) + b.unsqueeze(1)
    return y.reshape(-1, w.shape[1])


def batched_linear_jet(x: Jet, w: Tensor, b: Tensor) -> Jet:
    """:func:`batched_linear` on a jet: the value, gradient and Hessian rows of each sample in one batched matmul."""
    s, d = w.shape[0], x.g.shape[1]
    parts = [x.v.unsqueeze(1), x.g] + ([x.h] if x.h is not None else [])
    rows = torch.cat(parts, dim=1)  # [S * n, R, in]
    n_rows, r = rows.shape[0], rows.shape[1]
    out = torch.bmm(rows.reshape(s, -1, rows.shape[-1]), w.transpose(1, 2)).reshape(n_rows, r, -1)
    v = (out[:, 0].reshape(s, -1, w.shape[1]) + b.unsqueeze(1)).reshape(n_rows, -1)
    return Jet(v, out[:, 1 : 1 + d], out[:, 1 + d :] if x.h is not None else None, x.hess)


def batched_mlp(x: Tensor, weights: Weights, act: Callable[[Tensor], Tensor]) -> Tensor:
    """The primary MLP with per-sample weights on ``[S * n, in]`` (``act`` between layers, none after the last)."""
    for w, b in weights[:-1]:
        x = act(batched_linear(x, w, b))
    return batched_linear(x, *weights[-1])


def batched_mlp_jet(x: Jet, weights: Weights, jet_act: str) -> Jet:
    """:func:`batched_mlp` on a jet; ``jet_act`` names the activation's :class:`Jet` method (``tanh``, ``sin``, ...)."""
    for w, b in weights[:-1]:
        x = getattr(batched_linear_jet(x, w, b), jet_act)()
    return batched_linear_jet(x, *weights[-1])
