"""Options and start-up shared by the commands that train (`solve`, `train`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from ..config import RunConfig


def add_run_arguments(p: argparse.ArgumentParser, example: str) -> None:
    """--steps, --device, --out, --seed, --set, --resume, --threads, --quiet (after the command's own)."""
    p.add_argument("--steps", type=int, help="training steps (default: the file's train.steps)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="where to train (default: the file's, else auto)")
    p.add_argument("--out", help="run folder (default: runs/<problem>-<solver>-<time>)")
    p.add_argument("--seed", type=int, help="one seed for everything (default: the file's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a key of the file, e.g. --set {example} (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint (its settings; "
                   "only a larger --steps or another --device may differ)")
    p.add_argument("--overwrite", action="store_true", help="start over in an --out folder that holds a run (its files are removed)")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is best on a shared machine)")
    # SUPPRESS keeps `pdesolve -q <command> ...` (the global flag) from being reset by this option's default
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bar")


def set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads: expected a positive number, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


PROBLEM_KEYS = ("name", "equation", "params", "domain", "initial", "boundary", "source", "reference")


def config_source(args: argparse.Namespace) -> Path:
    """The file to read: the problem file, or when resuming the run's resolved ``config.yaml`` (whose problem the
    given problem file must state: a run is resumed with its own problem, not another)."""
    if not args.resume:
        return Path(args.file)
    if args.overwrite:
        raise UserError("--resume and --overwrite: choose one (continue the run, or start it over)")
    source = Path(args.resume) / "config.yaml"
    if not source.exists():
        raise UserError(f"--resume {args.resume}: not a run folder (no config.yaml)")
    from ..config import apply_overrides, read_yaml

    given = apply_overrides(read_yaml(args.file), args.overrides, str(args.file))  # the file as the run command gave it
    run = read_yaml(source)
    differ = [k for k in PROBLEM_KEYS if given.get(k) != run.get(k)]
    if differ:
        raise UserError(f"--resume {args.resume}: {args.file} states another problem than the run's ({', '.join(differ)} "
                        "differ); resume with the run's own problem file and the --set overrides it was made with, or "
                        "start a new run")
    return source


def cli_overrides(args: argparse.Namespace, data: dict[str, Any]) -> list[str]:
    """Apply --device/--seed to the file's data and return the --set list plus --steps."""
    for key in ("device", "seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    return list(args.overrides) + ([f"train.steps={args.steps}"] if args.steps is not None else [])


def command_config(args: argparse.Namespace, default_grid_solver: str | None = None) -> RunConfig:
    """The resolved run configuration of ``solve`` / ``train``: the file (or the resumed run's ``config.yaml``),
    ``--solver``, ``--device``, ``--seed``, ``--set`` and ``--steps``. ``default_grid_solver``: what ``train``
    runs when neither ``--solver`` nor the file names a grid solver."""
    from ..config import load_run_config, read_yaml
    from ..runner import is_grid_solver
    from ..solvers import SOLVERS

    set_threads(args)
    source = config_source(args)
    data = read_yaml(source)
    if args.solver is not None:
        data["solver"] = args.solver
    elif default_grid_solver is not None and not args.resume:
        named = data.get("solver", "pinn")
        if named in SOLVERS and not is_grid_solver(named):
            data["solver"] = default_grid_solver  # the file's default back-end is a point solver
    return load_run_config(source, cli_overrides(args, data), data=data)
