"""``mpiexec -n N python -m online_training STUDY.yaml``: the online trainer's entry point.

Everything is made here and passed down: the study, the roles (the first ``online.servers`` ranks
train, the others simulate), the data-parallel group, and the stop flag that SIGTERM, SIGINT and
SIGUSR1 set. ``--offline`` runs the same study as simulate-to-HDF5-then-train in one process, without
MPI. Running the same command again resumes from the run folder's last checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from pdesolve.console import log_to_stderr
from pdesolve.errors import UserError
from pdesolve.io import write_text

from .buffer import make_buffer
from .checkpoint import Checkpoints
from .client import Runner, run_client
from .monitor import Monitor
from .roles import Roles, StopFlag, create_roles
from .scheduler import Scheduler
from .server import Parts, Server
from .simulation import VALIDATION, SimulationPlan
from .study import Study, load_study, study_text
from .surrogate import Surrogate, make_surrogate
from .trainer import choose_device
from .transport import ServerLink, failures_agreed

log = logging.getLogger("online_training")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m online_training",
        description="Train a surrogate on simulations streamed over MPI (mpiexec -n N python -m online_training STUDY.yaml).",
    )
    p.add_argument("study", help="study file (YAML), e.g. problems/heat2d_online.yaml")
    p.add_argument("--out", help="run folder (default: the study's output, else runs/<name>)")
    p.add_argument("--offline", action="store_true", help="simulate to HDF5, read back, then train (one process, no MPI)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming the run folder's checkpoint")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key, e.g. train.steps=200")
    return p


def main(argv: Sequence[str] | None = None, *, runner: Callable[[SimulationPlan], Runner] | None = None) -> int:
    """Run a study; ``runner(plan)`` gives the clients' simulator in place of ``plan.frames`` (tests inject faults)."""
    args = build_parser().parse_args(argv)
    if args.offline:
        return _offline(args)
    return _online(args, runner)


def _logging(lead: bool, rank: int, quiet: bool) -> None:
    level = logging.INFO if lead and not quiet else logging.WARNING
    fmt = "%(asctime)s %(message)s" if lead else f"%(asctime)s [rank {rank}] %(levelname)s %(message)s"
    log_to_stderr(level, fmt, datefmt="%H:%M:%S")


def _study(args: argparse.Namespace, speak: bool) -> tuple[Study, Path] | None:
    try:
        study = load_study(args.study, args.set)
    except UserError as err:
        if speak:
            sys.stderr.write(f"{err}\n")
        return None
    torch.set_num_threads(study.online.threads)
    return study, Path(args.out) if args.out else study.output


def _plan(study: Study) -> SimulationPlan:
    seed = study.simulate.seed if study.simulate.seed is not None else study.seed
    return SimulationPlan(study.problem, study.simulate, seed, study.online.segment_steps)


def _surrogate(study: Study, plan: SimulationPlan) -> Surrogate:
    periodic = tuple(a.periodic for a in plan.grid.space)
    return make_surrogate(study.surrogate, plan.frame_shape, len(plan.names), periodic, plan.grid.time.spacing)  # type: ignore[union-attr]


def held_out(study: Study, plan: SimulationPlan, surrogate: Surrogate) -> np.ndarray:
    """The records of the validation simulations (their own design and random stream)."""
    values = plan.design(study.validation.trajectories, VALIDATION, study.validation.sampler)
    frames = plan.trajectories(values, VALIDATION)  # [n, time, C, *space]
    return surrogate.records_of(plan.scaled(values).astype(np.float32), plan.scaled_times(), frames)


def _prepare(folder: Path, study: Study, overwrite: bool) -> None:
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "config.yaml", study_text(study))


def _offline(args: argparse.Namespace) -> int:
    from .offline import run_offline

    _logging(True, 0, args.quiet)
    loaded = _study(args, True)
    if loaded is None:
        return 2
    study, folder = loaded
    try:
        _prepare(folder, study, args.overwrite)
        plan = _plan(study)
        surrogate = _surrogate(study, plan)
        return run_offline(study, folder, plan, surrogate, held_out(study, plan, surrogate), choose_device(study.device),
                           overwrite=args.overwrite)
    except (UserError, ValueError) as err:
        sys.stderr.write(f"{err}\n")
        return 2
    except Exception:
        log.exception("internal error: this is a bug in online_training, not a mistake in the study; please report it "
                      "with the command and the study file")
        return 1


def _online(args: argparse.Namespace, runner: Callable[[SimulationPlan], Runner] | None) -> int:
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    _logging(rank == 0, rank, args.quiet)
    loaded = _study(args, rank == 0)
    if loaded is None:
        return 2
    study, folder = loaded
    try:
        roles = create_roles(world, study.online.servers)
    except UserError as err:
        if rank == 0:
            sys.stderr.write(f"{err}\n")
        return 2
    stop = StopFlag()
    restore = stop.install()
    try:
        if rank == 0:
            _prepare(folder, study, args.overwrite)
        roles.comm.Barrier()  # the folder is ready before any rank writes to it
        plan = _plan(study)
        if roles.is_server:
            code = _serve(study, roles, plan, folder, stop)
        else:
            code = run_client(study, roles, plan, folder, stop, runner(plan) if runner is not None else None)
    except UserError as err:
        log.error("%s", err)
        world.Abort(2)
        return 2
    except Exception:
        log.exception("rank %d failed (an internal error: a bug, not a mistake in the study; please report it); aborting the job", rank)
        world.Abort(1)
        return 1
    finally:
        restore()
    failed = failures_agreed(roles.comm)
    if failed:
        _exit_without_finalize(code, failed, rank)
    return code


def _exit_without_finalize(code: int, failed: int, rank: int) -> NoReturn:
    """End a surviving rank without ``MPI_Finalize`` once every survivor is done (``failures_agreed``).

    After a process failure under ULFM, Open MPI's finalize can wait forever for the failed process
    (open-mpi/ompi#11404; about one job in ten here ended that way), although all the work is done.
    """
    if rank == 0:
        log.info("%d process(es) of the job failed: the surviving ranks end without MPI_Finalize", failed)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _serve(study: Study, roles: Roles, plan: SimulationPlan, folder: Path, stop: StopFlag) -> int:
    from .parallel import init_data_parallel

    index = roles.rank
    device = choose_device(study.device, roles.node_index)
    surrogate = _surrogate(study, plan)
    n = study.simulate.trajectories
    parts = Parts(
        study=study, roles=roles, plan=plan, design=plan.design(n), surrogate=surrogate, device=device,
        group=init_data_parallel(roles, device) if study.online.gradient_coding.scheme == "none" else None,  # coded: MPI only
        buffer=make_buffer(study.buffer.kind, study.buffer.capacity, surrogate.record_size, watermark=study.watermark,
                           seed=[study.seed, index]),
        scheduler=Scheduler(roles.simulations_of(index, n), study.online.max_retries),
        link=ServerLink(roles.comm, int(np.prod(plan.frame_shape)) * 4, len(plan.names)),
        checkpoints=Checkpoints(folder, index, roles.servers, study.digest(), roles.server_comm.Barrier),
        monitor=Monitor(folder, index), folder=folder,
        validation=held_out(study, plan, surrogate) if index == 0 else None,
    )
    return Server(parts, stop).run()
