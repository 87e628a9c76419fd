"""The plain MLP's jet pass as one autograd Function: stacked rows, a hand-written backward.

The generic jet pass (:meth:`pdesolve.nn.mlp.MLP.forward_jet` on :class:`~pdesolve.nn.jet.Jet`) records every
elementwise product of the chain rule in the autograd graph: about forty tensors per layer for a second-order
jet, each walked back by its own small kernels, plus the zero-filled gradients of every row slice. A PINN step on
a few thousand points is bound by that dispatch and memory traffic, not by arithmetic (~0.1 GFLOP).

Here the whole network is one :class:`torch.autograd.Function`. The jet rows stay stacked ``[R, N, width]``
(row 0 the value, rows ``1 .. d`` the gradient, then one block of ``k`` rows per higher order along the ``hess``
axes, the :meth:`Jet.rows` order), so each layer is one matmul over all rows; the activation's derivatives come
from its value by closed identities (tanh: ``t' = 1 - t^2``, ``t'' = -2 t t'``, ...) and only up to the jet's
order; the forward keeps each layer's input rows, pre-activation rows and activation derivatives ``[N, width]``, and the backward is
written out (Faa di Bruno's formula differentiated by hand, Griewank and Walther, "Evaluating Derivatives",
ch. 13): per layer, three matmuls (weight gradient, bias gradient as a row sum, input rows) and a dozen
elementwise kernels over ``[rows, N, width]``.

The derivative of a chain-rule row with respect to the pre-activation value is the same row with every
derivative of the activation moved up by one (``d/dz (f1 x2 + f2 x1^2) = f2 x2 + f3 x1^2``), so the backward
reuses the forward's row formula on the shifted derivatives.

Under torch.compile, the same formulas run by whole row blocks (:func:`_chain_rows`, :func:`_chain_backward_rows`,
joined by ``torch.cat``): inductor turns writes into row slices of one buffer into masked loops that evaluate every
row's formula at every row, and the MLP's pass compiled that way took 4.85 ms against 3.83 by blocks (Burgers' rows,
3 x 20, 2540 points, measured side by side). Eagerly the slice writes are faster (5.2 against 6.5 ms: no temporaries).

Same numbers as the generic pass to round-off (tests/test_fused_mlp.py); used by the PINN automatically when its
network is a plain :class:`~pdesolve.nn.mlp.MLP` with an activation of :data:`DERIVATIVES`
(:func:`fusable`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from . import native_jets
from .jet import Jet
from .mlp import MLP


def _tanh(z: Tensor, out: Tensor | None = None) -> Tensor:
    """``tanh z = 2 sigmoid(2 z) - 1`` (into ``out``, if given): the same function to round-off, and on CPUs three to
    four times faster than ``torch.tanh`` (measured here: 50 against 160 us on 50k floats)."""
    return torch.sigmoid(z * 2, out=out).mul_(2).sub_(1)


def _tanh_derivatives(z: Tensor, t: Tensor, count: int, known: Sequence[Tensor] = ()) -> list[Tensor]:
    """tanh's derivatives 1 .. ``count`` (at most 5) from its value ``t``, extending ``known`` (the first few).

    With ``s = 1 - t^2``, the first to fifth derivatives are ``s``, ``-2 t s``, ``s (4 - 6 s)``, ``f2 (4 - 12 s)`` and
    ``8 s (2 - 15 s (1 - s))`` (the usual polynomials in ``t`` with ``t^2 = 1 - s``).
    """
    f = list(known)
    if not f:
        f.append(1 - t * t)
    s = f[0]
    if count >= 2 and len(f) < 2:
        f.append(-2 * t * s)
    if count >= 3 and len(f) < 3:
        f.append(s * (4 - 6 * s))
    if count >= 4 and len(f) < 4:
        f.append(f[1] * (4 - 12 * s))
    if count >= 5 and len(f) < 5:
        f.append(8 * s * (2 - 15 * s * (1 - s)))
    return f[:count]


def _sin_derivatives(z: Tensor, s: Tensor, count: int, known: Sequence[Tensor] = ()) -> list[Tensor]:
    """sin's derivatives 1 .. ``count``: cos, -sin, -cos, sin, cos (``known`` is not needed: one cosine)."""
    c = torch.cos(z)
    cycle = [c, -s, -c, s]
    return [cycle[i % 4] for i in range(count)]


