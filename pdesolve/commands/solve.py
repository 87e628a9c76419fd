"""``pdesolve solve FILE``: train a back-end on a problem file and write a run folder."""

from __future__ import annotations

import argparse

from .. import runner
from .common import add_run_arguments, command_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="problem file (YAML), e.g. problems/burgers.yaml")
    p.add_argument("--solver", help="back-end (default: the file's `solver`)")
    add_run_arguments(p, "solvers.pinn.width=40")


def run(args: argparse.Namespace) -> int:
    cfg = command_config(args)
    if runner.trains_without_data(cfg.solver):  # a physics-only grid solver (stagger): no dataset to give
        from . import train

        return train.report(cfg, None, args)
    result = runner.run(cfg, args.resume or args.out, resume=bool(args.resume), quiet=getattr(args, "quiet", False),
                    overwrite=args.overwrite)
    if result.run_dir is None:  # a non-primary rank of a distributed run: rank 0 reports
        return 0 if result.status.ok else 1
    m = result.metrics
    summary = f"{cfg.problem.name} / {cfg.solver}: {result.status}"
    if "rel_l2" in m:
        summary += f"; relative L2 {m['rel_l2']:.3e}, max error {m['max_error']:.3e}"
    print(summary)
    print(f"wall time {m['wall_time_s']:.1f} s; results in {result.run_dir}")
    return 0 if result.status.ok else 1
