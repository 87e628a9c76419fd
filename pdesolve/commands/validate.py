"""``pdesolve validate FILE...``: every error of every file at once, before a long run."""

from __future__ import annotations

import argparse

from ..config import validate_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="problem files (YAML)")


def run(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        errors = validate_file(path)
        if errors:
            bad += 1
            print(f"{path}: {len(errors)} error(s)")
            for e in errors:
                print(f"  - {e}")
        else:
            print(f"{path}: ok")
    return 2 if bad else 0
