"""``pdesolve solve FILE``: train a back-end on a problem file and write a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import runner
from ..config import load_run_config, read_yaml
from ..errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="problem file (YAML), e.g. problems/burgers.yaml")
    p.add_argument("--solver", help="back-end (default: the file's `solver`)")
    p.add_argument("--steps", type=int, help="training steps (default: the file's train.steps)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="where to train (default: the file's, else auto)")
    p.add_argument("--out", help="run folder (default: runs/<problem>-<solver>-<time>)")
    p.add_argument("--seed", type=int, help="one seed for everything (default: the file's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the file, e.g. --set solvers.pinn.width=40 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is best on a shared machine)")
    # SUPPRESS keeps `pdesolve -q solve ...` (the global flag) from being reset by this option's default
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads: expected a positive number, got {args.threads}")
        torch.set_num_threads(args.threads)
    source = Path(args.resume) / "config.yaml" if args.resume else Path(args.file)
    if args.resume and not source.exists():
        raise UserError(f"--resume {args.resume}: not a run folder (no config.yaml)")
    data = read_yaml(source)
    for key in ("solver", "device", "seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    overrides = list(args.overrides) + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    cfg = load_run_config(source, overrides, data=data)
    result = runner.run(cfg, args.resume or args.out, resume=bool(args.resume), quiet=getattr(args, "quiet", False))
    m = result.metrics
    summary = f"{cfg.problem.name} / {cfg.solver}: {result.status}"
    if "rel_l2" in m:
        summary += f"; relative L2 {m['rel_l2']:.3e}, max error {m['max_error']:.3e}"
    print(summary)
    print(f"wall time {m['wall_time_s']:.1f} s; results in {result.run_dir}")
    return 0 if result.status.ok else 1
