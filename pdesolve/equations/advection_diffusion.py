"""A scalar carried by a fixed periodic velocity and diffusing: ``c_t + U . grad c = kappa Lap c``.

The velocity is a uniform drift plus a steady cellular flow (divergence free):
``U = (cx + A sin(k x) cos(k y), cy - A cos(k x) sin(k y))``. On a periodic box the cell wave number
``k`` must fit the box (``k L / 2 pi`` an integer on both axes; the simulator checks). With ``A = 0`` it is
the convected, decaying sine test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Derivatives, Equation, Parameter
from .split import LinearPart, Remainder, Split, is_zero


class AdvectionDiffusion2D(Equation):
    """``c_t + U . grad c = kappa Lap c`` in 2D with the drift + cellular velocity above."""

    name = "advection_diffusion"
    fields = ("c",)
    auxiliary_fields = ("ux", "uy")  # the carrying velocity: fixed in space, so a network must be told where it is
    dims = (2,)
    parameters = {
        "kappa": Parameter(None, 0.0, doc="a diffusivity cannot be negative"),
        "cx": Parameter(0.0, doc="uniform drift along x"),
        "cy": Parameter(0.0, doc="uniform drift along y"),
        "amplitude": Parameter(1.0, doc="cellular flow amplitude A"),
        "k": Parameter(1.0, 0.0, strict=True, doc="cellular flow wave number"),
    }

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        import torch

        x, y = d.space
        ux, uy = velocity(d.coord(x), d.coord(y), p, torch)
        lap = d("c", x, x) + d("c", y, y)
        return (-ux * d("c", x) - uy * d("c", y) + p["kappa"] * lap).unsqueeze(-1)

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        import torch

        x, y = (a.name for a in grid.space)
        xx = torch.as_tensor(grid.coords(x), dtype=u.dtype, device=u.device)[:, None]
        yy = torch.as_tensor(grid.coords(y), dtype=u.dtype, device=u.device)[None, :]
        ux, uy = velocity(xx, yy, p, torch)
        lap = grid.diff(u, x, 2) + grid.diff(u, y, 2)
        return -ux * grid.diff(u, x) - uy * grid.diff(u, y) + p["kappa"] * lap

    def auxiliary(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        import torch

        x, y = (a.name for a in grid.space)
        xx = torch.as_tensor(grid.coords(x), dtype=u.dtype, device=u.device)[:, None]
        yy = torch.as_tensor(grid.coords(y), dtype=u.dtype, device=u.device)[None, :]
        ux, uy = (torch.broadcast_to(torch.as_tensor(v, dtype=u.dtype, device=u.device), grid.space_shape)
                  for v in velocity(xx, yy, p, torch))
        return torch.stack([ux, uy]).expand(*u.shape[:-3], 2, *grid.space_shape)

    def split(self, p: Mapping[str, Any]) -> Split:
        """The drift and the diffusion are the linear part; the cellular flow's advection is the rest."""
        cellular = None if is_zero(p.get("amplitude", 1.0)) else Remainder("advection by the cellular flow")
        return Split(LinearPart(advection=(p.get("cx", 0.0), p.get("cy", 0.0)), diffusion=p["kappa"]), cellular)


def velocity(x: Any, y: Any, p: Mapping[str, float], xp: Any) -> tuple[Any, Any]:
    """The velocity ``(U_x, U_y)`` at coordinates ``x, y`` (``xp`` is the numpy or torch module)."""
    k, amp = p.get("k", 1.0), p.get("amplitude", 1.0)
    ux = p.get("cx", 0.0) + amp * xp.sin(k * x) * xp.cos(k * y)
    uy = p.get("cy", 0.0) - amp * xp.cos(k * x) * xp.sin(k * y)
    return ux, uy
