"""A problem's family of initial conditions: the random initial states and per-member parameters that a
``simulate:`` section declares, in one place for datasets, the hc family setting and online simulations.

A family is the problem, an initial-state sampler (``initial``: the problem's own initial condition, a
Gaussian random field or a sine sum), parameter ranges (``parameters``: equation parameters,
``initial.<field>`` constants, ``boundary.<axis>.<side>`` wall values), the joint design of those ranges
(``sampler``) and a ``seed``. Its members are numbered within *streams* of random numbers:

- member ``i`` of stream ``s``: parameters row ``i`` of the design drawn from ``default_rng([seed, s])``,
  initial state drawn from ``default_rng([seed, s, i])``;
- with no stream (``stream=None``, the datasets of ``pdesolve simulate``): the design from
  ``default_rng([seed, DESIGN_STREAM])``, member ``i``'s state from ``default_rng([seed, i])``.

A member's state depends only on the seed, its stream and its number (not on how many members are drawn,
nor in which batches), so a resumed dataset equals an uninterrupted one and held-out streams never
overlap training ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ..errors import UserError
from ..grid import Grid
from ..problem import Problem
from ..solution import Solution
from .api import simulate as simulate_batch
from .base import Numerics
from .samplers import draw_fields, sample_parameters
from .settings import InitialSampler, ParameterRange, ProblemInitial, SimulateSettings

DESIGN_STREAM = 0x50415241  # "PARA": the design's generator when no stream is given, apart from the states' [seed, i]
DesignSampler = Literal["random", "lhs", "sobol", "uniform"]


@dataclass(frozen=True)
class InitialConditionFamily:
    """Random initial conditions and per-member parameters of ``problem`` (see the module docstring)."""

    problem: Problem
    initial: InitialSampler = ProblemInitial()
    parameters: Mapping[str, ParameterRange] = field(default_factory=dict)
    sampler: DesignSampler = "random"
    seed: int = 0
    simulator: str | None = None  # the simulator :meth:`simulate` runs (None: the first that fits the problem)

    def __post_init__(self) -> None:
        valid = self.valid_names()
        unknown = sorted(set(self.parameters) - valid)
        if unknown:
            raise UserError(f"parameters: unknown names {unknown} for problem {self.problem.name!r}; valid names are equation "
                            f"parameters, initial.<field> and boundary.<axis>.<side>: {sorted(valid)}")

    @classmethod
    def from_settings(cls, problem: Problem, settings: SimulateSettings, seed: int) -> InitialConditionFamily:
        """The family a ``simulate:`` section declares; its own ``seed`` wins over the run's ``seed`` when set."""
        return cls(problem, settings.initial, dict(settings.parameters), settings.sampler,
                   settings.seed if settings.seed is not None else seed, settings.simulator)

    def valid_names(self) -> set[str]:
        """Every name a parameter may have: equation parameters, ``initial.<field>``, ``boundary.<axis>.<side>``."""
        eq, space = self.problem.equation, self.problem.domain.space_names
        return (set(eq.parameters) | {f"initial.{f}" for f in eq.fields}
                | {f"boundary.{a}.{side}" for a in space for side in ("lo", "hi")})

    @property
    def names(self) -> tuple[str, ...]:
        """The declared parameters, sorted (the order of a design's columns)."""
        return tuple(sorted(self.parameters))

    # ------------------------------------------------------------------ draws
    def design_generator(self, stream: int | None = None) -> np.random.Generator:
        """The generator of stream ``stream``'s design."""
        return np.random.default_rng([self.seed, DESIGN_STREAM if stream is None else int(stream)])

    def state_generator(self, index: int, stream: int | None = None) -> np.random.Generator:
        """The generator of member ``index``'s random initial fields."""
        return np.random.default_rng([self.seed, int(index)] if stream is None else [self.seed, int(stream), int(index)])

    def design(self, n: int, stream: int | None = None, *, sampler: DesignSampler | None = None) -> dict[str, np.ndarray]:
        """Values ``[n]`` of every declared parameter for members ``0..n-1``, one joint design (empty without
        parameters); ``sampler`` replaces the family's design kind (e.g. random draws for a held-out set)."""
        if not self.parameters:
            return {}
        ranges = {k: (r.low, r.high, r.log) for k, r in self.parameters.items()}
        return sample_parameters(ranges, n, sampler or self.sampler, self.design_generator(stream))

    def state(self, index: int, grid: Grid, values: Mapping[str, float], stream: int | None = None) -> np.ndarray:
        """Member ``index``'s initial state ``[channel, *space]`` float64 on ``grid``, its parameters ``values``.

        Per field: the constant ``values["initial.<field>"]``, else a random field from the member's own
        generator, else the problem's own initial condition.
        """
        return self._states([index], grid, [values], stream)[0]

    def states(self, index: Sequence[int] | np.ndarray, grid: Grid, design: Mapping[str, np.ndarray],
               stream: int | None = None) -> np.ndarray:
        """Initial states ``[len(index), channel, *space]`` float64 of members ``index`` of a ``design``
        (``design[name][i]`` is member i's value, as :meth:`design` gives)."""
        rows = [{k: v[int(i)] for k, v in design.items()} for i in index]
        return self._states(index, grid, rows, stream)

    def _states(self, index: Sequence[int] | np.ndarray, grid: Grid, rows: Sequence[Mapping[str, float]],
                stream: int | None) -> np.ndarray:
        fields = self.problem.equation.fields
        out = np.empty((len(rows), len(fields)) + grid.space_shape)
        base = None  # the problem's initial condition on grid, when a member needs it
        for row, (i, values) in enumerate(zip(index, rows)):
            rng = self.state_generator(int(i), stream)
            for c, f in enumerate(fields):
                if f"initial.{f}" in values:
                    out[row, c] = values[f"initial.{f}"]
                    continue
                drawn = draw_fields(self.initial, grid, 1, rng)
                if drawn is not None:
                    out[row, c] = drawn[0]
                    continue
                if self.problem.initial is None:
                    raise ValueError(f"no initial condition for field {f!r}: the problem has none and simulate.initial is 'problem'")
                if base is None:
                    base = self.problem.initial_numpy(grid)
                out[row, c] = base[c]
        return out

    def simulation_parameters(self, design: Mapping[str, np.ndarray], index: Sequence[int] | np.ndarray | slice) -> dict[str, np.ndarray]:
        """The rows ``index`` of ``design`` the simulator takes as ``params`` (equation and wall values; the
        ``initial.*`` constants are in the states)."""
        return {k: np.asarray(v)[index] for k, v in design.items() if not k.startswith("initial.")}

    # ------------------------------------------------------------------ trajectories
    def simulate(self, n: int, grid: Grid, stream: int | None = None, numerics: Numerics | None = None, *,
                 device: str | torch.device | None = None, dtype: torch.dtype = torch.float64) -> Solution:
        """Members ``0..n-1`` of ``stream`` simulated on ``grid`` (space axes and saved times) by the family's
        simulator, ``[n, time, channel, *space]``."""
        design = self.design(n, stream)
        index = np.arange(n)
        u0 = self.states(index, grid, design, stream)
        return simulate_batch(self.problem, grid, u0=torch.as_tensor(u0), params=self.simulation_parameters(design, index),
                              numerics=numerics, simulator=self.simulator, device=device, dtype=dtype)
