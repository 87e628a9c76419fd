"""``pdesolve validate FILE...``: every error of every file at once, before a long run.

A problem file is checked as ``pdesolve solve`` (with ``--solver`` and ``--set`` as given) would check it before
training (:mod:`pdesolve.preflight`): what validate accepts starts training. A file with a top-level ``online:``
section is an online-training study (``python -m online_training STUDY.yaml``, docs/online_training.md) and is
checked by the online trainer's own loader.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..config import ConfigError, read_yaml, validate_file
from ..errors import UserError

STUDY_SECTION = "online"  # the top-level section that makes a file an online-training study (online_training/study.py)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="problem files or online-training studies (YAML)")
    p.add_argument("--solver", help="check the problem files for this back-end (default: each file's `solver`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of each file before checking it, as solve does (repeatable)")


def file_errors(path: str, solver: str | None = None, overrides: Sequence[str] = ()) -> tuple[str, list[str]]:
    """What the file is (``problem`` or ``study``) and its errors."""
    try:
        data = read_yaml(path)
    except ConfigError as err:
        return "problem", err.errors
    except UserError as err:
        return "problem", [str(err)]
    if STUDY_SECTION not in data:
        return "problem", validate_file(path, solver, overrides)
    if solver is not None:
        return "study", [f"--solver {solver}: {path} is an online-training study (it has an online: section), whose surrogate is "
                         "set by its surrogate: section; validate it without --solver"]
    from online_training.study import load_study  # the online trainer's own checks (it builds on pdesolve)

    try:
        load_study(path, list(overrides))
    except ConfigError as err:
        return "study", err.errors
    except UserError as err:
        return "study", [str(err)]
    return "study", []


def run(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        kind, errors = file_errors(path, args.solver, args.overrides)
        if errors:
            bad += 1
            print(f"{path}: {len(errors)} error(s)")
            for e in errors:
                print(f"  - {e}")
        else:
            print(f"{path}: ok" + (" (online-training study)" if kind == "study" else ""))
    return 2 if bad else 0
