"""Run figures: edge cases of the data (NaN, exact zeros) and a broken figure never lose a run."""

import logging
import warnings

import numpy as np
import pytest

from pdesolve.plot import plot_history, plot_residual
from pdesolve.problem import Axis, Domain
from pdesolve.runner import write_figures
from pdesolve.solution import Solution

GRID = Domain((Axis("x", 0.0, 1.0),), (0.0, 1.0)).grid({"t": 5, "x": 8})
PNG = b"\x89PNG\r\n\x1a\n"


def test_residual_map_with_blank_cells_or_exact_zeros_plots_without_warnings(tmp_path):
    blank = np.zeros((1, 5, 8))
    blank[0, :2] = np.nan  # no data there (e.g. outside the reach of LPINN's labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_residual(tmp_path / "a.png", GRID, blank)
        plot_residual(tmp_path / "b.png", GRID, np.full((1, 5, 8), np.nan))
        plot_history(tmp_path / "c.png", [{"step": 0, "loss": 1.0, "exact": 0.0}, {"step": 1, "loss": 0.5, "exact": 0.0}])
    assert all((tmp_path / n).read_bytes()[:8] == PNG for n in ("a.png", "b.png", "c.png"))


def test_a_failing_figure_is_logged_and_the_others_are_written(tmp_path, caplog):
    def broken(path):
        raise RuntimeError("no such colormap")

    sol = Solution(GRID, ("u",), np.zeros((1, 5, 1, 8)))
    with caplog.at_level(logging.WARNING, logger="pdesolve.runner"):
        paths = write_figures(tmp_path, sol, None, [{"step": 0, "loss": 1.0}], {"figures": {"broken": broken}})
    assert [p.name for p in paths] == ["fields_u.png", "slices.png", "history.png"]
    assert "broken.png" in caplog.text and "no such colormap" in caplog.text
    assert not (tmp_path / "broken.png").exists()


def test_history_figure_draws_the_training_methods_panel(tmp_path, monkeypatch):
    import pdesolve.plot as plot

    panels = []
    figure = plot._figure
    monkeypatch.setattr(plot, "_figure", lambda ncols, **kw: (panels.append(ncols), figure(ncols, **kw))[1])
    rows = [{"step": float(s), "residual": 1.0 / (s + 1), "loss": 1.0 / (s + 1), "causal_eps": 1.0, "causal_min_weight": 0.5 + s / 20,
             "weight_residual": 1.0 + s, "time": 0.1 * s} for s in range(10)]
    plot.plot_history(tmp_path / "methods.png", rows)
    plot.plot_history(tmp_path / "plain.png", [{k: v for k, v in r.items() if not k.startswith(plot.METHOD_COLUMNS)} for r in rows])
    assert panels == [3, 2]  # a third panel only where a training method left a record
    assert (tmp_path / "methods.png").stat().st_size > 0


def test_the_causal_weights_of_every_chunk_are_drawn_over_the_steps(tmp_path, monkeypatch):
    """Per-chunk weights (``causal_w_00``, ...) make a map of their own (``causal_weights.png``), not one line each in
    the training methods panel of ``history.png``."""
    import pdesolve.plot as plot

    drawn = []
    monkeypatch.setattr(plot, "save_figure", lambda plt, fig, path: (drawn.append((path.name, fig)), plt.close(fig)))
    rows = [{"step": float(s), "loss": 1.0 / (s + 1), "causal_eps": 1.0, "causal_min_weight": 0.1,
             **{f"causal_w_{i:02d}": float(np.exp(-i / (s + 1))) for i in range(6)}} for s in range(8)]
    assert plot.causal_chunks(rows) == [f"causal_w_{i:02d}" for i in range(6)]
    plot.plot_history(tmp_path / "history.png", rows)
    plot.plot_causal_weights(tmp_path / "causal_weights.png", rows)
    (_, history), (_, causal) = drawn
    assert sorted(line.get_label() for line in history.axes[2].get_lines()) == ["causal_eps", "causal_min_weight"]
    image = causal.axes[0].collections[0].get_array()  # the map: one row per chunk, one column per step
    assert np.asarray(image).reshape(6, 8)[5, 0] == pytest.approx(np.exp(-5.0))
