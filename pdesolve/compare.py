"""One problem through several back-ends: the table (error, wall time, steps, parameters) and the side-by-side figure.

``pdesolve compare FILE --solvers pinn,lpinn,hc`` (:mod:`pdesolve.commands.compare`) runs each back-end with the
ordinary runner into its own run folder inside one compare folder; this module holds what it writes from their
results: ``compare.json`` (every entry, refused and failed ones with their reason), ``compare.md`` (the table) and
``compare_<field>.png`` (per back-end its solution and its error against the reference, beside the reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import write_json, write_text
from .plot import _panel, save_figure
from .solution import Solution

TRAINED, REFUSED, FAILED = "trained", "refused", "failed"


@dataclass(frozen=True)
class Entry:
    """One back-end's line: ``outcome`` is trained, refused (before training: ``reason`` says why) or failed (an error
    during the run: ``reason``); ``status`` is the run's end (budget, converged, diverged, ...)."""

    solver: str
    outcome: str
    status: str = ""
    rel_l2: float | None = None
    max_error: float | None = None
    wall_time_s: float | None = None
    steps: int | None = None
    parameters: int | None = None
    run_dir: str | None = None
    reason: str = ""

    @classmethod
    def of_run(cls, solver: str, metrics: Mapping[str, Any], run_dir: Path | None) -> Entry:
        """The line of a run that trained, from its ``metrics.json`` values."""
        def number(key: str) -> float | None:
            value = metrics.get(key)
            return None if value is None else float(value)

        return cls(solver, TRAINED, str(metrics.get("status", "")), number("rel_l2"), number("max_error"), number("wall_time_s"),
                   int(metrics["steps"]) if "steps" in metrics else None,
                   int(metrics["parameters"]) if "parameters" in metrics else None, None if run_dir is None else str(run_dir))


def _cell(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(problem: str, entries: Sequence[Entry]) -> str:
    """The comparison as a Markdown table, refused and failed back-ends listed below it with their reasons."""
    lines = [f"# {problem}: back-ends compared", "",
             "| solver | relative L2 | max error | wall time (s) | steps | parameters | status |",
             "|---|---|---|---|---|---|---|"]
    for e in entries:
        if e.outcome == TRAINED:
            lines.append(f"| {e.solver} | {_cell(e.rel_l2, '.3e')} | {_cell(e.max_error, '.3e')} | {_cell(e.wall_time_s, '.1f')} | "
                         f"{_cell(e.steps, 'd')} | {_cell(e.parameters, 'd')} | {e.status} |")
        else:
            lines.append(f"| {e.solver} | - | - | - | - | - | {e.outcome} |")
    others = [e for e in entries if e.outcome != TRAINED]
    if others:
        lines += ["", "Not trained:", ""] + [f"- {e.solver} ({e.outcome}): {e.reason}" for e in others]
    return "\n".join(lines) + "\n"


def write_comparison(folder: Path, problem: str, source: str, entries: Sequence[Entry], settings: Mapping[str, Any]) -> None:
    """``compare.json`` and ``compare.md`` in ``folder`` (atomically)."""
    write_json(folder / "compare.json", {"problem": problem, "file": source, **settings, "entries": [asdict(e) for e in entries]})
    write_text(folder / "compare.md", markdown_table(problem, entries))


def plot_comparison(path: Path, solutions: Mapping[str, Solution], reference: np.ndarray | None, channel: int = 0) -> None:
    """Per back-end its solution (top) and its absolute error against the reference (bottom), the reference first.

    ``solutions``: back-end -> its solution on the evaluation grid (``[batch, time, channel, *space]``; a parametric
    family's first held-out member is shown); ``reference``: the same layout, or None (then no error row).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    first = next(iter(solutions.values()))
    grid, field = first.grid, first.fields[channel]
    lead = 1 if grid.time is not None else 0
    ref = None if reference is None else np.take(reference[0], channel, axis=lead)
    columns = len(solutions) + (ref is not None)
    rows = 2 if ref is not None else 1
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    col = 0
    if ref is not None:
        _panel(axes[0][0], grid, ref, f"reference {field}")
        axes[1][0].axis("off")
        col = 1
    for name, sol in solutions.items():
        pred = np.take(sol.numpy()[0], channel, axis=lead)
        _panel(axes[0][col], grid, pred, f"{name}: {field}")
        if ref is not None:
            err = np.abs(pred - ref)
            rel = float(np.linalg.norm(pred - ref) / max(np.linalg.norm(ref), 1e-300))
            _panel(axes[1][col], grid, err, f"{name}: |error| (rel. L2 {rel:.2e})", cmap="magma", symmetric=False)
        col += 1
    save_figure(plt, fig, path)
