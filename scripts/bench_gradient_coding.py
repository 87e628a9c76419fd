"""Benchmark: straggler-tolerant gradients (online_training/gradient_coding.py) against the uncoded all-reduce.

``n`` MPI ranks play the online trainer's data-parallel servers, fed offline: server ``i`` draws its batch
of round ``r`` from a seeded generator (the same records in every scheme), so coded and uncoded runs train
on the same data and their parameters can be compared. One rank can be delayed every round
(``--delay``); the uncoded path is :class:`pdesolve.distributed.GradientAverager` over gloo (the online
trainer's), the coded paths are :class:`online_training.gradient_coding.GradientCoder` (cyclic and
sequential). Reported per configuration: wall time of the rounds, its ratio to uncoded, the largest
parameter difference to the uncoded run with the same data (relative to the largest parameter), the largest
difference between servers, and how often the straggler's wait was cut short.

    python scripts/bench_gradient_coding.py                 # mpiexec -n 3, writes docs/bench_gradient_coding.json
    python scripts/bench_gradient_coding.py --quick         # a smoke run
    mpiexec -n 3 python scripts/bench_gradient_coding.py --worker --json OUT   # what the launcher runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help="run as one MPI rank (the launcher starts mpiexec)")
    p.add_argument("--ranks", type=int, default=3, help="servers (MPI ranks)")
    p.add_argument("--stragglers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--delay", type=float, default=0.05, help="seconds the straggler is late every round")
    p.add_argument("--delay-server", type=int, default=1)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=64, help="records per server and round")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="sgd: the parameters are linear in the gradients")
    p.add_argument("--repeats", type=int, default=2, help="timed repetitions of every configuration (interleaved)")
    p.add_argument("--configs", default="", help="comma-separated subset, e.g. none,cyclic+delay (default: all six)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few rounds, one repetition")
    p.add_argument("--json", default=str(ROOT / "docs" / "bench_gradient_coding.json"))
    return p


# ---------------------------------------------------------------------------------------- worker
D_IN, D_OUT = 16, 64


def _records(server: int, round_: int, batch: int):
    import numpy as np

    rng = np.random.default_rng([7, server, round_])
    x = rng.standard_normal((batch, D_IN)).astype(np.float32)
    w = np.random.default_rng(3).standard_normal((D_IN, D_OUT)).astype(np.float32) / 4
    y = np.sin(x @ w)
    return np.concatenate([x, y], axis=1)


def _model(width: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D_IN, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, D_OUT))


def _mse(model, records):
    import torch

    r = torch.from_numpy(records)
    return (model(r[:, :D_IN]) - r[:, D_IN:]).pow(2).mean()


def _optimizer(model, args):
    import torch

    return torch.optim.Adam(model.parameters(), lr=args.lr) if args.optimizer == "adam" else torch.optim.SGD(model.parameters(), lr=args.lr)


def run_config(comm, group, scheme: str, delay, args, resume_at: int | None = None) -> dict:
    """Train ``args.rounds`` rounds; returns wall time, final parameters (flat) and coder counters.

    ``resume_at``: at that round, save the model, optimizer and coder state, build them afresh and load it
    (a checkpoint and resume in the middle of the run).
    """
    import torch

    from online_training.gradient_coding import GradientCoder, GradientCodingSpec
    from pdesolve.distributed import GradientAverager

    rank = comm.Get_rank()
    model = _model(args.width)
    opt = _optimizer(model, args)
    grad0 = None
    coder = averager = None
    if scheme == "none":
        averager = GradientAverager(model, group)
    else:
        coder = GradientCoder(model, comm, GradientCodingSpec(scheme=scheme, stragglers=args.stragglers), delay)
    like = torch.zeros(())
    comm.Barrier()
    start = time.perf_counter()
    for r in range(args.rounds):
        if r == resume_at and coder is not None:
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "coder": coder.state_dict()}
            coder.close()
            model = _model(args.width)
            opt = _optimizer(model, args)
            coder = GradientCoder(model, comm, GradientCodingSpec(scheme=scheme, stragglers=args.stragglers), delay)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            coder.load_state_dict(state["coder"])
        records = _records(rank, r, args.batch)
        opt.zero_grad(set_to_none=True)
        if coder is not None:
            coder.share(r, records)
            loss = coder.loss(lambda rec, m=model: _mse(m, rec), like)
        else:
            comm.Barrier()  # the online servers meet once per step (their stop/ready all-reduce); so does the coded path in share()
            if delay is not None and delay.applies(rank, r):
                time.sleep(delay.seconds)
            averager.weight = float(len(records))
            loss = _mse(model, records)
        loss.backward()
        if r == 0:  # the first round's (decoded or averaged) gradient, all at the same parameters
            grad0 = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy().copy()
        opt.step()
    if coder is not None:
        coder.settle()
    comm.Barrier()
    wall = time.perf_counter() - start
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()
    out = {"wall_s": wall, "params": flat, "grad0": grad0, "loss": float(loss.detach())}
    if coder is not None:
        out.update(abandoned=coder.abandoned, stale=coder.exchange.stale)
        coder.close()
    return out


def worker(args) -> int:
    import numpy as np
    import torch
    from mpi4py import MPI

    from online_training.gradient_coding import DelaySpec
    from online_training.parallel import init_data_parallel
    from online_training.roles import Roles

    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD.Dup()
    rank, n = comm.Get_rank(), comm.Get_size()
    roles = Roles(comm=comm, rank=rank, size=n, servers=n, server_comm=comm, node_index=0)
    group = init_data_parallel(roles, torch.device("cpu"))
    delay = DelaySpec(server=args.delay_server, seconds=args.delay) if args.delay > 0 else None
    schemes = ["none", "cyclic", "sequential"]
    configs = [(s, d, None) for d in ([None, delay] if delay is not None else [None]) for s in schemes]
    if args.configs:
        wanted = args.configs.split(",")
        configs = [(s, d, None) for s, d, _ in configs if f"{s}{'' if d is None else '+delay'}" in wanted]
        if "sequential+delay+resume" in wanted and delay is not None:
            configs.append(("sequential", delay, args.rounds // 2))
    results: dict[str, dict] = {}
    for _rep in range(args.repeats):  # interleaved: every configuration once per repetition
        for scheme, d, resume_at in configs:
            key = f"{scheme}{'' if d is None else '+delay'}{'' if resume_at is None else '+resume'}"
            out = run_config(comm, group, scheme, d, args, resume_at)
            params = comm.gather(out["params"], root=0)
            grads = comm.gather(out["grad0"], root=0)
            entry = results.setdefault(key, {"scheme": scheme, "delayed": d is not None, "wall_s": []})
            entry["wall_s"].append(out["wall_s"])
            abandoned = comm.gather(out.get("abandoned", 0), root=0)
            if rank == 0:
                entry["params"], entry["grad0"] = params, grads
                entry["loss"] = out["loss"]
                entry["abandoned"] = int(sum(abandoned))
                entry["stale_server0"] = out.get("stale", 0)
    if rank == 0:
        ref = results["none"]["params"][0]
        scale = float(np.abs(ref).max())
        gref = results["none"]["grad0"][0]
        gscale = float(np.abs(gref).max())
        table = []
        for key, e in results.items():
            ps = e.pop("params")
            e["grad0_diff_to_uncoded"] = float(max(np.abs(g - gref).max() for g in e.pop("grad0")) / gscale)
            e["wall_s"] = min(e["wall_s"])  # best of the repetitions
            e["param_diff_to_uncoded"] = float(max(np.abs(p - ref).max() for p in ps) / scale)
            e["param_diff_between_servers"] = float(max(np.abs(p - ps[0]).max() for p in ps) / scale)
            e["name"] = key
            table.append(e)
        for e in table:  # ratios once every wall time is a number
            base = next((b for b in table if b["scheme"] == "none" and b["delayed"] == e["delayed"]), None)
            e["ratio_to_uncoded"] = None if base is None else e["wall_s"] / base["wall_s"]
        meta = {"optimizer": args.optimizer, "ranks": n, "stragglers": args.stragglers, "rounds": args.rounds, "delay_s": args.delay,
                "delay_server": args.delay_server, "width": args.width, "batch": args.batch, "lr": args.lr,
                "repeats": args.repeats, "torch": torch.__version__, "threads": 1}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": meta, "results": table}, indent=1))
        os.replace(tmp, args.json)
    comm.Barrier()
    group_destroy()
    return 0


def group_destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------- launcher
def mpiexec_command(ranks: int) -> list[str]:
    exe = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SystemExit("mpiexec not found (pip install -e '.[mpi]')")
    root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return [exe, *root, "--oversubscribe", "-n", str(ranks)]


def launch(args, argv: list[str]) -> int:
    cmd = [*mpiexec_command(args.ranks), sys.executable, str(Path(__file__).resolve()), "--worker", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    code = subprocess.call(cmd, env=env, cwd=ROOT)
    if code:
        return code
    data = json.loads(Path(args.json).read_text())
    print(f"{args.ranks} servers, s = {args.stragglers}, {args.rounds} rounds, delay {args.delay} s on server {args.delay_server} "
          f"({time.perf_counter() - started:.0f} s in all)")
    print(f"{'configuration':<20}{'wall s':>9}{'x uncoded':>11}{'diff to uncoded':>17}{'diff servers':>14}{'cut short':>11}")
    for e in data["results"]:
        print(f"{e['name']:<20}{e['wall_s']:>9.3f}{e['ratio_to_uncoded'] or float('nan'):>11.3f}{e['param_diff_to_uncoded']:>17.2e}"
              f"{e['param_diff_between_servers']:>14.2e}{e['abandoned']:>11d}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.quick:
        args.rounds, args.repeats = 10, 1
        argv = [*argv, "--rounds", "10", "--repeats", "1"]
        if "--json" not in argv:
            args.json = str(Path(tempfile.gettempdir()) / "bench_gradient_coding_quick.json")
            argv += ["--json", args.json]
    if args.worker:
        return worker(args)
    return launch(args, argv)


if __name__ == "__main__":
    sys.exit(main())
