"""Errors of a prediction against a reference, in float64."""

from __future__ import annotations

from typing import Any

import numpy as np


def relative_l2(pred: np.ndarray, ref: np.ndarray) -> float:
    """``||pred - ref||_2 / ||ref||_2`` over all entries."""
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    denom = np.linalg.norm(ref)
    return float(np.linalg.norm(pred - ref) / (denom if denom > 0 else 1.0))


def max_error(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(pred, np.float64) - np.asarray(ref, np.float64))))


def error_metrics(pred: np.ndarray, ref: np.ndarray, inside: np.ndarray | None = None) -> dict[str, float]:
    """The standard pair reported for every run; ``inside`` (``bool [*space]``, the trailing axes): score only those
    points (a region's grid points, :func:`region_mask`)."""
    if inside is not None:
        keep = np.broadcast_to(inside, np.shape(ref))
        pred, ref = np.asarray(pred)[keep], np.asarray(ref)[keep]
    return {"rel_l2": relative_l2(pred, ref), "max_error": max_error(pred, ref)}


def region_mask(domain: Any, grid: Any) -> np.ndarray | None:
    """``bool [*space]``: the grid's space points inside the domain's geometry (None for a box: every point counts)."""
    if domain.geometry is None:
        return None
    mesh = np.meshgrid(*(a.coords for a in grid.space), indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], axis=1)
    return np.asarray(domain.geometry.inside(pts), dtype=bool).reshape(grid.space_shape)


def outside_as_nan(values: np.ndarray, inside: np.ndarray | None) -> np.ndarray:
    """``values`` ``[..., *space]`` with the points outside the region set to NaN (unchanged without a region)."""
    if inside is None:
        return values
    return np.where(np.broadcast_to(inside, values.shape), values, np.nan)
