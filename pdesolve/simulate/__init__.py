"""Trusted numerical simulators, initial-condition and parameter samplers, and HDF5 trajectory datasets.

``simulate(problem, grid, times, u0)`` runs the simulator that fits the problem (or the one named) on a
batch of initial states and returns a :class:`pdesolve.solution.Solution` ``[batch, time, channel, *space]``;
``generate_dataset`` writes many trajectories to a resumable HDF5 file (``pdesolve simulate``).
"""

from .api import SIMULATORS, select_simulator, simulate
from .base import Numerics, SimulationError, Simulator
from .dataset import generate_dataset
from .reference import simulator_reference
from .samplers import gaussian_random_field, sample_parameters, sine_sum
from .settings import SimulateSettings

__all__ = [
    "SIMULATORS",
    "Numerics",
    "SimulateSettings",
    "SimulationError",
    "Simulator",
    "gaussian_random_field",
    "generate_dataset",
    "sample_parameters",
    "select_simulator",
    "simulate",
    "simulator_reference",
    "sine_sum",
]
