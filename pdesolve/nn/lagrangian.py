"""The Lagrangian map: Eulerian derivatives from label-space jets, and label samples back onto a grid.

A Lagrangian solution is carried by two functions of a label ``s`` (where a characteristic starts)
and time: the position ``X(s, t)`` of the characteristic and the state ``W(s, t) = u(X(s, t), t)`` it
carries. Eulerian derivatives follow from the chain rule through the Jacobian ``X_s = dX/ds``:

    u_x  = W_s / X_s
    u_xx = (W_ss - X_ss u_x) / X_s^2          (= (W_ss - X_ss W_s / X_s) / X_s^2)
    u_t  = W_t - X_t u_x

Taking ``u_xx ~ W_ss`` instead (differentiating by the label) is exact only where ``X_s = 1``: any
compression or stretching of the characteristics (Burgers) changes the diffusion term.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from .jet import Jet


class LagrangianDerivatives:
    """The :class:`pdesolve.equations.Derivatives` accessor of ``u(x, t)`` built from label jets.

    ``W`` and ``X`` are scalar jets ``[N]`` over the coordinates ``(t, s)`` that carry the second
    derivative along ``s`` (``Jet.variables(coords, 2, slice(1, 2))``); ``t`` is ``[N]``.
    ``label_derivatives=True`` reads ``u_x = W_s`` and ``u_xx = W_ss`` (the label shortcut, for comparison).
    """

    def __init__(self, W: Jet, X: Jet, t: Tensor, field: str = "u", axis: str = "x", label_derivatives: bool = False):
        self.space = (axis,)
        self.field, self.axis, self.t = field, axis, t
        self.W, self.X = W, X
        w_s, x_s = W.g[:, 1], X.g[:, 1]
        if label_derivatives:
            self.u_x = w_s
            self.u_xx = W.h[:, 0] if W.h is not None else None
        else:
            self.u_x = w_s / x_s
            self.u_xx = (W.h[:, 0] - X.h[:, 0] * self.u_x) / (x_s * x_s) if W.h is not None and X.h is not None else None
        self.u_t = W.g[:, 0] - X.g[:, 0] * self.u_x

    def __call__(self, field: str, *axes: str) -> Tensor:
        if field != self.field:
            raise KeyError(f"no field {field!r}; the Lagrangian state carries {self.field!r}")
        if not axes:
            return self.W.v
        if axes == ("t",):
            return self.u_t
        if axes == (self.axis,):
            return self.u_x
        if axes == (self.axis, self.axis) and self.u_xx is not None:
            return self.u_xx
        raise ValueError(f"the Lagrangian state gives u, u_t, u_{self.axis} and u_{self.axis}{self.axis}, got derivative {axes}")

    def coord(self, name: str) -> Tensor:
        """Eulerian coordinates: the characteristic's position ``X`` for the space axis, ``t`` for time."""
        if name == "t":
            return self.t
        if name == self.axis:
            return self.X.v
        raise KeyError(f"no coordinate {name!r}; expected 't' or {self.axis!r}")


def to_grid(positions: np.ndarray, values: np.ndarray, x: np.ndarray, lo: float, hi: float, periodic: bool) -> np.ndarray:
    """Linear interpolation of label samples onto the Eulerian points ``x``, one time row at a time.

    ``positions`` and ``values`` are ``[time, labels]`` (NaN marks a label that does not exist at that
    time, such as an inflow characteristic before it enters); returns ``[time, len(x)]`` float64, NaN on
    rows without any finite label.
    On a periodic axis positions are wrapped into ``[lo, hi)`` and interpolated with period ``hi - lo``;
    on a bounded axis they are sorted and the ends are held constant. Linear interpolation is exact for
    fields linear in x and at labels that land on grid points, and never overshoots (it stays monotone
    across a steep front).
    """
    positions, values = np.asarray(positions, np.float64), np.asarray(values, np.float64)
    if positions.shape != values.shape or positions.ndim != 2:
        raise ValueError(f"expected positions and values of one shape [time, labels], got {positions.shape} and {values.shape}")
    out = np.empty((positions.shape[0], len(x)))
    period = hi - lo
    for i, (p, v) in enumerate(zip(positions, values)):
        keep = np.isfinite(p) & np.isfinite(v)
        p, v = p[keep], v[keep]
        if len(p) == 0:  # nothing finite to interpolate (a diverged model): say so with NaN, not a guess
            out[i] = np.nan
        elif periodic:
            out[i] = np.interp(x, lo + np.mod(p - lo, period), v, period=period)
        else:
            order = np.argsort(p, kind="stable")
            out[i] = np.interp(x, p[order], v[order])
    return out
