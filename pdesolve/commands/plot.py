"""``pdesolve plot RUN_DIR``: redraw a run's figures from its solution.h5 and history.csv."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UserError
from ..runner import load_run, read_history, read_solution, write_figures


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder written by `pdesolve solve`")


def run(args: argparse.Namespace) -> int:
    folder = Path(args.run_dir)
    if not (folder / "solution.h5").exists():
        raise UserError(f"{folder}: no solution.h5 (is it a finished run folder?)")
    solution, ref, diagnostics = read_solution(folder / "solution.h5")
    metrics = folder / "metrics.json"
    if metrics.exists():  # an inverse run's recovered coefficients (their figure, parameters.png)
        try:
            recovered = json.loads(metrics.read_text()).get("recovered")
        except (ValueError, AttributeError):
            recovered = None
        if isinstance(recovered, dict):
            diagnostics["recovered"] = recovered
    try:  # the problem's region, so that the fields are drawn on its shape
        geometry = load_run(folder).problem.domain.geometry
    except UserError:  # no readable config.yaml (an equation defined in Python): the plain figures
        geometry = None
    for p in write_figures(folder, solution, ref, read_history(folder / "history.csv"), diagnostics, geometry):
        print(p)
    return 0
