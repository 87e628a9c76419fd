"""Sample buffers between the stream of time steps and the trainer: FIFO, first-in-random-out, reservoir.

Every buffer holds at most ``capacity`` records of ``record_size`` float32 values in arrays allocated once,
so its memory is fixed whatever the stream does. Each record remembers the simulation and time step it
came from and how many batches it has been drawn into (its *seen count*). Training may start once the
fill has reached the ``watermark``; a buffer that cannot take a record says so (``put`` returns False)
and the server stops handing out credits, which is the back-pressure that pauses the clients.

- :class:`FIFO` hands out the oldest records and removes them;
- :class:`FIRO` (first in, random out) hands out random records and removes them;
- :class:`Reservoir` hands out random records and keeps them; when full, a new record replaces a random
  record that has already been seen, and with none seen it refuses the record.

After the stream has ended (:meth:`Buffer.drain`) every buffer hands out each remaining record once and
removes it, so training ends when the buffer is empty.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np


class Buffer(abc.ABC):
    """``capacity`` records ``[record_size]`` float32 with their simulation, time step and seen count."""

    kind: ClassVar[str]
    consumes: ClassVar[bool]  # whether a record leaves the buffer once it has been drawn

    def __init__(self, capacity: int, record_size: int, *, watermark: int | None = None, seed: Any = 0):
        if capacity < 1 or record_size < 1:
            raise ValueError(f"expected capacity >= 1 and record_size >= 1, got {capacity} and {record_size}")
        self.watermark = 1 if watermark is None else int(watermark)
        if not 1 <= self.watermark <= capacity:
            raise ValueError(f"watermark: expected 1 <= watermark <= capacity = {capacity}, got {watermark}")
        self.capacity, self.record_size = int(capacity), int(record_size)
        self.data = np.zeros((capacity, record_size), np.float32)
        self.sim = np.full(capacity, -1, np.int64)
        self.step = np.full(capacity, -1, np.int64)
        self.seen = np.zeros(capacity, np.int64)
        self.stamp = np.zeros(capacity, np.int64)  # arrival order
        self.used = np.zeros(capacity, bool)
        self._free = list(range(capacity - 1, -1, -1))
        self._arrivals = 0
        self._removed_seen = np.zeros(1, np.int64)  # histogram of the seen counts of records that left
        self.started = False  # the watermark has been reached once
        self.draining = False
        self.evicted = 0
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------------------------- state
    @property
    def size(self) -> int:
        return self.capacity - len(self._free)

    @property
    def nbytes(self) -> int:
        """Bytes held by the record arrays (fixed at construction)."""
        return sum(a.nbytes for a in (self.data, self.sim, self.step, self.seen, self.stamp, self.used))

    def ready(self, n: int) -> bool:
        """Whether a batch of ``n`` can be drawn: watermark reached and ``n`` records there (draining: any)."""
        if self.draining:
            return self.size > 0
        return self.started and self.size >= n

    def records(self) -> np.ndarray:
        """Every record held now ``[size, record_size]`` (a copy; seen counts unchanged)."""
        return self.data[self.used]

    def seen_histogram(self) -> np.ndarray:
        """``[k]``: the number of records (gone or still here) that were drawn ``k`` times."""
        current = np.bincount(self.seen[self.used], minlength=1)
        out = np.zeros(max(len(current), len(self._removed_seen)), np.int64)
        out[: len(current)] += current
        out[: len(self._removed_seen)] += self._removed_seen
        return out

    # ----------------------------------------------------------------------------------- changes
    def put(self, record: np.ndarray, sim: int, step: int) -> bool:
        """Store one record ``[record_size]``; False (nothing stored) when there is no room for it."""
        if not self._free:
            slot = None if self.draining else self._victim()
            if slot is None:
                return False
            self._release(np.array([slot]))
            self.evicted += 1
        slot = self._free.pop()
        self.data[slot] = record
        self.sim[slot], self.step[slot], self.seen[slot] = sim, step, 0
        self.stamp[slot] = self._arrivals
        self._arrivals += 1
        self.used[slot] = True
        if self.size >= self.watermark:
            self.started = True
        return True

    def sample(self, n: int) -> np.ndarray:
        """Draw ``min(n, size)`` records ``[m, record_size]`` (a copy); their seen counts go up by one."""
        m = min(int(n), self.size)
        if m <= 0:
            return np.zeros((0, self.record_size), np.float32)
        slots = self._choose(np.flatnonzero(self.used), m)
        self.seen[slots] += 1
        out = self.data[slots]  # fancy indexing copies
        if self.consumes or self.draining:
            self._release(slots)
        return out

    def remove(self, sim: int) -> int:
        """Drop every record of simulation ``sim`` (a failed run's partial time steps); returns how many."""
        slots = np.flatnonzero(self.used & (self.sim == sim))
        self._release(slots)
        return len(slots)

    def drain(self) -> None:
        """The stream has ended: from now on every record drawn is removed."""
        self.draining = True

    def _release(self, slots: np.ndarray) -> None:
        if len(slots) == 0:
            return
        hist = np.bincount(self.seen[slots])
        if len(hist) > len(self._removed_seen):
            self._removed_seen = np.pad(self._removed_seen, (0, len(hist) - len(self._removed_seen)))
        self._removed_seen[: len(hist)] += hist
        self.used[slots] = False
        self.sim[slots] = -1
        self._free.extend(slots.tolist())

    # ----------------------------------------------------------------------------------- policy
    @abc.abstractmethod
    def _choose(self, used: np.ndarray, m: int) -> np.ndarray:
        """``m`` distinct slots among the occupied ``used`` slots."""

    def _victim(self) -> int | None:
        """The slot a new record may replace when the buffer is full (None: refuse the record)."""
        return None

    # ---------------------------------------------------------------------------- checkpointing
    def state_dict(self, exclude_sims: Any = ()) -> dict[str, Any]:
        """The records (except those of ``exclude_sims``), counters and generator state, compactly."""
        keep = self.used & ~np.isin(self.sim, np.asarray(list(exclude_sims), dtype=np.int64))
        slots = np.flatnonzero(keep)
        slots = slots[np.argsort(self.stamp[slots], kind="stable")]
        return {
            "kind": self.kind,
            "capacity": self.capacity,
            "record_size": self.record_size,
            "data": self.data[slots].copy(),
            "sim": self.sim[slots].copy(),
            "step": self.step[slots].copy(),
            "seen": self.seen[slots].copy(),
            "stamp": self.stamp[slots].copy(),
            "arrivals": self._arrivals,
            "removed_seen": self._removed_seen.copy(),
            "started": self.started,
            "draining": self.draining,
            "evicted": self.evicted,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        want = (self.kind, self.capacity, self.record_size)
        got = (state["kind"], state["capacity"], state["record_size"])
        if got != want:
            raise ValueError(f"buffer checkpoint (kind, capacity, record_size) = {got}, expected {want}")
        k = len(state["sim"])
        self.used[:] = False
        self.sim[:] = -1
        self.data[:k], self.sim[:k], self.step[:k] = state["data"], state["sim"], state["step"]
        self.seen[:k], self.stamp[:k] = state["seen"], state["stamp"]
        self.used[:k] = True
        self._free = list(range(self.capacity - 1, k - 1, -1))
        self._arrivals = int(state["arrivals"])
        self._removed_seen = np.asarray(state["removed_seen"], np.int64).copy()
        self.started, self.draining, self.evicted = bool(state["started"]), bool(state["draining"]), int(state["evicted"])
        self.rng.bit_generator.state = state["rng"]


class FIFO(Buffer):
    """First in, first out: the oldest records, each drawn once."""

    kind = "fifo"
    consumes = True

    def _choose(self, used: np.ndarray, m: int) -> np.ndarray:
        order = np.argpartition(self.stamp[used], m - 1)[:m] if m < len(used) else np.arange(len(used))
        picked = used[order]
        return picked[np.argsort(self.stamp[picked], kind="stable")]


class FIRO(Buffer):
    """First in, random out: random records, each drawn once."""

    kind = "firo"
    consumes = True

    def _choose(self, used: np.ndarray, m: int) -> np.ndarray:
        return self.rng.choice(used, size=m, replace=False)


class Reservoir(Buffer):
    """Random records that stay; a full reservoir replaces a random already-seen record, or refuses."""

    kind = "reservoir"
    consumes = False

    def _choose(self, used: np.ndarray, m: int) -> np.ndarray:
        return self.rng.choice(used, size=m, replace=False)

    def _victim(self) -> int | None:
        seen = np.flatnonzero(self.used & (self.seen > 0))
        return int(self.rng.choice(seen)) if len(seen) else None


BUFFERS: dict[str, type[Buffer]] = {"fifo": FIFO, "firo": FIRO, "reservoir": Reservoir}


def make_buffer(kind: str, capacity: int, record_size: int, *, watermark: int | None = None, seed: Any = 0) -> Buffer:
    """The buffer called ``kind`` (``fifo``, ``firo`` or ``reservoir``)."""
    if kind not in BUFFERS:
        raise KeyError(f"unknown buffer {kind!r}; valid buffers are {sorted(BUFFERS)}")
    return BUFFERS[kind](capacity, record_size, watermark=watermark, seed=seed)
