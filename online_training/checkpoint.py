"""Consistent checkpoints of all servers, written atomically.

Each server writes ``checkpoints/step<N>-server<i>.pt`` (atomically: a temporary file, then a rename).
Once every server has written its file, the first server replaces ``checkpoint.json`` (atomically too),
and that manifest is the one thing a restart reads: a run killed at any moment leaves either the
previous complete set or the new one. Files of older steps are deleted after the manifest moves on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pdesolve.errors import UserError
from pdesolve.io import write_json, write_with

log = logging.getLogger(__name__)
MANIFEST = "checkpoint.json"


class Checkpoints:
    """Server ``index`` of ``servers``; ``barrier`` synchronizes the servers (an MPI barrier)."""

    def __init__(self, folder: Path, index: int, servers: int, digest: str, barrier: Callable[[], None]):
        self.folder, self.index, self.servers, self.digest, self.barrier = Path(folder), index, servers, digest, barrier
        self.dir = self.folder / "checkpoints"

    def _file(self, step: int) -> Path:
        return self.dir / f"step{step:09d}-server{self.index}.pt"

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write this server's state for ``step`` and, with the others, move the manifest to it (collective)."""
        path = self._file(step)
        write_with(path, lambda p: torch.save(state, p))
        self.barrier()
        if self.index == 0:
            write_json(self.folder / MANIFEST, {"step": step, "servers": self.servers, "study": self.digest})
        self.barrier()
        for old in self.dir.glob(f"step*-server{self.index}.pt"):
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def manifest(self) -> dict[str, Any] | None:
        path = self.folder / MANIFEST
        if not path.exists():
            return None
        info = json.loads(path.read_text())
        if info["study"] != self.digest:
            raise UserError(
                f"{self.folder} holds a checkpoint of a different study (fingerprint {info['study']}, this study "
                f"{self.digest}); pass --overwrite to start over, or --out another folder"
            )
        if info["servers"] != self.servers:
            raise UserError(
                f"{self.folder} was checkpointed with {info['servers']} servers, this run has {self.servers}; "
                f"set online.servers: {info['servers']} to resume, or pass --overwrite"
            )
        return info

    def load(self) -> dict[str, Any] | None:
        """This server's state at the manifest's step (None when there is no checkpoint)."""
        info = self.manifest()
        if info is None:
            return None
        path = self._file(int(info["step"]))
        if not path.exists():
            raise UserError(f"{self.folder / MANIFEST} names step {info['step']}, but {path} is missing; pass --overwrite")
        return torch.load(path, map_location="cpu", weights_only=False)