DERIVATIVES: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Callable[..., list[Tensor]]]] = {
    "tanh": (_tanh, _tanh_derivatives),
    "sin": (lambda z, out=None: torch.sin(z, out=out), _sin_derivatives),
}
"""Activation name -> (the function ``(z, out=None) -> f(z)`` (into ``out`` if given), its derivatives
``(z, f(z), count, known) -> [f1, f2, ...]``, up to the fifth, extending the ``known`` first ones)."""


@dataclass(frozen=True)
class RowLayout:
    """Where the rows of a stacked jet ``[R, N, C]`` lie: value, ``d`` gradient rows, then ``order - 1`` blocks of
    ``k`` rows (the pure derivatives along the coordinates ``hess_start .. hess_start + k``)."""

    d: int
    hess_start: int
    k: int
    order: int

    @property
    def rows(self) -> int:
        return 1 + self.d + (self.order - 1) * self.k

    def block(self, j: int) -> slice:
        """The rows of derivative order ``j``: ``j = 1`` the hess axes' gradient rows, ``j >= 2`` the higher blocks."""
        if j == 1:
            return slice(1 + self.hess_start, 1 + self.hess_start + self.k)
        start = 1 + self.d + (j - 2) * self.k
        return slice(start, start + self.k)

    @staticmethod
    def of(jet: Jet) -> RowLayout:
        k = jet.hess.stop - jet.hess.start
        return RowLayout(jet.dim, jet.hess.start, k if jet.h is not None else 0, jet.order)


def stack_rows(jet: Jet) -> Tensor:
    """A jet ``[N, C]`` as stacked rows ``[R, N, C]`` (one copy)."""
    rows = jet.rows()
    return torch.cat([rows[0].unsqueeze(0)] + [r.transpose(0, 1) for r in rows[1:]])


def unstack_rows(rows: Tensor, layout: RowLayout, like: Jet) -> Jet:
    """Stacked rows ``[R, N, C]`` as a jet of ``like``'s axes (views)."""
    g = rows[1 : 1 + layout.d].transpose(0, 1)
    if layout.order == 1:
        return like.from_rows([rows[0], g])
    higher = [rows[layout.block(j)].transpose(0, 1) for j in range(2, layout.order + 1)]
    return like.from_rows([rows[0], g, *higher])


def _chain(z: Tensor, f: Sequence[Tensor], layout: RowLayout, out: Tensor) -> None:
    """Rows ``1 ..`` of an elementwise function of the jet ``z`` ``[R, N, C]`` into ``out``, given the function's
    derivatives ``f = [f1, f2, ...]`` ``[N, C]`` at the value (Faa di Bruno along each hess axis)."""
    d, order = layout.d, layout.order
    f1 = f[0]
    torch.mul(z[1 : 1 + d], f1, out=out[1 : 1 + d])
    if order < 2:
        return
    x1, x2 = z[layout.block(1)], z[layout.block(2)]
    x1sq = x1 * x1
    y = torch.mul(x2, f1, out=out[layout.block(2)])  # f1 x2 + f2 x1^2
    y.addcmul_(f[1], x1sq)
    if order < 3:
        return
    x3 = z[layout.block(3)]
    y = torch.mul(x3, f1, out=out[layout.block(3)])  # f1 x3 + 3 f2 x1 x2 + f3 x1^3
    y.addcmul_(f[1], x1 * x2, value=3).addcmul_(f[2], x1sq * x1)
    if order < 4:
        return
    y = torch.mul(z[layout.block(4)], f1, out=out[layout.block(4)])  # f1 x4 + f2 (4 x1 x3 + 3 x2^2) + 6 f3 x1^2 x2 + f4 x1^4
    y.addcmul_(f[1], torch.mul(x1, x3).mul_(4).addcmul_(x2, x2, value=3))
    y.addcmul_(f[2], x1sq * x2, value=6).addcmul_(f[3], x1sq * x1sq)


