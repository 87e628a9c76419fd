"""The online trainer's parts without MPI: study files, simulation plans, records, wire format, scheduler, offline mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from online_training.entry import main
from online_training.protocol import Kind, message_bytes, pack, unpack
from online_training.scheduler import FAILED, FINISHED, WAITING, Scheduler
from online_training.simulation import TRAIN, VALIDATION, SimulationPlan
from online_training.study import MLPSurrogate, SineNetSurrogate, load_study
from online_training.surrogate import make_surrogate
from pdesolve.config import ConfigError
from pdesolve.data import TrajectoryFile

ROOT = Path(__file__).resolve().parents[1]
HEAT2D = str(ROOT / "problems" / "heat2d.yaml")


def write_study(folder: Path, **changes) -> Path:
    study = {
        "name": "tiny", "problem": HEAT2D,
        "simulate": {"trajectories": 6, "resolution": 16, "steps": 10, "sampler": "lhs"},
        "validation": {"trajectories": 3}, "offline": {"trajectories": 6},
        "surrogate": {"kind": "mlp", "width": 64, "depth": 2},
        "buffer": {"kind": "reservoir", "capacity": 100},
        "train": {"steps": 300, "batch_size": 16, "log_every": 100, "validate_every": 100, "optimizer": {"name": "adam", "lr": 3e-3}},
    }
    for key, value in changes.items():
        merge = isinstance(value, dict) and key != "surrogate"  # a surrogate is replaced whole
        study[key] = {**study.get(key, {}), **value} if merge else value
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


# ------------------------------------------------------------------------------------------ study files
def test_the_shipped_study_loads():
    study = load_study(ROOT / "problems" / "heat2d_online.yaml")
    assert study.problem.name == "heat2d" and study.parameter_names == (
        "boundary.x.hi", "boundary.x.lo", "boundary.y.hi", "boundary.y.lo", "initial.u")
    assert study.simulate.resolution == 32 and study.simulate.steps == 100 and study.simulate.sampler == "lhs"
    assert study.raw["problem"]["name"] == "heat2d"  # the run folder's config.yaml carries the problem inline


def test_schema_errors_name_the_file_and_every_key(tmp_path):
    path = write_study(tmp_path, buffer={"capacty": 10}, surrogate={"kind": "cnn"}, online={"servers": 0})
    with pytest.raises(ConfigError) as err:
        load_study(path)
    text = str(err.value)
    assert str(path) in text
    assert "buffer.capacty: unknown key 'capacty' (did you mean 'capacity'?)" in text
    assert "online.servers: Input should be greater than or equal to 1 (got 0)" in text
    path = write_study(tmp_path, surrogate={"kind": "cnn"})
    with pytest.raises(ConfigError, match=r"surrogate.kind: unknown surrogate 'cnn'; valid surrogates are \['mlp', 'noprop', 'sinenet'\]"):
        load_study(path)
    path = write_study(tmp_path, surrogate={"kind": "sinenet", "depth": 3})
    with pytest.raises(ConfigError, match=r"surrogate.depth: unknown key 'depth' \(did you mean 'width'\?\)"):
        load_study(path)


def test_semantic_errors_are_reported_together(tmp_path):
    path = write_study(
        tmp_path, simulate={"parameters": {"boundary.z.lo": [0, 1]}}, train={"optimizer": {"name": "adamm"}},
        surrogate={"kind": "sinenet", "channel_mults": [1, 2, 2, 2, 2, 2], "width": 4},
    )
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert len(err.value.errors) == 3, err.value.errors
    text = str(err.value)
    assert "simulate.parameters: unknown names ['boundary.z.lo']" in text
    assert "train.optimizer.name: unknown optimizer 'adamm'" in text and "did you mean 'adam'" in text
    assert "simulate.resolution: sinenet with 6 levels needs sizes that are multiples of 32, got [16, 16]" in text


def test_data_parallel_servers_refuse_line_search_rules(tmp_path):
    path = write_study(tmp_path, online={"servers": 2}, train={"optimizer": {"name": "lbfgs"}})
    with pytest.raises(ConfigError, match="desynchronize 2 data-parallel servers"):
        load_study(path)


# -------------------------------------------------------------------------------------- simulations
@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> SimulationPlan:
    study = load_study(write_study(tmp_path_factory.mktemp("plan")))
    return SimulationPlan(study.problem, study.simulate, seed=0)


def test_design_is_a_latin_hypercube_over_the_declared_ranges(plan):
    n = 6
    values = plan.design(n)
    assert values.shape == (n, 5) and np.all((values >= 100) & (values <= 500))
    strata = np.sort(np.floor((values - 100) / 400 * n).astype(int), axis=0)
    np.testing.assert_array_equal(strata, np.tile(np.arange(n)[:, None], (1, 5)))  # one value per stratum
    np.testing.assert_array_equal(values, plan.design(n))  # a function of the seed
    assert not np.allclose(plan.design(n, VALIDATION), values)  # held-out simulations are other ones
    scaled = plan.scaled(values)
    assert np.all(np.abs(scaled) <= 1) and np.allclose(plan.scaled(np.full((1, 5), 300.0)), 0)


def test_segmented_simulation_streams_the_same_trajectory(plan):
    values = plan.design(2)[1]
    whole = np.stack([f for _, f in plan.frames(1, values)])
    steps = [s for s, _ in SimulationPlan(plan.problem, plan.settings, 0, segment_steps=3).frames(1, values)]
    segmented = np.stack([f for _, f in SimulationPlan(plan.problem, plan.settings, 0, segment_steps=3).frames(1, values)])
    assert steps == list(range(11)) and whole.shape == (11, 1, 16, 16)
    # frame 0: the drawn initial temperature inside, the wall temperatures on the walls (every frame holds them)
    assert np.all(whole[0, :, 1:-1, 1:-1] == values[plan.names.index("initial.u")])
    np.testing.assert_allclose(whole[:, 0, 0, 1:-1], values[plan.names.index("boundary.x.lo")])
    # restarting Crank-Nicolson every 3 steps changes the result by far less than the field varies
    assert np.abs(segmented - whole).max() < 2e-3 * np.abs(whole).max()
    # and the batched call of the validation set gives the same trajectory as one streamed simulation
    batched = plan.trajectories(plan.design(2), TRAIN)[1]
    np.testing.assert_allclose(batched, whole.astype(np.float32), rtol=1e-6)
    # heat flows from the hot walls: the field stays within the wall and initial temperatures
    lo, hi = values.min(), values.max()
    assert whole.min() >= lo - 1e-9 and whole.max() <= hi + 1e-9


@pytest.mark.parametrize("kind", ["mlp", "sinenet"])
def test_streamed_records_equal_the_records_of_the_whole_trajectory(plan, kind):
    spec = MLPSurrogate(kind="mlp", width=8, depth=1) if kind == "mlp" else SineNetSurrogate(kind="sinenet", width=4, channel_mults=(1, 2))
    surrogate = make_surrogate(spec, plan.frame_shape, len(plan.names), (False, False))
    values = plan.design(1)[0]
    frames = np.stack([f for _, f in plan.frames(0, values)]).astype(np.float32)
    params, t = plan.scaled(values).astype(np.float32), plan.scaled_times()
    streamed, previous = [], None
    for k, frame in enumerate(frames):
        r = surrogate.record(params, float(t[k]), frame, previous)
        previous = frame
        if r is not None:
            streamed.append(r)
    whole = surrogate.trajectory_records(params, t, frames)
    np.testing.assert_array_equal(np.stack(streamed), whole)
    assert whole.shape == ((11 if kind == "mlp" else 10), surrogate.record_size)
    rec = torch.from_numpy(whole)
    x, y = surrogate.batch(rec)
    assert torch.equal(surrogate.flat(y), surrogate.target(rec))  # targets in physical units
    model = surrogate.build()  # a pdesolve model carrying its normalization: physical units in and out
    surrogate.set_scale(model, torch.tensor([250.0]), torch.tensor([80.0]))
    out = model(x)
    assert out.shape == y.shape and 100 < float(out.detach().mean()) < 400


# -------------------------------------------------------------------------------------- wire format
def test_messages_round_trip_and_corruption_is_detected():
    frame = np.random.default_rng(0).standard_normal((1, 16, 16)).astype(np.float32)
    buf = np.zeros(message_bytes(frame.nbytes), np.uint8)
    n = pack(buf, Kind.DATA, sim=3, attempt=1, step=7, a=10, payload=frame)
    m = unpack(5, buf[:n])
    assert (m.source, m.kind, m.sim, m.attempt, m.step, m.a) == (5, Kind.DATA, 3, 1, 7, 10) and m.intact
    np.testing.assert_array_equal(m.payload.view(np.float32).reshape(frame.shape), frame)
    buf[100] ^= 1  # one flipped bit in the payload
    assert not unpack(5, buf[:n]).intact
    n = pack(buf, Kind.FAIL, sim=3, payload=b"ValueError: boom")
    assert unpack(2, buf[:n]).text() == "ValueError: boom"


# ---------------------------------------------------------------------------------------- scheduler
def test_scheduler_retries_a_failing_simulation_a_bounded_number_of_times():
    s = Scheduler(np.array([0, 2, 4]), max_retries=1)
    assert s.next(client=5) == (0, 0) and s.next(client=6) == (2, 0)
    assert s.fail(0)  # queued again, first in line
    assert s.next(client=5) == (0, 1)
    assert not s.fail(0)  # the second failure gives it up
    s.finish(2)
    assert s.next(client=6) == (4, 0)
    assert s.release(6) == [4]  # its client left: waiting again, not a failure
    state = s.state_dict()
    assert s.next(client=5) == (4, 1)
    restored = Scheduler(np.array([0, 2, 4]), max_retries=1)
    restored.load_state_dict(state)
    assert restored.unfinished() == [0, 4] and restored.count(FAILED) == 1 and restored.count(FINISHED) == 1
    assert restored.count(WAITING) == 1 and restored.next(client=7) == (4, 1) and restored.complete is False


# ------------------------------------------------------------------------------------------ offline mode
def test_offline_mode_writes_a_pdesolve_dataset_and_learns(tmp_path):
    study = write_study(tmp_path)
    run = tmp_path / "run"
    assert main([str(study), "--offline", "--out", str(run), "--quiet"]) == 0
    tf = TrajectoryFile(run / "dataset.h5")
    assert (tf.layout, tf.n_trajectories, tf.n_times, tf.space_shape) == ("pdesolve", 6, 11, (16, 16))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mode"] == "offline" and summary["steps"] == 300 and summary["records"] == 66
    val = [float(r.split(",")[2]) for r in (run / "validation.csv").read_text().splitlines()[1:]]
    assert val[-1] < 0.5 * val[0], val  # the held-out error at least halves
    assert (run / "validation.png").stat().st_size > 0


def test_offline_mode_resumes_bit_for_bit(tmp_path):
    """Offline mode trains through pdesolve's loop: a run stopped at step 120 and run again ends where an
    uninterrupted run ends, to the bit (the epoch sampler, the rule, the model and the monitor resume)."""
    study = write_study(tmp_path, train={"checkpoint_every": 50})
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([str(study), "--offline", "--out", str(full), "--quiet"]) == 0
    assert main([str(study), "--offline", "--out", str(part), "--quiet", "--set", "train.steps=120"]) == 0
    assert json.loads((part / "summary.json").read_text())["steps"] == 120
    assert main([str(study), "--offline", "--out", str(part), "--quiet"]) == 0
    summary = json.loads((part / "summary.json").read_text())
    assert summary["resumed_from"] == 120 and summary["steps"] == 300
    a, b = (torch.load(run / "model.pt", weights_only=False)["model"] for run in (full, part))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    val = {run: {r.split(",")[0]: r.split(",")[2] for r in (run / "validation.csv").read_text().splitlines()[1:]} for run in (full, part)}
    assert all(val[part][k] == v for k, v in val[full].items()), val  # every validation of the full run, the same


def test_importing_the_package_starts_nothing():
    code = (
        "import sys, online_training, online_training.entry; "
        "assert 'mpi4py' not in sys.modules and 'deepxde' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=ROOT)
