"""One simulation of a study: its parameters, its initial state, and its frames streamed as they are made.

Simulation ``i`` of a stream (``TRAIN``, or ``VALIDATION`` for the held-out ones) is member ``i`` of that
stream of the problem's initial-condition family (:class:`pdesolve.simulate.family.InitialConditionFamily`):
its parameters are row ``i`` of the stream's design (uniform, Latin hypercube or Sobol over the declared
ranges), drawn once from the seed, and its random initial state comes from a generator of its own.
pdesolve's simulators return whole trajectories, so a client that wants frames before the trajectory ends
runs the simulator in segments of ``segment_steps`` output steps, each starting from the last frame of the
one before (the problem's time origin moved there); with ``segment_steps=None`` it runs the trajectory in
one call and streams the frames as soon as it returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from pdesolve.grid import Grid
from pdesolve.problem import Domain, Problem
from pdesolve.simulate import SimulateSettings, simulate
from pdesolve.simulate.family import DesignSampler, InitialConditionFamily

TRAIN, VALIDATION = 0x5452, 0x5641  # random streams of the training and the held-out simulations


@dataclass(frozen=True)
class SimulationPlan:
    """How to run the simulations of a study (the same on every rank)."""

    problem: Problem
    settings: SimulateSettings
    seed: int
    segment_steps: int | None = None

    @cached_property
    def grid(self) -> Grid:
        """Space axes and the saved times (``steps + 1`` frames)."""
        return self.problem.domain.grid(self.settings.shape(self.problem.domain.space_names))

    @cached_property
    def family(self) -> InitialConditionFamily:
        """The initial conditions and parameter design of the settings, drawn from ``seed``."""
        s = self.settings
        return InitialConditionFamily(self.problem, s.initial, s.parameters, s.sampler, self.seed, s.simulator)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.settings.parameters))

    @property
    def times(self) -> np.ndarray:
        return self.grid.time.coords  # type: ignore[union-attr]

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """``[channel, *space]`` of one frame."""
        return (len(self.problem.equation.fields),) + self.grid.space_shape

    def design(self, n: int, stream: int = TRAIN, sampler: DesignSampler | None = None) -> np.ndarray:
        """Parameter values ``[n, len(names)]`` float64 of simulations ``0..n-1`` of ``stream``."""
        drawn = self.family.design(n, stream, sampler=sampler)
        return np.stack([drawn[k] for k in self.names], axis=1) if drawn else np.zeros((n, 0))

    def scaled(self, values: np.ndarray) -> np.ndarray:
        """Parameters ``[..., len(names)]`` mapped from their ranges to ``[-1, 1]`` (log ranges in log space)."""
        out = np.empty_like(values, dtype=np.float64)
        for j, name in enumerate(self.names):
            r = self.settings.parameters[name]
            lo, hi, v = (np.log(r.low), np.log(r.high), np.log(values[..., j])) if r.log else (r.low, r.high, values[..., j])
            out[..., j] = 2 * (v - lo) / (hi - lo) - 1 if hi > lo else 0.0
        return out

    def scaled_times(self) -> np.ndarray:
        """The saved times mapped to ``[-1, 1]`` (float32), the time input of the surrogates."""
        t = self.times
        return (2 * (t - t[0]) / (t[-1] - t[0]) - 1).astype(np.float32)

    def initial(self, sim: int, values: np.ndarray, stream: int = TRAIN) -> np.ndarray:
        """The initial state ``[channel, *space]`` float64 of simulation ``sim`` with parameters ``values``."""
        return self.family.state(sim, self.grid, dict(zip(self.names, values, strict=True)), stream)

    def _columns(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Parameters ``[batch, len(names)]`` as a design (name -> ``[batch]``)."""
        return {k: values[:, j] for j, k in enumerate(self.names)}

    def _run(self, problem: Problem, times: np.ndarray, u0: np.ndarray, values: np.ndarray) -> torch.Tensor:
        s = self.settings
        return simulate(
            problem, self.grid, times=times, u0=torch.as_tensor(u0),
            params=self.family.simulation_parameters(self._columns(values), slice(None)),
            numerics=s.numerics(), simulator=s.simulator, device=s.device, dtype=torch.float64,
        ).values

    def frames(self, sim: int, values: np.ndarray, stream: int = TRAIN) -> Iterator[tuple[int, np.ndarray]]:
        """``(step, frame [channel, *space] float64)`` for steps ``0..steps``, each as soon as it exists."""
        u = self.initial(sim, values, stream)[None]  # [1, channel, *space]
        times, steps = self.times, self.settings.steps
        if not steps:
            yield 0, u[0]
        segment = self.segment_steps or steps
        t_end = self.problem.domain.time[1]  # type: ignore[index]
        k = 0
        while k < steps:
            j = min(k + segment, steps)
            problem = self.problem if k == 0 else dataclasses.replace(
                self.problem, domain=Domain(self.problem.domain.space, (float(times[k]), t_end))
            )
            out = self._run(problem, times[k : j + 1], u, values[None]).cpu().numpy()  # [1, j - k + 1, channel, *space]
            if k == 0:  # the simulator's first frame: the initial state with the walls' values (as whole trajectories have it)
                yield 0, out[0, 0]
            for i in range(1, j - k + 1):
                yield k + i, out[0, i]
            u, k = out[:, -1], j

    def trajectories(self, values: np.ndarray, stream: int) -> np.ndarray:
        """Whole trajectories ``[n, time, channel, *space]`` float32 of simulations ``0..n-1`` of ``stream`` (one call)."""
        u0 = self.family.states(np.arange(len(values)), self.grid, self._columns(values), stream)
        return self._run(self.problem, self.times, u0, values).cpu().numpy().astype(np.float32)