def _chain_backward(z: Tensor, f: Sequence[Tensor], layout: RowLayout, grad: Tensor) -> Tensor:
    """The gradient with respect to the rows ``z`` ``[R, N, C]`` of an elementwise function's jet, given the
    gradient ``grad`` of its rows and the function's derivatives ``f = [f1, .., f_{order + 1}]`` at the value."""
    d, order = layout.d, layout.order
    f1 = f[0]
    gz = torch.empty_like(z)
    _chain(z, f[1:], layout, gz)  # d(row)/d(value): each row with every derivative moved up by one
    torch.addcmul(torch.mul(grad[1:], gz[1:]).sum(0), f1, grad[0], out=gz[0])
    torch.mul(grad[1 : 1 + d], f1, out=gz[1 : 1 + d])
    if order < 2:
        return gz
    b1, b2 = layout.block(1), layout.block(2)
    x1, g2, f2 = z[b1], grad[b2], f[1]
    gz1 = gz[b1]
    gz1.addcmul_(f2 * x1, g2, value=2)  # d(f2 x1^2)/dx1
    gz2 = torch.mul(g2, f1, out=gz[b2])
    if order < 3:
        return gz
    b3 = layout.block(3)
    x2, g3, f3 = z[b2], grad[b3], f[2]
    gz2.addcmul_(f2 * x1, g3, value=3)  # d(3 f2 x1 x2 + f3 x1^3)/dx2, /dx1
    gz1.addcmul_(g3, torch.mul(f2, x2).addcmul_(f3, x1 * x1), value=3)
    gz3 = torch.mul(g3, f1, out=gz[b3])
    if order < 4:
        return gz
    b4 = layout.block(4)
    x3, g4, f4 = z[b3], grad[b4], f[3]
    x1sq = x1 * x1
    gz3.addcmul_(f2 * x1, g4, value=4)  # d(f2 (4 x1 x3 + 3 x2^2) + 6 f3 x1^2 x2 + f4 x1^4)/dx3, /dx2, /dx1
    gz2.addcmul_(g4, torch.mul(f2, x2).addcmul_(f3, x1sq), value=6)
    gz1.addcmul_(g4, torch.mul(f2, x3).addcmul_(f3, x1 * x2, value=3).addcmul_(f4, x1sq * x1), value=4)
    torch.mul(g4, f1, out=gz[b4])
    return gz


def _chain_rows(z: Tensor, f: Sequence[Tensor], layout: RowLayout) -> list[Tensor]:
    """Rows ``1 ..`` (as blocks) of an elementwise function of the jet ``z`` ``[R, N, C]``, given its derivatives
    ``f = [f1, f2, ...]`` ``[N, C]`` at the value (Faa di Bruno along each hess axis)."""
    d, order = layout.d, layout.order
    f1 = f[0]
    out = [z[1 : 1 + d] * f1]
    if order < 2:
        return out
    x1, x2 = z[layout.block(1)], z[layout.block(2)]
    x1sq = x1 * x1
    out.append(x2 * f1 + f[1] * x1sq)  # f1 x2 + f2 x1^2
    if order < 3:
        return out
    x3 = z[layout.block(3)]
    out.append(x3 * f1 + 3 * f[1] * x1 * x2 + f[2] * x1sq * x1)
    if order < 4:
        return out
    x4 = z[layout.block(4)]
    out.append(x4 * f1 + f[1] * (4 * x1 * x3 + 3 * x2 * x2) + 6 * f[2] * x1sq * x2 + f[3] * x1sq * x1sq)
    return out


