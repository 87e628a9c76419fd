"""The ``pdesolve`` command: sub-commands live in ``pdesolve.commands.*`` and are imported on use."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
import warnings

from . import __version__
from .console import log_to_stderr
from .errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "solve": ("pdesolve.commands.solve", "solve a problem file with a back-end and write a run folder"),
    "validate": ("pdesolve.commands.validate", "check problem files and report every error at once"),
    "compare": ("pdesolve.commands.compare", "solve one problem with several back-ends: one table, one figure"),
    "list": ("pdesolve.commands.listing", "list shipped problems, solvers, optimizers and equations"),
    "evaluate": ("pdesolve.commands.evaluate", "recompute the metrics of a run folder"),
    "plot": ("pdesolve.commands.plot", "redraw the figures of a run folder"),
    "simulate": ("pdesolve.commands.simulate", "run the reference simulator and write an HDF5 dataset"),
    "data": ("pdesolve.commands.data", "inspect datasets (pdesolve data describe FILE)"),
    "train": ("pdesolve.commands.train", "train a grid solver on a dataset"),
    "rollout": ("pdesolve.commands.rollout", "roll a trained grid solver out on a test dataset"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdesolve", description="Physics-informed PDE solvers on one problem abstraction.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--version", action="version", version=f"pdesolve {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            p.set_defaults(_missing=module)
        p.set_defaults(_module=module)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
                  line: str | None = None) -> None:
    """A warning on the command line is a note for the user (what pdesolve chose for them), not a source location."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; warnings show as notes only while it runs (a caller's own warning display is restored)."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(f"pdesolve {args.command}: not available in this version", file=sys.stderr)
        return 2
    log_to_stderr(logging.WARNING if args.quiet else logging.INFO)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`pdesolve data describe f.h5 | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        traceback.print_exc()
        print("internal error: this is a bug in pdesolve, not a mistake in your input; please report it with the command "
              "and the files it read", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
