"""Per-class decision thresholds that maximise clip-level F1, and clip-level F1 itself.

Chosen on held-out clips with clip labels (for the shipped head: the held-out split of balanced_train that
training uses, ``classifier.train.split_holdout``); the eval set is only reported on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD_GRID = np.round(np.arange(0.02, 0.981, 0.02), 2)  # candidate thresholds (probabilities)
DEFAULT_THRESHOLD = 0.5  # classes without a positive held-out clip keep it


def f1_thresholds(y_true: np.ndarray, scores: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """float32 [C]: per class, the grid threshold with the highest F1 of ``scores >= t`` against y_true
    (bool [N, C]; scores float [N, C]); ties go to the middle of the best run of thresholds; classes without
    a positive clip get DEFAULT_THRESHOLD."""
    y_true = np.asarray(y_true, bool)
    scores = np.asarray(scores, np.float32)
    predicted = scores[None, :, :] >= grid[:, None, None].astype(np.float32)  # [G, N, C]
    tp = (predicted & y_true[None]).sum(axis=1).astype(np.float64)
    fp = (predicted & ~y_true[None]).sum(axis=1)
    fn = y_true.sum(axis=0)[None] - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1.0)  # [G, C]
    out = np.full(scores.shape[1], DEFAULT_THRESHOLD, np.float32)
    for c in np.flatnonzero(y_true.any(axis=0)):
        best = np.flatnonzero(np.isclose(f1[:, c], f1[:, c].max()))
        run = best[best - best[0] == np.arange(len(best))]  # the first contiguous run of best thresholds
        out[c] = grid[run[len(run) // 2]]
    return out


@dataclass(frozen=True)
class ClipF1:
    """Clip-level F1 of thresholded scores: macro (mean over classes with positives) and micro (pooled)."""

    macro: float
    micro: float


def clip_f1(y_true: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | float) -> ClipF1:
    """F1 of ``scores >= thresholds`` (float [C] or one float) against y_true bool [N, C]."""
    y_true = np.asarray(y_true, bool)
    predicted = np.asarray(scores, np.float32) >= np.asarray(thresholds, np.float32)
    tp = (predicted & y_true).sum(axis=0).astype(np.float64)
    fp = (predicted & ~y_true).sum(axis=0)
    fn = (~predicted & y_true).sum(axis=0)
    used = y_true.any(axis=0)
    per_class = 2 * tp[used] / np.maximum(2 * tp[used] + fp[used] + fn[used], 1.0)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1.0)
    return ClipF1(float(per_class.mean()) if used.any() else float("nan"), float(micro))
