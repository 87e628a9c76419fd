"""What a run shows: throughput per rank, buffer fill, seen counts, validation error, failures; CSV and figures.

Each server keeps its rows in memory (they go into checkpoints, so a resumed run continues its history
without gaps or repeats) and rewrites its CSV files atomically at each checkpoint and at the end:

    metrics/server<i>.csv      step, time, loss, lr, received, trained, rates (samples/s), buffer fill, simulations
    metrics/clients-server<i>.csv  per client rank: simulations, frames, seconds simulating and waiting, frames/s
    metrics/seen-server<i>.csv     how many records were drawn k times, for each k
    metrics/failures-server<i>.csv simulation, run, client, queued again or given up, records removed, reason
    validation.csv             (first server) step, time, relative L2 error on the held-out simulations

:func:`write_figures` turns them into ``throughput.png`` (samples/s and buffer fill over time),
``seen_counts.png`` and ``validation.png`` in the run folder.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pdesolve.io import write_text, write_with


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Rows as CSV, atomically (columns: the given ones, else the first row's keys)."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, out.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def open_audit(path: Path, header: str) -> Any:
    """An append-mode CSV log (one line per sample; the header on a new file): ``audit/`` of a run folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    fh = open(path, "a", buffering=1)  # line by line: a killed run leaves whole lines
    if new:
        fh.write(header + "\n")
    return fh


