"""``pdesolve compare FILE --solvers pinn,lpinn,hc``: the same problem through several back-ends, one table, one figure.

Each back-end is configured exactly as ``pdesolve solve FILE --solver NAME`` configures it (the same file, ``--set``,
``--steps``, ``--seed``, ``--device``: :func:`pdesolve.commands.common.command_config`, refusals included) and run
by the same runner into ``<compare folder>/<solver>/``. A back-end that is refused is reported with its reason and
skipped; one that fails while training is reported as failed, and the others still run. The compare folder
(``runs/<problem>-compare-<time>/`` by default) then holds ``compare.json``, ``compare.md`` and ``compare_<field>.png``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from .. import runner
from ..compare import FAILED, REFUSED, Entry, markdown_table, plot_comparison, write_comparison
from ..config import ConfigError, read_yaml
from ..errors import UserError
from ..solution import Solution
from .common import command_config, set_threads

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="problem file (YAML), e.g. problems/heat.yaml")
    p.add_argument("--solvers", required=True, help="back-ends to compare, comma-separated, e.g. pinn,lpinn,hc")
    p.add_argument("--steps", type=int, help="training steps for every back-end (default: each back-end's train.steps)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the file for every back-end, e.g. --set train.seed=1 (repeatable)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="where to train (default: the file's, else auto)")
    p.add_argument("--seed", type=int, help="one seed for everything (default: the file's)")
    p.add_argument("--out", help="compare folder (default: runs/<problem>-compare-<time>)")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is best on a shared machine)")
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress")


def solver_names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UserError(f"--solvers: expected back-end names separated by commas, e.g. pinn,hc; got {text!r}")
    twice = sorted({s for s in names if names.count(s) > 1})
    if twice:
        raise UserError(f"--solvers: {', '.join(twice)} named more than once")
    return names


def compare_folder(args: argparse.Namespace, problem: str) -> Path:
    if args.out is None:
        return runner.free_folder(Path("runs") / f"{problem}-compare-{time.strftime('%Y%m%d-%H%M%S')}")
    folder = Path(args.out)
    if folder.is_file() or (folder.exists() and any(folder.iterdir())):
        raise UserError(f"{folder} already holds files; choose another --out")
    return folder


def run(args: argparse.Namespace) -> int:
    quiet = getattr(args, "quiet", False)
    names = solver_names(args.solvers)
    set_threads(args)
    problem = str(read_yaml(args.file).get("name", Path(args.file).stem))
    folder = compare_folder(args, problem)
    entries: list[Entry] = []
    solutions: dict[str, Solution] = {}
    reference = None
    for i, name in enumerate(names, 1):
        log.info("[%d/%d] %s", i, len(names), name)
        one = argparse.Namespace(**{**vars(args), "solver": name, "resume": None, "overwrite": False, "threads": None})
        try:
            cfg = command_config(one)
            if runner.is_grid_solver(cfg.solver):
                raise UserError(f"solver {name!r} is a grid solver, scored on rollouts of trajectories rather than on the "
                                "problem's evaluation grid; compare it with `pdesolve train` runs")
            result = runner.run(cfg, folder / name, quiet=quiet)  # refuses what validate refuses before any file exists
        except UserError as err:
            reason = "; ".join(err.errors) if isinstance(err, ConfigError) else str(err)
            outcome = FAILED if (folder / name).exists() else REFUSED  # a refusal leaves no run folder
            log.warning("%s: %s: %s", name, outcome, reason)
            entries.append(Entry(name, outcome, reason=reason, run_dir=str(folder / name) if outcome == FAILED else None))
            continue
        except Exception as err:  # noqa: BLE001 - one back-end that breaks must not lose the others' results
            log.warning("%s: failed: %s: %s", name, type(err).__name__, err)
            entries.append(Entry(name, FAILED, reason=f"{type(err).__name__}: {err}", run_dir=str(folder / name)))
            continue
        entries.append(Entry.of_run(name, result.metrics, result.run_dir))
        solutions[name] = result.solution
        reference = result.reference if reference is None else reference
    folder.mkdir(parents=True, exist_ok=True)
    write_comparison(folder, problem, str(args.file), entries, {"steps": args.steps, "overrides": list(args.overrides)})
    for c, field in enumerate(next(iter(solutions.values())).fields if solutions else ()):
        try:
            plot_comparison(folder / f"compare_{field}.png", solutions, reference, c)
        except Exception as err:  # noqa: BLE001 - the table is on disk; a broken figure must not lose it
            log.warning("figure compare_%s.png not written: %s: %s", field, type(err).__name__, err)
    print(markdown_table(problem, entries), end="")
    print(f"results in {folder}")
    if solutions:
        return 0
    return 2 if all(e.outcome == REFUSED for e in entries) else 1
