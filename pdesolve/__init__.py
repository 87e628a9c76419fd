"""pdesolve: physics-informed PDE solvers that share one problem/mesh abstraction."""

__version__ = "0.1.0"
