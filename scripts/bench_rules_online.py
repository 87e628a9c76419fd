"""The heat surrogate trained *online* by each training rule: 1 server + 2 clients streaming under mpiexec.

Same surrogate as ``bench_rules.py --task heat`` (FieldMLP width 64, depth 3; NoProp: its own NoPropNet), each rule
at the learning rate the offline benchmark chose for it, 1500 steps of batch 32, seed 0, scored by the study's
validation relative L2 on 8 held-out simulations (``summary.json``).

    python scripts/bench_rules_online.py --out docs/bench_rules_heat_online.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = {  # rule -> (lr chosen offline, surrogate kind)
    "adam": (3e-3, "mlp"), "auglocal": (3e-3, "mlp"), "man": (3e-3, "mlp"), "synthetic_gradients": (1e-2, "mlp"),
    "forward_only": (3e-3, "mlp"), "counter_current": (3e-3, "mlp"), "target_projection": (1e-3, "mlp"), "noprop": (1e-3, "noprop"),
}


def run(rule: str, lr: float, kind: str, work: Path, steps: int) -> dict:
    out = work / rule
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
    cmd = [mpiexec, "--allow-run-as-root", "--oversubscribe", "-n", "3", sys.executable, "-m", "online_training",
           str(ROOT / "problems" / "heat2d_online.yaml"), "--out", str(out), "--overwrite", "--quiet",
           "--set", f"train.steps={steps}", "--set", "train.batch_size=32", "--set", "train.validate_every=500",
           "--set", "train.checkpoint_every=0", "--set", f"surrogate.kind={kind}", "--set", "surrogate.width=64",
           "--set", "surrogate.depth=3", "--set", f"train.optimizer={{name: {rule}, lr: {lr}}}",
           "--set", "validation.trajectories=8", "--set", "buffer.watermark=500"]
    t0 = time.perf_counter()
    code = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).returncode
    summary = json.loads((out / "summary.json").read_text())
    return {"rule": rule, "lr": lr, "surrogate": kind, "exit": code, "val_rel_l2": summary.get("val_rel_l2"),
            "status": summary.get("status"), "steps": summary.get("steps"), "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--work", default="/tmp/online_rules")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rows = []
    for rule, (lr, kind) in RULES.items():
        rows.append(run(rule, lr, kind, Path(args.work), args.steps))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"steps": args.steps, "seed": 0, "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
