"""``pdesolve evaluate RUN_DIR``: recompute a run's prediction and metrics from its checkpoint."""

from __future__ import annotations

import argparse
import json

from ..runner import evaluate_run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder written by `pdesolve solve`")


def run(args: argparse.Namespace) -> int:
    metrics = evaluate_run(args.run_dir)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0
