"""``pdesolve train FILE [--data DATA.h5]``: train a grid solver (sinenet on simulated trajectories; stagger on none)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .common import add_run_arguments, command_config

if TYPE_CHECKING:
    from ..config import RunConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="problem file (YAML), e.g. problems/ns2d.yaml")
    p.add_argument("--data", help="trajectory dataset (HDF5) from `pdesolve simulate` (default with --resume: the run's)")
    p.add_argument("--solver", help="grid back-end (default: the file's `solver` if it is a grid solver, else sinenet)")
    add_run_arguments(p, "solvers.sinenet.waves=2")


def run(args: argparse.Namespace) -> int:
    return report(command_config(args, default_grid_solver="sinenet"), args.data, args)


def report(cfg: RunConfig, data: str | None, args: argparse.Namespace) -> int:
    """Train ``cfg``'s grid solver (on ``data``, or on the problem's family) and print the test errors."""
    from .. import grid_runner

    result = grid_runner.train_grid(cfg, data, args.resume or args.out, resume=bool(args.resume), quiet=getattr(args, "quiet", False),
                    overwrite=args.overwrite)
    m = result.metrics
    print(f"{cfg.problem.name} / {cfg.solver}: {result.status}")
    print(f"test ({m['trajectories']} trajectories): one-step relative L2 {m['one_step_rel_l2']:.3e}, "
          f"rollout relative L2 {m['rollout_rel_l2']:.3e} over {m['rollout_steps']} steps")
    print(f"wall time {m['wall_time_s']:.1f} s; results in {result.run_dir}")
    return 0 if result.status.ok else 1
