"""Gradient coding (online_training/gradient_coding.py): the code decodes the full gradient from every set of
n - s responders, exactly (float64) and to float32 round-off; rotated rows (the sequential scheme) too; the
study refuses what cannot work. The MPI exchange is tested under mpiexec in tests/test_gradient_coding_mpi.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from online_training.gradient_coding import (
    DelaySpec,
    cyclic_code,
    decoding_vector,
    responder_sets,
    row_of,
    support,
)
from online_training.study import load_study
from pdesolve.config import ConfigError

CASES = [(2, 1), (3, 1), (3, 2), (4, 1), (4, 2), (5, 2), (6, 3), (8, 3)]


@pytest.mark.parametrize("n,s", CASES)
def test_code_rows_are_cyclic_and_decode_from_every_responder_set(n, s):
    b = cyclic_code(n, s, seed=1)
    for i in range(n):  # row i touches partitions i, ..., i + s only: each server computes s + 1 batches
        assert set(np.flatnonzero(b[i])) <= set(support(n, s, i))
    rng = np.random.default_rng(0)
    g = rng.standard_normal((n, 50))  # one gradient per partition
    full = g.sum(axis=0)
    coded = b @ g  # what each server sends
    sets = list(responder_sets(n, s))
    assert len(sets) == len(list(itertools.combinations(range(n), n - s)))
    for f in sets:
        a = decoding_vector(b, f)
        assert set(np.flatnonzero(a)) <= set(f)
        np.testing.assert_allclose(a @ b, np.ones(n), atol=1e-10)
        np.testing.assert_allclose(a @ coded, full, rtol=0, atol=1e-9 * np.abs(full).max())
        # float32 coded vectors (as sent): the decoded sum is the full gradient to float32 round-off
        decoded32 = a @ coded.astype(np.float32).astype(np.float64)
        assert np.abs(decoded32 - full).max() <= 2e-5 * np.abs(g).sum(axis=0).max()


@pytest.mark.parametrize("n,s", [(3, 1), (5, 2)])
def test_rotated_rows_of_the_sequential_scheme_decode_every_round(n, s):
    b = cyclic_code(n, s)
    g = np.random.default_rng(1).standard_normal((n, 7))
    for round_ in range(2 * n):
        rows = [row_of(server, round_, n, "sequential") for server in range(n)]
        assert sorted(rows) == list(range(n))  # a permutation: every row is played once per round
        assert rows != [row_of(server, round_ + 1, n, "sequential") for server in range(n)]
        for servers in itertools.combinations(range(n), n - s):
            a = decoding_vector(b, [rows[i] for i in servers])
            sent = {i: b[rows[i]] @ g for i in servers}
            np.testing.assert_allclose(sum(a[rows[i]] * sent[i] for i in servers), g.sum(axis=0), atol=1e-10)
    assert all(row_of(i, 5, n, "cyclic") == i for i in range(n))


def test_too_few_responders_and_bad_parameters_are_refused():
    b = cyclic_code(4, 1)
    with pytest.raises(ValueError, match="cannot decode"):
        decoding_vector(b, [0, 1])  # n - s = 3 needed
    with pytest.raises(ValueError, match="stragglers"):
        cyclic_code(3, 3)
    assert np.array_equal(cyclic_code(3, 0), np.eye(3))  # no redundancy: each server its own batch
    np.testing.assert_allclose(cyclic_code(2, 1), np.ones((2, 2)))  # s = n - 1: every server the full gradient


def test_injected_delay_names_a_server_and_rounds():
    d = DelaySpec(server=1, seconds=0.1, every=3)
    assert [r for r in range(7) if d.applies(1, r)] == [0, 3, 6]
    assert not d.applies(0, 0)


def _study(tmp_path, online: dict, optimizer: str = "adam"):
    import yaml

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    study = {
        "name": "gc", "problem": str(root / "problems" / "heat2d.yaml"),
        "simulate": {"trajectories": 4, "resolution": 16, "steps": 4},
        "online": online, "surrogate": {"kind": "mlp", "width": 8, "depth": 1},
        "buffer": {"capacity": 64}, "train": {"steps": 10, "optimizer": {"name": optimizer}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def test_study_options_and_refusals(tmp_path):
    study = load_study(_study(tmp_path, {"servers": 3, "gradient_coding": {"scheme": "sequential", "stragglers": 2},
                                         "inject_delay": {"server": 2, "seconds": 0.01}}))
    assert study.online.gradient_coding.scheme == "sequential" and study.online.inject_delay.server == 2
    assert load_study(_study(tmp_path, {"servers": 2})).online.gradient_coding.scheme == "none"
    cases = [
        ({"servers": 2, "gradient_coding": {"scheme": "cyclic", "stragglers": 2}}, "adam", "expected fewer than online.servers = 2"),
        ({"servers": 1, "gradient_coding": {"scheme": "cyclic"}}, "adam", "set online.servers >= 2"),
        ({"servers": 2, "gradient_coding": {"scheme": "cyclic"}}, "forward_only", "needs a backprop rule"),
        ({"servers": 2, "inject_delay": {"server": 2, "seconds": 0.1}}, "adam", "online.inject_delay.server"),
        ({"servers": 2, "gradient_coding": {"scheme": "coded"}}, "adam", "online.gradient_coding.scheme"),
        ({"servers": 2, "gradient_coding": {"scheme": "cyclic", "stragglrs": 1}}, "adam", "stragglrs"),
        ({"servers": 2, "inject_delay": {"server": 0, "seconds": 0}}, "adam", "online.inject_delay.seconds"),
    ]
    for online, rule, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_study(_study(tmp_path, online, rule))
