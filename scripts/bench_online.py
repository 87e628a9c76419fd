"""Benchmark: the 2D heat study offline versus online at equal gradient steps, and ingestion with 1, 2, 4 clients.

    nice -n 10 python scripts/bench_online.py                 # about 30-40 minutes on 2 CPU cores
    nice -n 10 python scripts/bench_online.py --steps 1000    # a quick look

Every run is the real entry point in a subprocess, timed from launch to exit (imports, simulation,
writing and reading included), on ``problems/heat2d_online.yaml`` (five parameters: the initial and the
four wall temperatures; a 32x32 field, 100 steps; the fully connected surrogate):

- ``offline``: ``python -m online_training STUDY --offline``: ``offline.trajectories`` simulations
  written to HDF5 by pdesolve's dataset writer, read back, then ``--steps`` gradient steps; also with
  fewer simulations (``offline_<n>``, ``--offline-sweep``), to see where the fixed dataset limits the error;
- ``online``: ``mpiexec -n 2`` (one server, one client): ``--steps`` gradient steps while fresh
  simulations stream in (more simulations than the run can use, so the stream never runs dry);
- ``offline_same_data``: offline again, on as many simulations as the online run received (a control:
  does the online run win by its data or by streaming?);
- ``ingest_<c>``: ``mpiexec -n 1+c`` with ``c`` = 1, 2, 4 clients streaming 48 simulations while the
  server trains: samples received per second from the first frame to the last.

Same surrogate, training rule, batch size, seed and 16 held-out validation simulations for all. Prints a
table and writes ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "problems" / "heat2d_online.yaml"


def launch(cmd: list[str], timeout: float) -> tuple[float, str]:
    """Run a command; returns (wall seconds, output); raises with the output's tail on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return wall, proc.stdout + proc.stderr


def mpiexec(n: int) -> list[str]:
    found = shutil.which("mpiexec")
    if found is None:
        raise SystemExit("mpiexec is not on PATH (pip install -e '.[mpi]')")
    root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return [found, *root, "--oversubscribe", "-n", str(n)]


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8000, help="gradient steps of the offline and online runs")
    p.add_argument("--offline-simulations", type=int, default=32, help="the fixed dataset of the main comparison")
    p.add_argument("--offline-sweep", type=int, nargs="*", default=[4, 8, 16], help="smaller fixed datasets, for context")
    p.add_argument("--ingest-simulations", type=int, default=48)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--out", default="runs/bench_online")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    args = p.parse_args(argv)
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    common = [
        "--overwrite", "--quiet", "--set", f"train.steps={args.steps}", "--set", "validation.trajectories=16",
        "--set", f"train.validate_every={max(args.steps // 8, 1)}", "--set", "train.checkpoint_every=0",
    ]
    module = [sys.executable, "-m", "online_training", str(STUDY)]
    results: dict[str, dict] = {}

    def record(name: str, wall: float, folder: Path) -> None:
        results[name] = {"wall_s": round(wall, 2), **summary(folder)}
        r = results[name]
        print(f"{name:>18}: {wall:7.1f} s end to end, {r['steps']} steps, val rel L2 {r['val_rel_l2']:.4e}, "
              f"trainer {r['trained_per_s']:.0f} samples/s", flush=True)

    # offline on the study's fixed dataset, and on smaller ones
    for n in [args.offline_simulations, *args.offline_sweep]:
        name = "offline" if n == args.offline_simulations else f"offline_{n}"
        folder = out / name
        wall, _ = launch(module + ["--offline", "--out", str(folder), *common, "--set", f"offline.trajectories={n}"], args.timeout)
        record(name, wall, folder)

    # online, one server and one client, fresh simulations throughout
    folder = out / "online"
    many = max(4 * args.steps, 400)  # more than the run can consume: training ends at --steps, not on a dry stream
    wall, _ = launch(mpiexec(2) + module + ["--out", str(folder), *common, "--set", f"simulate.trajectories={many}"],
                     args.timeout)
    record("online", wall, folder)
    streamed = results["online"]["simulations_finished"]

    # control: offline with as many simulations as the online run received
    folder = out / "offline_same_data"
    wall, _ = launch(module + ["--offline", "--out", str(folder), *common, "--set", f"offline.trajectories={streamed}"],
                     args.timeout)
    record("offline_same_data", wall, folder)

    # ingestion: samples/s received while c clients stream (the server trains meanwhile)
    for c in args.clients:
        folder = out / f"ingest_{c}"
        wall, _ = launch(mpiexec(1 + c) + module + [
            "--out", str(folder), "--overwrite", "--quiet", "--set", f"simulate.trajectories={args.ingest_simulations}",
            "--set", "train.steps=1000000", "--set", "train.checkpoint_every=0", "--set", "train.validate_every=0",
        ], args.timeout)
        results[f"ingest_{c}"] = {"wall_s": round(wall, 2), **summary(folder)}
        r = results[f"ingest_{c}"]
        print(f"{'ingest, ' + str(c) + ' client(s)':>18}: {r['received_per_s']:7.0f} samples/s received over {r['stream_s']:.1f} s "
              f"({r['samples_received']} samples), trainer {r['trained_per_s']:.0f} samples/s", flush=True)

    off, on, same = results["offline"], results["online"], results["offline_same_data"]
    results["meta"] = {
        "command": "nice -n 10 python scripts/bench_online.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
        "python": platform.python_version(), "steps": args.steps,
        "online_vs_offline_val_ratio": on["val_rel_l2"] / off["val_rel_l2"],
        "online_vs_offline_trainer_ratio": on["trained_per_s"] / off["trained_per_s"],
        "online_vs_same_data_val_ratio": on["val_rel_l2"] / same["val_rel_l2"],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    m = results["meta"]
    print(f"\nonline / offline: validation error x{m['online_vs_offline_val_ratio']:.3f} "
          f"({100 * (1 - m['online_vs_offline_val_ratio']):.0f}% lower; target >= 50%), "
          f"trainer samples/s x{m['online_vs_offline_trainer_ratio']:.2f} (target >= 1)")
    print(f"online / offline on the same {streamed} simulations: validation error x{m['online_vs_same_data_val_ratio']:.3f}")
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
