"""Errors of a prediction against a reference, in float64."""

from __future__ import annotations

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


def error_metrics(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The standard pair reported for every run."""
    return {"rel_l2": relative_l2(pred, ref), "max_error": max_error(pred, ref)}
