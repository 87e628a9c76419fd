"""Buffers of the online trainer: watermark, eviction of seen records only, bounded memory, order, resume."""

import tracemalloc

import numpy as np
import pytest

from online_training.buffer import FIFO, FIRO, Reservoir, make_buffer


def record(i: int, size: int = 4) -> np.ndarray:
    return np.full(size, i, np.float32)


def fill(buf, start: int, n: int) -> int:
    """Put records ``start..start+n-1`` (record value and sim = i); returns how many were taken."""
    taken = 0
    for i in range(start, start + n):
        taken += buf.put(record(i, buf.record_size), sim=i, step=0)
    return taken


def test_training_starts_at_the_watermark_and_not_before():
    buf = Reservoir(100, 4, watermark=30)
    fill(buf, 0, 29)
    assert not buf.ready(8) and not buf.started
    fill(buf, 29, 1)
    assert buf.ready(8) and buf.started
    assert not buf.ready(31)  # a batch larger than the fill is never drawn before the stream ends
    buf.drain()
    assert buf.ready(31)  # once drained, whatever is left may be drawn


def test_full_reservoir_refuses_until_records_are_seen_then_evicts_only_seen_ones():
    buf = Reservoir(50, 4, watermark=10, seed=1)
    assert fill(buf, 0, 50) == 50
    assert not buf.put(record(99), sim=99, step=0)  # nothing seen yet: back-pressure, nothing lost
    assert buf.size == 50 and 99 not in buf.sim
    drawn = buf.sample(5)
    seen_ids = set(drawn[:, 0].astype(int))
    assert len(seen_ids) == 5  # a batch holds distinct records
    assert fill(buf, 100, 5) == 5  # room made by evicting exactly the five seen records
    assert not buf.put(record(200), sim=200, step=0)
    held = set(buf.sim[buf.used].tolist())
    assert held == (set(range(50)) - seen_ids) | set(range(100, 105))
    assert buf.evicted == 5


def test_reservoir_never_evicts_an_unseen_record_under_random_traffic():
    rng = np.random.default_rng(0)
    buf = Reservoir(64, 3, watermark=16, seed=2)
    next_id, refused = 0, 0
    for k in range(3000):
        if rng.random() < (0.98 if (k // 200) % 2 else 0.5):  # bursts of arrivals, then calmer spells
            if buf.put(record(next_id, 3), sim=next_id, step=0):
                next_id += 1
            else:
                refused += 1
        elif buf.ready(8):
            buf.sample(8)
    hist = buf.seen_histogram()
    # every record ever stored is either here or left after being seen: none left unseen
    assert hist.sum() == next_id
    assert hist[0] == np.sum(buf.seen[buf.used] == 0)  # the unseen records are all still here
    assert refused > 0 and buf.evicted > 0  # both regimes were exercised
    assert buf.size <= buf.capacity


def test_memory_is_bounded_whatever_the_traffic():
    buf = Reservoir(200, 256, watermark=50, seed=3)
    nbytes = buf.nbytes
    fill(buf, 0, 200)
    tracemalloc.start()
    fill(buf, 0, 1)
    before, _ = tracemalloc.get_traced_memory()
    for k in range(2000):
        buf.sample(16)
        fill(buf, 1000 + 16 * k, 16)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert buf.nbytes == nbytes == 200 * 256 * 4 + 200 * (8 * 4 + 1)
    assert buf.size == 200
    assert after - before < 64 * 1024  # 32 000 records went through; Python-side growth stays small


def test_fifo_hands_out_the_oldest_first_and_consumes():
    buf = FIFO(10, 2)
    fill(buf, 0, 10)
    assert not buf.put(record(10, 2), sim=10, step=0)  # full FIFO: back-pressure
    assert buf.sample(3)[:, 0].tolist() == [0, 1, 2]
    assert buf.size == 7
    fill(buf, 10, 3)
    assert buf.sample(10)[:, 0].tolist() == list(range(3, 13))
    assert buf.size == 0


def test_firo_draws_every_record_exactly_once():
    buf = FIRO(500, 1, seed=4)
    fill(buf, 0, 500)
    buf.drain()
    got = np.concatenate([buf.sample(64)[:, 0] for _ in range(8)])
    assert sorted(got.astype(int).tolist()) == list(range(500))
    assert buf.seen_histogram().tolist() == [0, 500]


def test_reservoir_draws_uniformly():
    buf = Reservoir(10, 1, seed=5)
    fill(buf, 0, 10)
    counts = np.bincount(np.concatenate([buf.sample(1)[:, 0] for _ in range(20000)]).astype(int), minlength=10)
    # binomial(20000, 0.1): mean 2000, std 42; five standard deviations
    assert np.all(np.abs(counts - 2000) < 5 * 42), counts


def test_remove_drops_every_record_of_a_simulation():
    buf = Reservoir(20, 1)
    for step in range(6):
        buf.put(record(step, 1), sim=7, step=step)
        buf.put(record(step, 1), sim=8, step=step)
    assert buf.remove(7) == 6
    assert set(buf.sim[buf.used].tolist()) == {8} and buf.size == 6


def test_drained_reservoir_empties_after_one_draw_of_each_record():
    buf = Reservoir(40, 1, seed=6)
    fill(buf, 0, 40)
    buf.sample(10)
    buf.drain()
    drawn = [buf.sample(7) for _ in range(6)]
    assert buf.size == 0 and sum(len(d) for d in drawn) == 40


@pytest.mark.parametrize("kind", ["fifo", "firo", "reservoir"])
def test_checkpoint_round_trip_resumes_the_same_draws(kind):
    a = make_buffer(kind, 30, 3, watermark=5, seed=7)
    fill(a, 0, 25)
    a.sample(4)
    state = a.state_dict(exclude_sims=[3, 4, 20])
    b = make_buffer(kind, 30, 3, watermark=5, seed=99)
    b.load_state_dict(state)
    excluded = sum(a.remove(sim) for sim in (3, 4, 20))
    assert b.size == a.size
    np.testing.assert_array_equal(a.sample(6), b.sample(6))
    assert a.seen_histogram().sum() - excluded == b.seen_histogram().sum()  # excluded records are not in b's history
    with pytest.raises(ValueError, match="expected"):
        make_buffer(kind, 31, 3).load_state_dict(state)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="watermark"):
        Reservoir(10, 2, watermark=11)
    with pytest.raises(KeyError, match="valid buffers"):
        make_buffer("lifo", 10, 2)
