"""The hard-constraint solvers ``hc`` and ``moe_hc``: a basis network whose weights are solved for per expert.

Modules, each with one job: :mod:`.options` (the ``solvers.hc`` / ``solvers.moe_hc`` settings), :mod:`.basis`
(expert boxes, the basis network, the residual of ``u = b . w``, the condition rows), :mod:`.family` (the
initial conditions of the family setting), :mod:`.task` (the training task, which sees the solver only
through :class:`HCSolves`) and :mod:`.solver` (the batched solves and the two back-ends).
"""

from .family import ICBatch, ICFamily
from .options import FamilyOptions, HCOptions, HCPointsOptions, MoEHCOptions, NonlinearOptions
from .solver import HC, HardConstrainedSolver, MoEHC
from .task import HCSolves, HCTask

__all__ = [
    "HC",
    "FamilyOptions",
    "HCOptions",
    "HCPointsOptions",
    "HCSolves",
    "HCTask",
    "HardConstrainedSolver",
    "ICBatch",
    "ICFamily",
    "MoEHC",
    "MoEHCOptions",
    "NonlinearOptions",
]
