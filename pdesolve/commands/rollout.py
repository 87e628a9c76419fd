"""``pdesolve rollout RUN_DIR --data TEST.h5``: roll a trained grid solver out and score it."""

from __future__ import annotations

import argparse

from ..errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder written by `pdesolve train`")
    p.add_argument("--data", required=True, help="trajectory dataset (HDF5) to roll out on")
    p.add_argument("--split", choices=("all", "test"), default="all",
                   help="all trajectories of the file (default), or its held-out test split")
    p.add_argument("--out", help="folder for the results (default: RUN_DIR/rollout-<data file name>)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="where to run (default: the run's)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--piece", metavar="I,J", help="roll one piece's network alone on its sub-grid u[..., i::s_h, j::s_w] "
                   "(NeuralStagger with inputs: own), against the subsampled data")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..grid_runner import rollout_run

    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads: expected a positive number, got {args.threads}")
        torch.set_num_threads(args.threads)
    piece = None
    if args.piece is not None:
        try:
            piece = tuple(int(v) for v in args.piece.split(","))
        except ValueError:
            raise UserError(f"--piece: expected comma-separated offsets such as 0,1, got {args.piece!r}") from None
    m = rollout_run(args.run_dir, args.data, split=args.split, out=args.out, device=args.device, piece=piece)
    print(f"{m['trajectories']} trajectories x {len(m['rollout_starts'])} start times: "
          f"one-step relative L2 {m['one_step_rel_l2']:.3e}, rollout relative L2 {m['rollout_rel_l2']:.3e} "
          f"over {m['rollout_steps']} steps")
    print(f"results in {m['folder']}")
    return 0
