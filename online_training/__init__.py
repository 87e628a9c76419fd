"""Online training: simulations stream their time steps over MPI straight into a surrogate's training.

    mpiexec -n 4 python -m online_training problems/heat2d_online.yaml        # 1 server, 3 clients
    python -m online_training problems/heat2d_online.yaml --offline           # simulate to HDF5, then train

Server ranks train the surrogate (several form one data-parallel model); client ranks run pdesolve
simulators on parameters the servers hand out and stream every time step back. See
``docs/online_training.md``. Importing this package starts nothing: MPI is set up in :func:`main`.
"""

from __future__ import annotations

from typing import Any


def main(argv: Any = None, **kwargs: Any) -> int:
    """Run a study (see :func:`online_training.entry.main`)."""
    from .entry import main as _main

    return _main(argv, **kwargs)


__all__ = ["main"]