def _chain_backward_rows(z: Tensor, f: Sequence[Tensor], layout: RowLayout, grad: Tensor) -> Tensor:
    """:func:`_chain_backward` by whole row blocks (:func:`_chain_rows`' counterpart, for torch.compile)."""
    d, order = layout.d, layout.order
    f1 = f[0]
    value = (grad[1:] * torch.cat(_chain_rows(z, f[1:], layout))).sum(0) + f1 * grad[0]
    first = grad[1 : 1 + d] * f1  # the gradient rows; the hess axes' ones get the higher rows' terms below
    if order < 2:
        return torch.cat([value.unsqueeze(0), first])
    x = [z[layout.block(j)] for j in range(1, order + 1)]  # x[0] = x1, ...
    g = [grad[layout.block(j)] for j in range(1, order + 1)]
    f2 = f[1]
    hess_first = 2 * f2 * x[0] * g[1]  # d(f2 x1^2)/dx1
    higher = [g[j] * f1 for j in range(1, order)]  # d(f1 x_j)/dx_j, for x2 ..
    if order >= 3:  # d(3 f2 x1 x2 + f3 x1^3)/dx1, /dx2
        hess_first = hess_first + 3 * g[2] * (f2 * x[1] + f[2] * x[0] * x[0])
        higher[0] = higher[0] + 3 * f2 * x[0] * g[2]
    if order >= 4:  # d(f2 (4 x1 x3 + 3 x2^2) + 6 f3 x1^2 x2 + f4 x1^4)/dx1, /dx2, /dx3
        x1sq = x[0] * x[0]
        hess_first = hess_first + 4 * g[3] * (f2 * x[2] + 3 * f[2] * x[0] * x[1] + f[3] * x1sq * x[0])
        higher[0] = higher[0] + 6 * g[3] * (f2 * x[1] + f[2] * x1sq)
        higher[1] = higher[1] + 4 * f2 * x[0] * g[3]
    lo, hi = layout.hess_start, layout.hess_start + layout.k
    return torch.cat([value.unsqueeze(0), first[:lo], first[lo:hi] + hess_first, first[hi:], *higher])


def _weight_gradient(g: Tensor, h: Tensor) -> Tensor:
    """``sum over rows and points of g^T h`` ``[out, in]`` from ``g`` ``[R, N, out]`` and ``h`` ``[R, N, in]``: one matmul,
    its long dimension inside (a narrow ``in`` or ``out`` leads: MKL is several times slower with it outside)."""
    g2, h2 = g.reshape(-1, g.shape[-1]), h.reshape(-1, h.shape[-1])
    return (h2.t() @ g2).t() if h2.shape[1] < g2.shape[1] else g2.t() @ h2


def _input_gradient(g: Tensor, w: Tensor) -> Tensor:
    """``g W`` ``[R, N, in]``; a single output is a broadcast product (an outer product is slow as a matmul)."""
    return g * w[0] if w.shape[0] == 1 else torch.matmul(g, w)


