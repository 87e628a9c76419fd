"""``pdesolve train FILE --data DATA.h5``: train a grid solver (sinenet) on simulated trajectories."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="problem file (YAML), e.g. problems/ns2d.yaml")
    p.add_argument("--data", help="trajectory dataset (HDF5) from `pdesolve simulate` (default with --resume: the run's)")
    p.add_argument("--solver", help="grid back-end (default: the file's `solver` if it is a grid solver, else sinenet)")
    p.add_argument("--steps", type=int, help="training steps (default: the file's train.steps)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="where to train (default: the file's, else auto)")
    p.add_argument("--out", help="run folder (default: runs/<problem>-<solver>-<time>)")
    p.add_argument("--seed", type=int, help="one seed for everything (default: the file's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the file, e.g. --set solvers.sinenet.waves=2 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is best on a shared machine)")
    # SUPPRESS: without it the sub-command's default would overwrite `pdesolve -q train ...`
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import grid_runner
    from ..config import load_run_config, read_yaml
    from ..solvers import SOLVERS

    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads: expected a positive number, got {args.threads}")
        torch.set_num_threads(args.threads)
    source = Path(args.resume) / "config.yaml" if args.resume else Path(args.file)
    if args.resume and not source.exists():
        raise UserError(f"--resume {args.resume}: not a run folder (no config.yaml)")
    data = read_yaml(source)
    if args.solver is not None:
        data["solver"] = args.solver
    elif not args.resume and data.get("solver", "pinn") in SOLVERS and not grid_runner.is_grid_solver(data.get("solver", "pinn")):
        data["solver"] = "sinenet"  # the file's default back-end is a continuous one
    for key in ("device", "seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    overrides = list(args.overrides) + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    cfg = load_run_config(source, overrides, data=data)
    result = grid_runner.train_grid(cfg, args.data, args.resume or args.out, resume=bool(args.resume),
                                    quiet=getattr(args, "quiet", False))
    m = result.metrics
    print(f"{cfg.problem.name} / {cfg.solver}: {result.status}")
    print(f"test ({m['trajectories']} trajectories): one-step relative L2 {m['one_step_rel_l2']:.3e}, "
          f"rollout relative L2 {m['rollout_rel_l2']:.3e} over {m['rollout_steps']} steps")
    print(f"wall time {m['wall_time_s']:.1f} s; results in {result.run_dir}")
    return 0 if result.status.ok else 1
