"""Experts spread over torch.distributed ranks (gloo, 2 CPU processes) give what one process gives.

Each case runs once in a single process and once on 2 ranks; the ranks' weights, solve status, loss and
gradients (after the sum over ranks) must equal the single process's to rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pdesolve as ps
from pdesolve.config import load_run_config
from pdesolve.distributed import Ranks
from pdesolve.errors import UserError
from pdesolve.solvers import SolverMismatch
from pdesolve.solvers.hc import HC, MoEHC

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"
HEAT, DS = PROBLEMS / "heat.yaml", PROBLEMS / "diffusion_sorption.yaml"
WORLD = 2


def heat_experts(distributed: bool) -> dict:
    """Linear path: 2 time slabs x 2 space experts, so each slab's 2 solves split over the ranks."""
    return step(HEAT, MoEHC, {"experts": {"t": 2, "x": 2}, "constraint_weight": 10.0, "points": {"solve": 48, "loss": 40},
                                "distributed": distributed})


def heat_causal(distributed: bool) -> dict:
    """Causal weights: rank 0 holds the first time slab's loss points, rank 1 the second's, and every chunk's weight
    must come from all of them (the earlier chunks' losses are on the other rank)."""
    return step(HEAT, MoEHC, {"experts": {"t": 2, "x": 2}, "constraint_weight": 10.0, "points": {"solve": 48, "loss": 40},
                                "causal": {"chunks": 4, "tolerances": [100.0]}, "distributed": distributed})


def sorption_family(distributed: bool) -> dict:
    """Nonlinear path (Levenberg-Marquardt): one expert, a family batch of 2 initial conditions split over the ranks."""
    family = {"train": 4, "test": 0, "batch": 2, "sensors": 4, "parameters": {"initial.u": [0.0, 0.2]}}
    return step(DS, HC, {"constraint_weight": 10.0, "tikhonov": 1e-6, "points": {"solve": 48, "loss": 40},
                         "nonlinear": {"u_floor": 1e-3, "max_iter": 4, "tol": 1e-6}, "family": family, "distributed": distributed})


def step(path: Path, cls: type, options: dict) -> dict:
    cfg = load_run_config(path, [f"solver={cls.name}"])
    torch.manual_seed(0)
    ranks = Ranks.of(dist.group.WORLD) if options["distributed"] else None  # the runner joins the group (join_ranks)
    solver = cls(cfg.problem, cls.Options(**options), torch.device("cpu"), ranks=ranks)
    w, status = solver.weights()
    task = solver.task(lambda: {})
    loss, info = task.loss()
    loss.backward()
    return {"w": w, "status": status.as_dict(), "loss": float(loss.detach()), "info": info,
            "grads": [p.grad.clone() for p in solver.model.parameters()], "ranks": (solver.ranks.rank, solver.ranks.world)}


def train_run(distributed: bool, out: Path) -> dict:
    """A 3-step run through the runner: only rank 0 writes the folder; the metrics equal one process's."""
    options = {"experts": {"t": 1, "x": 2}, "constraint_weight": 10.0, "tikhonov": 1e-6, "points": {"solve": 48, "loss": 40},
               "distributed": distributed}
    result = ps.solve(HEAT, "moe_hc", steps=3, options=options, overrides=["evaluate.grid={t: 6, x: 11}"],
                      out=out, quiet=True, device="cpu")
    return {"rel_l2": result.metrics["rel_l2"], "run_dir": None if result.run_dir is None else str(result.run_dir),
            "losses": [h["loss"] for h in result.history]}


CASES = {"heat_experts": heat_experts, "heat_causal": heat_causal, "sorption_family": sorption_family}


def _worker(rank: int, init: str, out: str, case: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        if case == "train_run":
            result = train_run(True, Path(out) / "run")
        else:
            result = CASES[case](True)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def on_two_ranks(case: str, tmp_path: Path) -> list[dict]:
    mp.spawn(_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path), case), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_ranks_equal_one_process(case, tmp_path):
    one = CASES[case](False)
    ranks = on_two_ranks(case, tmp_path)
    assert [r["ranks"] for r in ranks] == [(0, 2), (1, 2)]
    for r in ranks:
        torch.testing.assert_close(r["w"], one["w"], rtol=1e-9, atol=1e-12)
        assert r["status"] == pytest.approx(one["status"], rel=1e-9, abs=1e-12)
        assert r["loss"] == pytest.approx(one["loss"], rel=1e-9)
        assert r["info"] == pytest.approx(one["info"], rel=1e-9, abs=1e-12)
        # norm-wise: the solves' backward amplifies rounding by the basis' conditioning, so single entries
        # may differ in their 5th digit (measured norm-wise: heat 1e-11; sorption 1e-6 / 1.4e-9 / 2e-11 at
        # tikhonov 1e-9 / 1e-6 / 1e-3, hence 1e-6 there)
        g_rank, g_one = (torch.cat([g.reshape(-1) for g in x["grads"]]) for x in (r, one))
        assert float((g_rank - g_one).norm()) <= 1e-8 * float(g_one.norm())
    assert float(sum(g.abs().sum() for g in one["grads"])) > 0  # the comparison is not between zeros


def test_two_rank_run_writes_one_folder_with_the_same_result(tmp_path):
    one = train_run(False, tmp_path / "single")
    ranks = on_two_ranks("train_run", tmp_path)
    assert ranks[0]["run_dir"] == str(tmp_path / "run") and ranks[1]["run_dir"] is None
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["rel_l2"] == pytest.approx(one["rel_l2"], rel=1e-8)
    for r in ranks:
        np.testing.assert_allclose(r["losses"], one["losses"], rtol=1e-8)


def test_rows_split_into_blocks_and_fall_back_to_every_rank():
    assert [Ranks(r, 3).block(7) for r in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 7)]
    assert [Ranks(r, 3).block(2) for r in range(3)] == [slice(0, 2)] * 3  # fewer rows than ranks: all on every rank
    assert Ranks(0, 3).share(2) == pytest.approx(1 / 3) and Ranks(0, 3).share(7) == 1.0
    assert Ranks.single().block(5) == slice(0, 5) and not Ranks.single().splits(5)


def test_distributed_without_a_launcher_says_how_to_launch(monkeypatch, tmp_path):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError, match="torchrun --standalone --nproc-per-node"):
        ps.solve(HEAT, "hc", steps=1, options={"distributed": True}, out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
    cfg = load_run_config(HEAT, ["solver=hc"])
    with pytest.raises(SolverMismatch, match="process group the runner joins"):  # a solver never starts a group itself
        HC(cfg.problem, HC.Options(distributed=True), torch.device("cpu"))
