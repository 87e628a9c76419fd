"""Solution: fields on a Grid, the one thing that metrics, plots and result files take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .grid import Grid


@dataclass(frozen=True)
class Solution:
    """``values`` is ``[batch, time, channel, *space]`` on ``grid`` (``[batch, channel, *space]`` without time).

    ``values`` may be a numpy array or a torch tensor; :meth:`numpy` gives float64 numpy.
    """

    grid: Grid
    fields: tuple[str, ...]
    values: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        shape = tuple(self.values.shape)
        lead = 2 if self.grid.time is not None else 1
        expected = self.grid.shape[:1] if self.grid.time is not None else ()
        if (
            len(shape) != lead + 1 + self.grid.ndim
            or shape[lead] != len(self.fields)
            or tuple(shape[1:lead]) != expected
            or tuple(shape[lead + 1 :]) != self.grid.space_shape
        ):
            layout = "[batch, time, channel, *space]" if self.grid.time is not None else "[batch, channel, *space]"
            raise ValueError(
                f"expected values {layout} with time={expected}, channels={len(self.fields)}, "
                f"space={self.grid.space_shape}, got shape {shape}"
            )

    def numpy(self) -> np.ndarray:
        v = self.values
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        return np.asarray(v, dtype=np.float64)

    @property
    def batch(self) -> int:
        return int(self.values.shape[0])

    def field(self, name: str) -> np.ndarray:
        """One field as ``[batch, (time,) *space]`` float64."""
        if name not in self.fields:
            raise KeyError(f"no field {name!r}; this solution has {list(self.fields)}")
        lead = 2 if self.grid.time is not None else 1
        return np.take(self.numpy(), self.fields.index(name), axis=lead)
