"""`pdesolve compare`: one problem through several back-ends, a refused one reported and skipped, one table and one figure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from pdesolve.cli import main
from pdesolve.compare import REFUSED, TRAINED, Entry, markdown_table

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def test_compare_writes_one_table_and_one_figure_and_reports_the_refused_back_end(capsys, tmp_path):
    out = tmp_path / "cmp"
    code = main(["-q", "compare", str(ROOT / "problems" / "heat.yaml"), "--solvers", "pinn,lpinn,hc", "--steps", "3",
                 "--threads", "1", "--out", str(out), "--set", "evaluate.grid.t=11", "--set", "evaluate.grid.x=17",
                 "--set", "solvers.pinn.points.interior=100"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Traceback" not in printed.out + printed.err
    table = json.loads((out / "compare.json").read_text())
    entries = {e["solver"]: e for e in table["entries"]}
    assert [e["solver"] for e in table["entries"]] == ["pinn", "lpinn", "hc"] and table["steps"] == 3
    for name in ("pinn", "hc"):
        e = entries[name]
        assert e["outcome"] == TRAINED and e["steps"] == 3 and e["status"] == "budget"
        assert math.isfinite(e["rel_l2"]) and 0 < e["rel_l2"] and math.isfinite(e["wall_time_s"]) and e["parameters"] > 0
        run = json.loads((out / name / "metrics.json").read_text())  # each back-end's own run folder, as solve writes it
        assert run["rel_l2"] == e["rel_l2"] and run["solver"] == name
    assert entries["pinn"]["parameters"] == 2 * 20 + 20 + 2 * (20 * 20 + 20) + 20 + 1  # width 20, depth 3, inputs (t, x)
    lpinn = entries["lpinn"]
    assert lpinn["outcome"] == REFUSED and "no transport term" in lpinn["reason"] and not (out / "lpinn").exists()
    markdown = (out / "compare.md").read_text()
    assert "| pinn |" in markdown and "| lpinn | - |" in markdown and "lpinn (refused): solver: 'lpinn' cannot solve" in markdown
    assert markdown in printed.out
    assert (out / "compare_u.png").stat().st_size > 10_000


def test_compare_refuses_everything_with_exit_2(capsys, tmp_path):
    code = main(["-q", "compare", str(ROOT / "problems" / "kdv.yaml"), "--solvers", "lpinn, hc", "--out", str(tmp_path / "c")])
    printed = capsys.readouterr()
    assert code == 2 and "order 3" in printed.out and "Traceback" not in printed.err
    assert [e["outcome"] for e in json.loads((tmp_path / "c" / "compare.json").read_text())["entries"]] == [REFUSED, REFUSED]


def test_compare_names_bad_solver_lists(capsys, tmp_path):
    for solvers, says in (("pinn,pinn", "pinn named more than once"), (" , ", "expected back-end names")):
        assert main(["compare", "problems/heat.yaml", "--solvers", solvers, "--out", str(tmp_path / "x")]) == 2
        assert says in capsys.readouterr().err


def test_the_table_lists_each_reason():
    text = markdown_table("p", [Entry("pinn", TRAINED, "budget", 1e-2, 2e-2, 1.5, 10, 100), Entry("hc", REFUSED, reason="why")])
    assert "| pinn | 1.000e-02 | 2.000e-02 | 1.5 | 10 | 100 | budget |" in text and "- hc (refused): why" in text
