"""The Equation interface: one object per PDE family, with a pointwise face and/or a grid face.

An evolution equation states ``u_t = F(u, derivatives; params) + source``; a steady one (``steady = True``, a problem
with no time axis) states ``0 = F(u) + source``. The
pointwise face :meth:`Equation.forcing` computes ``F`` at points from a :class:`Derivatives` accessor
(autograd, or forward-mode jets); the grid face :meth:`Equation.rhs` computes ``F`` on a :class:`Grid`
(spectral on periodic axes, finite differences on bounded ones) for simulators and grid losses. A class
implements one face or both; which ones is derived from what it overrides when the class is created and
read from the class members ``pointwise`` and ``grid_form`` (so an unregistered subclass in a user's
script declares its faces just by defining them). :meth:`Equation.split` states the stiff linear part
and the rest (:mod:`pdesolve.equations.split`) for spectral and IMEX schemes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from .split import Split


@dataclass(frozen=True)
class Parameter:
    """A coefficient of an equation family: its default (None: required) and its admissible range."""

    default: float | None = None
    minimum: float | None = None
    strict: bool = False  # minimum excluded
    doc: str = ""

    def check(self, value: float) -> str | None:
        """Return a problem description, or None if ``value`` is admissible."""
        if not math.isfinite(value):
            return f"expected a finite number, got {value}"
        if self.minimum is not None and (value < self.minimum or (self.strict and value == self.minimum)):
            bound = ">" if self.strict else ">="
            return f"expected a value {bound} {self.minimum} ({self.doc}), got {value}"
        return None


class Derivatives(Protocol):
    """What a pointwise residual reads: field values, their derivatives and the coordinates.

    ``d("u", "x", "x")`` is u_xx at every point, shape ``[N]``; ``d("u")`` is u itself.
    """

    space: tuple[str, ...]

    def __call__(self, field: str, *axes: str) -> Any: ...

    def coord(self, name: str) -> Any: ...


class Equation:
    """A PDE family ``u_t = F(u) + source``; subclasses are small and final.

    A subclass sets ``name`` (default: its class name) and overrides :meth:`forcing` (the pointwise face), :meth:`rhs` (the grid
    face) or both; ``pointwise`` and ``grid_form`` then say which (set at class creation, not by hand).
    """

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ("u",)
    parameters: ClassVar[Mapping[str, Parameter]] = {}
    dims: ClassVar[tuple[int, ...]] = (1,)  # admissible numbers of space axes
    linear: ClassVar[bool] = True
    steady: ClassVar[bool] = False  # True: ``0 = F(u) + source`` on a domain without a time axis
    max_space_order: ClassVar[int] = 2  # highest space-derivative order in F
    mixed_derivatives: ClassVar[tuple[tuple[str, str], ...]] = ()  # the pairs of space axes of the mixed u_ab that F reads
    auxiliary_fields: ClassVar[tuple[str, ...]] = ()  # fields the grid face derives non-locally from the state (psi)
    pointwise: ClassVar[bool] = False  # derived: the class implements forcing (F at points)
    grid_form: ClassVar[bool] = False  # derived: the class implements rhs (F on a grid)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not hasattr(cls, "name"):
            cls.name = cls.__name__  # messages name the equation; a registered family sets its own
        cls.pointwise = cls.forcing is not Equation.forcing or cls.residual is not Equation.residual
        cls.grid_form = cls.rhs is not Equation.rhs

    def forcing(self, d: Derivatives, p: Mapping[str, float]) -> Any:
        """F at points, ``[N, n_fields]`` (one column per field); grid-only equations do not implement it."""
        raise NotImplementedError(
            f"the {self.name!r} equation has no pointwise face (forcing): it is defined on grids only (rhs); "
            "pointwise solvers need a formulation at points"
        )

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        """F on a grid: ``u`` is ``[..., channel, *space]`` (torch), returns the same shape; pointwise-only
        equations do not implement it."""
        raise NotImplementedError(f"the {self.name!r} equation has no grid face (rhs): it is defined at points only (forcing)")

    def auxiliary(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        """The ``auxiliary_fields`` of states ``u [..., channel, *space]`` on ``grid``: ``[..., len(auxiliary_fields),
        *space]``. What the grid face derives from the state by a global solve (a stream function) or from the
        position (a fixed velocity field): a local, translation-equivariant network fed with them need not learn them."""
        raise NotImplementedError(f"the {self.name!r} equation derives no auxiliary fields")

    def split(self, p: Mapping[str, Any]) -> Split | None:
        """``F = L u + N(u)`` with the coefficients ``p`` (numbers, or per-trajectory tensors that broadcast
        against the field); None when the family states no constant-coefficient linear part."""
        return None

    def velocity(self, d: Derivatives, p: Mapping[str, float]) -> Any | None:
        """Characteristic speed ``f`` of the transport part ``u_t + f u_x``, ``[N]``; None if no transport."""
        return None

    def residual(self, d: Derivatives, p: Mapping[str, float], source: Any | None = None) -> Any:
        """``u_t - F - source`` at points (steady: ``-(F + source)``), ``[N, n_fields]``. An equation stated only as a
        residual (no ``u_t = F`` form) overrides this and not :meth:`forcing`."""
        import torch

        if self.steady:
            r = -self.forcing(d, p)
        else:
            r = torch.stack([d(f, "t") for f in self.fields], dim=-1) - self.forcing(d, p)
        return r if source is None else r - source

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


def laplacian_points(d: Derivatives, field: str) -> Any:
    return sum(d(field, a, a) for a in d.space)


def laplacian_grid(u: Any, grid: Any) -> Any:
    return sum(grid.diff(u, a.name, 2) for a in grid.space)
