"""The training rules on the online study's surrogate: offline mode for every rule that applies, a local rule
streamed under ``mpiexec -n 3``, and the refusal of a rule whose needs the surrogate task does not provide."""

from __future__ import annotations

import json

import pytest
from test_online_mpi import mpiexec, needs_mpiexec, rows, study_file
from test_online_study import write_study

from online_training.entry import main

RULES = {  # rule -> (its options, the surrogate it trains)
    "auglocal": ({"lr": 3e-3, "stages": 2}, "mlp"),
    "man": ({"lr": 3e-3, "stages": 2}, "mlp"),
    "forward_only": ({"lr": 3e-3}, "mlp"),
    "counter_current": ({"lr": 1e-2}, "mlp"),
    "target_projection": ({"lr": 3e-3}, "mlp"),
    "synthetic_gradients": ({"lr": 3e-3}, "mlp"),
    "noprop": ({"lr": 3e-3}, "noprop"),
}


def validation_errors(run) -> list[float]:
    return [float(r["val_rel_l2"]) for r in rows(run / "validation.csv")]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_trains_the_online_surrogate_offline(tmp_path, rule):
    options, kind = RULES[rule]
    surrogate = {"kind": kind, "width": 64, "depth": 2, **({"blocks": 4} if kind == "noprop" else {})}
    study = write_study(tmp_path, surrogate=surrogate,
                        train={"steps": 150, "validate_every": 50, "optimizer": {"name": rule, **options}})
    run = tmp_path / "run"
    assert main([str(study), "--offline", "--out", str(run), "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "budget" and summary["steps"] == 150, summary
    val = validation_errors(run)
    assert val[-1] < 0.8 * val[0], val  # the held-out error falls
    assert (run / "model.pt").stat().st_size > 0


def test_a_rule_the_surrogate_cannot_serve_is_refused_before_training(tmp_path, capsys):
    study = write_study(tmp_path, train={"steps": 10, "optimizer": {"name": "bptt"}})
    assert main([str(study), "--offline", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training rule 'bptt' needs rollout" in err and "online surrogate 'mlp'" in err, err


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("rule", ["auglocal", "noprop", "synthetic_gradients"])
def test_rules_train_online_under_mpiexec(tmp_path, rule):
    """One server and two clients streaming: the rule trains the surrogate for a few steps and the job ends cleanly.

    One rule of each kind of state (auxiliary networks, its own surrogate kind, synthesizers): the server trains the
    same task class offline and online, and every rule runs offline above; scripts/bench_rules_online.py runs every
    rule online (docs/benchmarks.md)."""
    options, kind = RULES[rule]
    surrogate = {"kind": kind, "width": 64, "depth": 2, **({"blocks": 4} if kind == "noprop" else {})}
    study = study_file(tmp_path, online={"servers": 1, "window": 4, "max_retries": 1, "audit": False}, surrogate=surrogate,
                       buffer={"kind": "reservoir", "capacity": 400, "watermark": 16},
                       train={"steps": 40, "batch_size": 8, "log_every": 20, "validate_every": 20, "checkpoint_every": 0,
                              "optimizer": {"name": rule, **options}})
    run = tmp_path / "run"
    code, out = mpiexec(3, ["-m", "online_training", str(study), "--out", str(run), "--quiet"], 300, cwd=tmp_path)
    assert code == 0, out[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 40, summary
    val = validation_errors(run)
    assert len(val) >= 2 and val[-1] < val[0], val
