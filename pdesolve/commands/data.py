"""``pdesolve data describe FILE...``: layout, shapes, coordinates and attributes of trajectory files."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    d = sub.add_parser("describe", help="print the layout, shapes, coordinates and attributes of HDF5 trajectory files")
    d.add_argument("files", nargs="+", help="HDF5 files (pdesolve, PDEBench tensor or PDEBench per-seed layouts)")


def run(args: argparse.Namespace) -> int:
    from ..data import describe

    if args.action != "describe":
        print("usage: pdesolve data describe FILE...")
        return 2
    for i, path in enumerate(args.files):
        if i:
            print()
        print(describe(path))
    return 0
