"""A corpus of broken files thrown at every command: each one is refused with exit status 2 and a message, never a
traceback (exit 1 is kept for bugs). Also: two writers of one dataset, duplicates seen by `data describe`, refused
expressions, non-finite data named as such."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from pdesolve.cli import main
from pdesolve.config import validate_file
from pdesolve.simulate.dataset import _append, writer_lock

ROOT = Path(__file__).resolve().parents[1]
HEAT = ROOT / "problems" / "heat.yaml"
RING = {"name": "ring", "equation": "heat", "params": {"nu": 0.05},
        "domain": {"x": {"bounds": [0, 1], "periodic": True}, "t": [0, 0.1]}, "initial": {"u": "sin(2*pi*x)"},
        "simulate": {"trajectories": 4, "resolution": 16, "steps": 4, "initial": {"kind": "grf", "length_scale": 0.2}},
        "solvers": {"sinenet": {"width": 4, "waves": 1, "channel_mults": [1], "history": 1, "split": [0.5, 0.25, 0.25]}},
        "train": {"steps": 2}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpus")
    ring = d / "ring.yaml"
    ring.write_text(yaml.safe_dump(RING))
    good = d / "good.h5"
    assert main(["-q", "simulate", str(ring), "--out", str(good)]) == 0
    run = d / "run"
    assert main(["-q", "train", str(ring), "--data", str(good), "--out", str(run), "--threads", "1"]) == 0
    files = {"ring": ring, "good_h5": good, "run": run}
    files["binary_yaml"] = d / "binary.yaml"
    files["binary_yaml"].write_bytes(bytes(range(256)) * 4)
    files["dir_yaml"] = d / "folder.yaml"
    files["dir_yaml"].mkdir()
    files["list_yaml"] = d / "list.yaml"
    files["list_yaml"].write_text("- a\n- b\n")
    files["bad_yaml"] = d / "bad.yaml"
    files["bad_yaml"].write_text("name: [unclosed\n")
    files["random_h5"] = d / "random.h5"
    files["random_h5"].write_bytes(np.random.default_rng(0).bytes(5000))
    files["foreign_h5"] = d / "foreign.h5"
    with h5py.File(files["foreign_h5"], "w") as f:
        f["something"] = np.zeros(3)
    files["truncated_h5"] = d / "truncated.h5"
    files["truncated_h5"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["nan_h5"] = d / "nan.h5"
    shutil.copy(good, files["nan_h5"])
    with h5py.File(files["nan_h5"], "a") as f:
        f["u"][1, 2, 0, 3] = np.nan
    for name, damage in (("run_bad_ckpt", "checkpoint.pt"), ("run_bad_solution", "solution.h5"), ("run_bad_history", "history.csv"),
                         ("run_bad_config", "config.yaml")):
        files[name] = target = d / name
        shutil.copytree(run, target)
        (target / damage).write_bytes(b"\x00garbage\xff" * 10)
    files["run_no_config"] = d / "run_no_config"
    shutil.copytree(run, files["run_no_config"])
    (files["run_no_config"] / "config.yaml").unlink()
    return files


CASES = [
    ("validate", ["validate", "{binary_yaml}"]),
    ("validate dir", ["validate", "{dir_yaml}"]),
    ("solve binary", ["solve", "{binary_yaml}"]),
    ("solve dir", ["solve", "{dir_yaml}"]),
    ("solve list", ["solve", "{list_yaml}"]),
    ("solve bad yaml", ["solve", "{bad_yaml}"]),
    ("simulate binary", ["simulate", "{binary_yaml}", "--out", "{tmp}/x.h5"]),
    ("simulate into a folder", ["simulate", "{ring}", "--overwrite", "--out", "{tmp}"]),
    ("describe random", ["data", "describe", "{random_h5}"]),
    ("describe foreign", ["data", "describe", "{foreign_h5}"]),
    ("describe truncated", ["data", "describe", "{truncated_h5}"]),
    ("train on random", ["train", "{ring}", "--data", "{random_h5}", "--out", "{tmp}/r1"]),
    ("train on foreign", ["train", "{ring}", "--data", "{foreign_h5}", "--out", "{tmp}/r2"]),
    ("train on truncated", ["train", "{ring}", "--data", "{truncated_h5}", "--out", "{tmp}/r3"]),
    ("train on NaN data", ["train", "{ring}", "--data", "{nan_h5}", "--out", "{tmp}/r4", "--set", "solvers.sinenet.split=[0.5, 0, 0.5]"]),
    ("evaluate bad checkpoint", ["evaluate", "{run_bad_ckpt}"]),
    ("evaluate no config", ["evaluate", "{run_no_config}"]),
    ("evaluate bad config", ["evaluate", "{run_bad_config}"]),
    ("plot bad solution", ["plot", "{run_bad_solution}"]),
    ("plot bad history", ["plot", "{run_bad_history}"]),
    ("rollout bad checkpoint", ["rollout", "{run_bad_ckpt}", "--data", "{good_h5}"]),
    ("rollout on random", ["rollout", "{run}", "--data", "{random_h5}"]),
    ("resume bad checkpoint", ["train", "{ring}", "--data", "{good_h5}", "--resume", "{run_bad_ckpt}"]),
    ("out is a file", ["solve", str(HEAT), "--out", "{ring}", "--steps", "1"]),
    ("evaluate a grid run", ["evaluate", "{run}"]),
]


@pytest.mark.parametrize("name, argv", CASES, ids=[c[0] for c in CASES])
def test_a_broken_input_is_a_message_and_exit_2(name, argv, corpus, tmp_path, capsys):
    args = [a.format(tmp=tmp_path, **{k: str(v) for k, v in corpus.items()}) for a in argv]
    code = main(["-q", *args])
    out, err = capsys.readouterr()
    assert code == 2, (name, code, err[-2000:])
    assert "Traceback" not in out + err
    assert err.startswith("error: ") or (args[0] == "validate" and "error" in out), (out[-500:], err[-500:])


def test_the_nan_and_the_duplicates_are_named(corpus, tmp_path, capsys):
    assert main(["-q", "train", str(corpus["ring"]), "--data", str(corpus["nan_h5"]), "--out", str(tmp_path / "r"),
                 "--set", "solvers.sinenet.split=[0.5, 0, 0.5]"]) == 2
    assert "holds non-finite values (NaN or inf): the data, not the training, is at fault" in capsys.readouterr().err
    dup = tmp_path / "dup.h5"
    shutil.copy(corpus["good_h5"], dup)
    with h5py.File(dup, "r") as f:
        again = f["u"][:2]
    _append(dup, again, {}, complete=True)  # what a second writer appending the same trajectories leaves
    assert main(["data", "describe", str(dup)]) == 0
    out = capsys.readouterr().out
    assert "count: 6 of 4, PROBLEM" in out and "duplicates: PROBLEM: 2 trajectories repeat earlier ones" in out


def test_a_second_writer_is_refused_while_the_first_writes(corpus, tmp_path, capsys):
    out = tmp_path / "one.h5"
    with writer_lock(out):  # the first writer, still running
        assert main(["-q", "simulate", str(corpus["ring"]), "--out", str(out)]) == 2
    assert "is being written by another process" in capsys.readouterr().err
    assert main(["-q", "simulate", str(corpus["ring"]), "--out", str(out)]) == 0  # released: the next writer goes on


@pytest.mark.parametrize("value, message", [("9**9**9", "overflows"), ("1/0", "divides by zero"), ("10**400", "overflows"),
                                            ("-" * 1999 + "1", "nested too deeply"), ("log(0)", "not a finite number")])
def test_constants_that_overflow_divide_by_zero_or_nest_too_deep_are_refused_at_validate(tmp_path, value, message):
    data = yaml.safe_load(HEAT.read_text())
    data["params"] = {"nu": value}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    errors = validate_file(path)
    assert errors and message in errors[0], errors


def test_an_initial_state_that_is_not_finite_on_the_domain_is_refused_at_validate(tmp_path):
    data = yaml.safe_load(HEAT.read_text())
    data["initial"] = {"u": "1/x"}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    assert validate_file(path) == ["initial.u: '1/x' is not finite at {'x': 0.0} (got inf) on the domain"]


def test_quiet_after_the_subcommand_is_accepted(corpus, tmp_path):
    assert main(["simulate", str(corpus["ring"]), "--out", str(tmp_path / "q.h5"), "-q"]) == 0