class FusedMLPJet(torch.autograd.Function):
    """Stacked input rows ``[R, N, in]`` -> output rows ``[R, N, out]`` of an MLP ``(W0, b0, W1, b1, ...)`` with the
    activation ``act`` after every layer but the last."""

    @staticmethod
    def forward(ctx, x: Tensor, layout: RowLayout, act: str, *params: Tensor) -> Tensor:  # type: ignore[override]
        fn, derivatives = DERIVATIVES[act]
        weights, biases = params[0::2], params[1::2]
        inputs, pre, kept = [], [], []
        h, rows = x, torch.compiler.is_compiling()
        eager_cpu = not rows and native_jets.takes(x, act, layout.order, [w.shape[0] for w in weights])
        native = native_jets.library() if eager_cpu else None
        for i, (w, b) in enumerate(zip(weights, biases)):
            z = torch.matmul(h, w.t())
            inputs.append(h)
            last = i == len(weights) - 1
            if native is not None and not last:  # bias, tanh and its rows in one native pass
                h, f = native_jets.tanh_forward(native, layout, z, b), []  # the backward recomputes tanh's derivatives
            elif rows:  # whole row blocks, no writes into row slices: see _chain_rows
                z = torch.cat([(z[0] + b).unsqueeze(0), z[1:]])
                if last:
                    h = z
                    break
                value = fn(z[0])
                f = derivatives(z[0], value, layout.order)
                h = torch.cat([value.unsqueeze(0), *_chain_rows(z, f, layout)])
            else:
                z[0].add_(b)
                if last:
                    h = z
                    break
                h = torch.empty_like(z)
                fn(z[0], out=h[0])
                f = derivatives(z[0], h[0], layout.order)
                _chain(z, f, layout, h)
            pre.append(z)
            kept.append(f)  # the backward extends them by one order
        ctx.layout, ctx.act, ctx.orders, ctx.native = layout, act, [len(f) for f in kept], native
        ctx.save_for_backward(*inputs, *pre, *weights, *[d for f in kept for d in f])
        return h

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            raise RuntimeError("the fused MLP jet pass is differentiable once (its backward is written out): a second "
                               "derivative through it (create_graph=True) needs the generic jets (PINNModel.fused = False)")
        layout, act = ctx.layout, ctx.act
        _, derivatives = DERIVATIVES[act]
        saved, n = ctx.saved_tensors, len(ctx.orders) + 1  # layers
        inputs, pre, weights = saved[:n], saved[n : 2 * n - 1], saved[2 * n - 1 : 3 * n - 1]
        flat = saved[3 * n - 1 :]
        ends = [sum(ctx.orders[: j + 1]) for j in range(n - 1)]
        kept = [flat[e - m : e] for e, m in zip(ends, ctx.orders)]
        grads: list[Tensor] = []
        g = grad  # [R, N, out]: the gradient of the last layer's output rows
        for i in reversed(range(n)):
            h, w = inputs[i], weights[i]
            grads = [_weight_gradient(g, h), g[0].sum(0)] + grads
            if i == 0:
                break
            g = _input_gradient(g, w)  # the gradient of layer i's input rows: the activation rows of layer i - 1
            z = pre[i - 1]
            if ctx.native is not None:
                g = native_jets.tanh_backward(ctx.native, layout, z, h[0], g)
            else:
                backward = _chain_backward_rows if torch.compiler.is_compiling() else _chain_backward
                g = backward(z, derivatives(z[0], h[0], layout.order + 1, kept[i - 1]), layout, g)
        gx = _input_gradient(g, weights[0]) if ctx.needs_input_grad[0] else None
        return (gx, None, None, *grads)


def fusable(net: nn.Module) -> bool:
    """Whether :func:`fused_forward_jet` computes ``net``'s jet: a plain :class:`MLP` (not a subclass) of plain,
    unparametrized ``nn.Linear`` layers with an activation of :data:`DERIVATIVES`."""
    return type(net) is MLP and net.act_name in DERIVATIVES and all(
        type(layer) is nn.Linear and layer.bias is not None and not parametrize.is_parametrized(layer) for layer in net.layers)


def fused_forward_rows(net: MLP, rows: Tensor, layout: RowLayout) -> Tensor:
    """The output rows ``[R, N, out]`` of ``net`` (:func:`fusable`) from its input rows ``[R, N, in]``."""
    params = [p for layer in net.layers for p in (layer.weight, layer.bias)]
    return FusedMLPJet.apply(rows, layout, net.act_name, *params)


def fused_forward_jet(net: MLP, x: Jet) -> Jet:
    """``net.forward_jet(x)`` by :class:`FusedMLPJet` (the same jet to round-off); ``net`` must be :func:`fusable`."""
    layout = RowLayout.of(x)
    return unstack_rows(fused_forward_rows(net, stack_rows(x), layout), layout, x)
