"""``pdesolve simulate FILE --n 256 --out data.h5``: a dataset of simulated trajectories (resumable)."""

from __future__ import annotations

import argparse
import logging

import yaml

from ..errors import UserError

log = logging.getLogger(__name__)


def _resolution(text: str) -> int | dict[str, int]:
    """``128`` or ``x=128,y=64``."""
    try:
        if "=" not in text:
            return int(text)
        return {k.strip(): int(v) for k, v in (item.split("=", 1) for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or axis=N,axis=N (e.g. x=128,y=64), got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="problem file (YAML); its simulate: section holds the defaults")
    p.add_argument("--n", type=int, help="number of trajectories (simulate.trajectories)")
    p.add_argument("--out", help="HDF5 file to write or resume (default: <problem name>.h5)")
    p.add_argument("--resolution", type=_resolution, help="points per space axis: N or x=N,y=M (simulate.resolution)")
    p.add_argument("--steps", type=int, help="saved time steps after t0 (simulate.steps)")
    p.add_argument("--seed", type=int, help="seed of the initial states and parameters (simulate.seed, else the file's seed)")
    p.add_argument("--batch-size", type=int, help="trajectories per simulator call (simulate.batch_size)")
    p.add_argument("--device", help="cpu or cuda (simulate.device)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the simulators are batched over trajectories, and intra-op threads "
        "on small FFTs cost more than they gain, badly so on a busy machine)",
    )
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming an existing file")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of the file, e.g. params.nu=1e-4"
    )
    # SUPPRESS keeps `pdesolve -q simulate ...` (the global flag) from being reset by this option's default
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch
    from pydantic import ValidationError

    from ..config import load_run_config
    from ..simulate.dataset import generate_dataset
    from ..simulate.settings import SimulateSettings

    if args.threads < 1:
        raise UserError(f"--threads: expected a positive number, got {args.threads}")
    torch.set_num_threads(args.threads)
    cfg = load_run_config(args.file, args.set)
    base = cfg.simulate if isinstance(cfg.simulate, SimulateSettings) else SimulateSettings()
    updates = {
        "trajectories": args.n,
        "resolution": args.resolution,
        "steps": args.steps,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    data = {**base.model_dump(), **{k: v for k, v in updates.items() if v is not None}}
    try:
        settings = SimulateSettings.model_validate(data)
    except ValidationError as err:
        raise UserError(f"{args.file}: simulate settings: {err}") from None
    seed = settings.seed if settings.seed is not None else cfg.seed
    out = args.out or f"{cfg.problem.name}.h5"
    try:
        report = generate_dataset(
            out,
            cfg.problem,
            settings,
            problem_text=yaml.safe_dump(cfg.raw, sort_keys=False),
            seed=seed,
            quiet=args.quiet,
            overwrite=args.overwrite,
        )
    except ValueError as err:  # a simulator that cannot run this problem, bad parameters, grid mismatch
        raise UserError(f"{args.file}: {err}") from None
    log.info(
        "%s: %d trajectories by %s (%d were already there)",
        report.path,
        report.trajectories,
        report.simulator,
        report.resumed_from,
    )
    return 0
