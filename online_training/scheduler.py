"""The simulations one server owns: which wait, which run where, which are finished or given up.

A simulation that fails (raises, or makes non-finite values) goes back to the queue until it has failed
``max_retries + 1`` times; then it is given up and the study completes without it. Every start of a
simulation gets a new run number (``attempt``), so the frames of an abandoned run are never confused with
those of the next one. On restart from a checkpoint, simulations that were running become waiting
again: only unfinished simulations are run again.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

WAITING, RUNNING, FINISHED, FAILED = 0, 1, 2, 3
STATES = ("waiting", "running", "finished", "failed")


class Scheduler:
    """The queue of simulations ``ids`` (global simulation numbers) with bounded retries."""

    def __init__(self, ids: np.ndarray, max_retries: int):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.max_retries = max_retries
        self._index = {int(s): i for i, s in enumerate(self.ids)}
        self.state = np.zeros(len(self.ids), np.int8)
        self.runs = np.zeros(len(self.ids), np.int64)  # starts so far: the next run's attempt number
        self.failures = np.zeros(len(self.ids), np.int64)
        self.where = np.full(len(self.ids), -1, np.int64)  # the client running it
        self.queue: deque[int] = deque(int(s) for s in self.ids)

    def count(self, state: int) -> int:
        return int(np.sum(self.state == state))

    @property
    def complete(self) -> bool:
        """Nothing waits and nothing runs."""
        return not np.any((self.state == WAITING) | (self.state == RUNNING))

    def next(self, client: int) -> tuple[int, int] | None:
        """``(sim, attempt)`` for ``client``, or None if nothing waits."""
        if not self.queue:
            return None
        sim = self.queue.popleft()
        i = self._index[sim]
        self.state[i], self.where[i] = RUNNING, client
        attempt = int(self.runs[i])
        self.runs[i] += 1
        return sim, attempt

    def is_current(self, sim: int, attempt: int) -> bool:
        """Whether ``attempt`` is the run of ``sim`` now in progress."""
        i = self._index.get(sim)
        return i is not None and self.state[i] == RUNNING and self.runs[i] == attempt + 1

    def finish(self, sim: int) -> None:
        i = self._index[sim]
        self.state[i], self.where[i] = FINISHED, -1

    def fail(self, sim: int) -> bool:
        """Record a failure; True if the simulation is queued again, False if it is given up."""
        i = self._index[sim]
        self.failures[i] += 1
        self.where[i] = -1
        if self.failures[i] > self.max_retries:
            self.state[i] = FAILED
            return False
        self.state[i] = WAITING
        self.queue.appendleft(sim)
        return True

    def release(self, client: int) -> list[int]:
        """Put back the simulations ``client`` was running when it left (not counted as failures)."""
        idx = np.flatnonzero((self.state == RUNNING) & (self.where == client))
        for i in idx[::-1]:
            self.state[i], self.where[i] = WAITING, -1
            self.queue.appendleft(int(self.ids[i]))
        return [int(self.ids[i]) for i in idx]

    def unfinished(self) -> list[int]:
        return [int(s) for s in self.ids[self.state != FINISHED]]

    def finished(self) -> list[int]:
        return [int(s) for s in self.ids[self.state == FINISHED]]

    def state_dict(self) -> dict[str, Any]:
        state = self.state.copy()
        state[state == RUNNING] = WAITING  # a run in progress is not kept: it starts over on resume
        return {"ids": self.ids.copy(), "state": state, "runs": self.runs.copy(), "failures": self.failures.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not np.array_equal(state["ids"], self.ids):
            raise ValueError(f"the checkpoint's simulations ({len(state['ids'])}) differ from this server's ({len(self.ids)})")
        self.state = np.asarray(state["state"], np.int8).copy()
        self.runs, self.failures = np.asarray(state["runs"]).copy(), np.asarray(state["failures"]).copy()
        self.where[:] = -1
        self.queue = deque(int(s) for s in self.ids[self.state == WAITING])
