"""Consistent checkpoints of all servers, written atomically: the stores :func:`pdesolve.train.train` writes to.

Each server writes ``checkpoints/step<N>-server<i>.pt`` (atomically: a temporary file, then a rename).
Once every server has written its file, the first server replaces ``checkpoint.json`` (atomically too),
and that manifest is the one thing a restart reads: a run killed at any moment leaves either the
previous complete set or the new one. Files of older steps are deleted after the manifest moves on.
The manifest carries the study's fingerprint, so a run folder only resumes the study that wrote it;
offline mode keeps one file with the same fingerprint (:class:`StudyCheckpoint`).
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
from pdesolve.train import CheckpointStore

log = logging.getLogger(__name__)
MANIFEST = "checkpoint.json"


class Checkpoints(CheckpointStore):
    """Server ``index`` of ``servers``; ``barrier`` synchronizes the servers (an MPI barrier).

    ``after_save`` runs once a checkpoint set is complete (the server rewrites its CSV files then).
    """

    def __init__(self, folder: Path, index: int, servers: int, digest: str, barrier: Callable[[], None],
                 after_save: Callable[[], None] | None = None):
        self.folder, self.index, self.servers, self.digest, self.barrier = Path(folder), index, servers, digest, barrier
        self.dir = self.folder / "checkpoints"
        self.after_save = after_save

    def _file(self, step: int) -> Path:
        return self.dir / f"step{step:09d}-server{self.index}.pt"

    def save(self, state: dict[str, Any]) -> None:
        """Write this server's state (``state["step"]``) and, with the others, move the manifest to it (collective)."""
        step = int(state["step"])
        path = self._file(step)
        write_with(path, lambda p: torch.save(state, p))
        self.barrier()
        if self.index == 0:
            write_json(self.folder / MANIFEST, {"step": step, "servers": self.servers, "study": self.digest})
        self.barrier()
        for old in self.dir.glob(f"step*-server{self.index}.pt"):
            if old != path:
                old.unlink(missing_ok=True)
        if self.after_save is not None:
            self.after_save()

    def exists(self) -> bool:
        return self.manifest() is not None

    def __str__(self) -> str:
        return str(self.folder / MANIFEST)

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

    def load(self) -> dict[str, Any]:
        """This server's state at the manifest's step."""
        info = self.manifest()
        if info is None:
            raise UserError(f"{self.folder}: no {MANIFEST} to resume from")
        path = self._file(int(info["step"]))
        if not path.exists():
            raise UserError(f"{self.folder / MANIFEST} names step {info['step']}, but {path} is missing; pass --overwrite")
        return _load(path)


class StudyCheckpoint(CheckpointStore):
    """Offline mode's one checkpoint file, which only resumes the study (fingerprint) that wrote it."""

    def __init__(self, path: Path, digest: str):
        self.path, self.digest = Path(path), digest

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> dict[str, Any]:
        state = _load(self.path)
        if state.get("study") != self.digest:
            raise UserError(f"{self.path} is a checkpoint of a different study (fingerprint {state.get('study')}, this study "
                            f"{self.digest}); pass --overwrite to start over, or --out another folder")
        return state

    def save(self, state: dict[str, Any]) -> None:
        full = {**state, "study": self.digest}
        write_with(self.path, lambda p: torch.save(full, p))


def _load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user-facing fact
        raise UserError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err}); pass --overwrite to start over") from None