class Monitor:
    """Counters and rows of one server (``index``); times are seconds since the study first started."""

    def __init__(self, folder: Path, index: int):
        self.folder, self.index = Path(folder), index
        self.rows: list[dict[str, float]] = []
        self.validation: list[dict[str, float]] = []
        self.failures: list[dict[str, Any]] = []
        self.clients: dict[int, dict[str, float]] = {}
        self.received = self.stored = self.trained = 0
        self.train_started: float | None = None  # times of the first and the latest training step
        self.train_ended: float | None = None
        self.stream = [None, None]  # times of the first and the last frame received
        self.elapsed_before = 0.0
        self.t0 = time.perf_counter()
        self._mark = (0.0, 0, 0)  # time, received, trained at the last row

    def now(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    @property
    def last_row(self) -> float:
        return self._mark[0]

    def row(
        self, step: int, record: dict[str, float], fill: int, capacity: int, finished: int, failed: int, total: int
    ) -> dict[str, float]:
        t = self.now()
        t_last, r_last, k_last = self._mark
        dt = max(t - t_last, 1e-9)
        row = {
            "step": step, "time": round(t, 4), "loss": record.get("loss", float("nan")), "lr": record.get("lr", float("nan")),
            "received": self.received, "trained": self.trained,
            "received_per_s": (self.received - r_last) / dt, "trained_per_s": (self.trained - k_last) / dt,
            "buffer_fill": fill, "buffer_capacity": capacity,
            "simulations_finished": finished, "simulations_failed": failed, "simulations": total,
        }
        self._mark = (t, self.received, self.trained)
        self.rows.append(row)
        return row

    def got_frame(self) -> None:
        t = self.now()
        self.received += 1
        self.stream = [t if self.stream[0] is None else self.stream[0], t]

    def validated(self, step: int, rel_l2: float) -> None:
        self.validation.append({"step": step, "time": round(self.now(), 4), "val_rel_l2": rel_l2})

    def failed(self, sim: int, attempt: int, client: int, reason: str, requeued: bool, removed: int) -> None:
        self.failures.append({
            "simulation": sim, "run": attempt, "client": client, "requeued": requeued, "removed": removed, "reason": reason,
            "time": round(self.now(), 4),
        })

    def client(self, rank: int, **add: float) -> None:
        entry = self.clients.setdefault(rank, {"simulations": 0, "frames": 0, "simulate_s": 0.0, "wait_s": 0.0, "alive_s": 0.0})
        for k, v in add.items():
            entry[k] += v

    def write(self, seen_histogram: np.ndarray) -> None:
        """Rewrite this server's CSV files (atomically)."""
        m = self.folder / "metrics"
        write_csv(m / f"server{self.index}.csv", self.rows)
        clients = [
            {"rank": r, **c, "frames_per_s": c["frames"] / c["simulate_s"] if c["simulate_s"] > 0 else 0.0}
            for r, c in sorted(self.clients.items())
        ]
        write_csv(m / f"clients-server{self.index}.csv", clients,
                  ["rank", "simulations", "frames", "simulate_s", "wait_s", "alive_s", "frames_per_s"])
        write_csv(m / f"seen-server{self.index}.csv", [{"seen": k, "records": int(n)} for k, n in enumerate(seen_histogram)])
        write_csv(m / f"failures-server{self.index}.csv", self.failures,
                  ["simulation", "run", "client", "requeued", "removed", "reason", "time"])
        if self.index == 0:
            write_csv(self.folder / "validation.csv", self.validation, ["step", "time", "val_rel_l2"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "validation": self.validation, "failures": self.failures, "clients": self.clients,
            "counts": (self.received, self.stored, self.trained), "elapsed": self.now(), "train_started": self.train_started,
            "train_ended": self.train_ended, "stream": self.stream,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows, self.validation, self.failures = state["rows"], state["validation"], state["failures"]
        self.clients = {int(k): v for k, v in state["clients"].items()}
        self.received, self.stored, self.trained = state["counts"]
        self.train_started, self.train_ended, self.stream = state["train_started"], state["train_ended"], state["stream"]
        self.elapsed_before, self.t0 = float(state["elapsed"]), time.perf_counter()
        self._mark = (self.elapsed_before, self.received, self.trained)


def progress_line(row: dict[str, float], steps: int, val: float | None) -> str:
    """One line for the log of the first server."""
    text = (
        f"step {int(row['step'])}/{steps}  loss {row['loss']:.3e}  received {row['received_per_s']:.0f}/s  "
        f"trained {row['trained_per_s']:.0f}/s  buffer {int(row['buffer_fill'])}/{int(row['buffer_capacity'])}  "
        f"simulations {int(row['simulations_finished'])}/{int(row['simulations'])}"
    )
    if row["simulations_failed"]:
        text += f" ({int(row['simulations_failed'])} given up)"
    return text + (f"  val rel L2 {val:.3e}" if val is not None else "")


def write_figures(folder: Path, servers: int) -> list[Path]:
    """Figures of a run folder from its CSV files (all servers)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder = Path(folder)
    out: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        write_with(folder / name, lambda p: fig.savefig(p, dpi=100, format="png"))
        plt.close(fig)
        out.append(folder / name)

    tables = [read_csv(folder / "metrics" / f"server{i}.csv") for i in range(servers)]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, rows in enumerate(tables):
        t = [float(r["time"]) for r in rows]
        ax[0].plot(t, [float(r["received_per_s"]) for r in rows], ".-", label=f"received, server {i}")
        ax[0].plot(t, [float(r["trained_per_s"]) for r in rows], ".--", label=f"trained, server {i}")
        ax[1].plot(t, [float(r["buffer_fill"]) for r in rows], ".-", label=f"server {i}")
    ax[0].set(xlabel="time (s)", ylabel="samples / s", title="throughput")
    ax[1].set(xlabel="time (s)", ylabel="records", title="buffer fill")
    for a in ax:
        a.legend(fontsize=7)
    save(fig, "throughput.png")

    hist: dict[int, int] = {}
    for i in range(servers):
        for r in read_csv(folder / "metrics" / f"seen-server{i}.csv"):
            hist[int(r["seen"])] = hist.get(int(r["seen"]), 0) + int(r["records"])
    fig, ax1 = plt.subplots(figsize=(5, 3.6))
    ax1.bar(list(hist), list(hist.values()))
    ax1.set(xlabel="times drawn into a batch", ylabel="records", title="seen counts")
    save(fig, "seen_counts.png")

    val = read_csv(folder / "validation.csv")
    if val:
        fig, ax1 = plt.subplots(figsize=(5, 3.6))
        ax1.semilogy([int(r["step"]) for r in val], [float(r["val_rel_l2"]) for r in val], "o-")
        ax1.set(xlabel="step", ylabel="relative L2", title="validation error (held-out simulations)")
        save(fig, "validation.png")
    return out
