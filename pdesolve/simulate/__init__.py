"""Trusted numerical simulators, initial-condition and parameter samplers, and HDF5 trajectory datasets.

``simulate(problem, grid, times, u0)`` runs the simulator that fits the problem (or the one named) on a
batch of initial states and returns a :class:`pdesolve.solution.Solution` ``[batch, time, channel, *space]``.
"""

from .api import SIMULATORS, select_simulator, simulate
from .base import Numerics, SimulationError, Simulator

__all__ = ["SIMULATORS", "Numerics", "SimulationError", "Simulator", "select_simulator", "simulate"]
