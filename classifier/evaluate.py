"""Evaluate scores or a classifier head on a labelled ClipSet and write the report files."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from classifier.clipset import ClipSet
from classifier.labels import load_class_labels
from classifier.metrics import Metrics, compute_metrics
from classifier.report import per_class_rows, plot_ap_vs_count, write_json, write_per_class_csv

logger = logging.getLogger(__name__)

REPORT_FILES = ("per_class.csv", "per_class.json", "summary.json", "ap_vs_train_count.png")


class ClipPredictor(Protocol):
    """What evaluate_head needs from a head: clip scores float32 [N, C] from uint8 [T_i, 128] clips."""

    def predict_clips(self, embeddings: Sequence[np.ndarray]) -> np.ndarray: ...


def _mids_for(class_names: Sequence[str]) -> list[str]:
    """AudioSet mids when class_names are AudioSet's display names, else the names themselves."""
    audioset = load_class_labels()
    if list(class_names) == audioset.names:
        return list(audioset.mids)
    return list(class_names)


def evaluate_predictions(
    y_true: np.ndarray,
    y_score: np.ndarray,
    class_names: Sequence[str],
    train_counts: np.ndarray | Sequence[int] | None,
    out_dir: str | os.PathLike[str],
    *,
    extra: dict[str, Any] | None = None,
) -> Metrics:
    """Compute metrics and write REPORT_FILES into out_dir (each atomically).

    y_true bool [N, C], y_score float [N, C], class_names [C], train_counts int [C] (training clips per
    class; None when unknown: the plot then uses evaluation positives). extra: more summary.json fields.
    per_class.csv/json columns: index, mid, name, train_count, n_eval_positives, AP, AUC (empty/null when
    the class has no positive or no negative clip). summary.json: mAP, mAUC, d_prime, n_classes_used,
    n_classes_excluded, n_clips, plus extra.
    """
    metrics = compute_metrics(y_true, y_score)
    names = list(class_names)
    if len(names) != metrics.ap.shape[0]:
        raise ValueError(f"{len(names)} class names for {metrics.ap.shape[0]} score columns")
    counts = None if train_counts is None else np.asarray(train_counts, dtype=np.int64)
    if counts is not None and counts.shape != (len(names),):
        raise ValueError(f"train_counts must have shape [{len(names)}], got {counts.shape}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = per_class_rows(metrics, _mids_for(names), names, counts)
    write_per_class_csv(rows, out / "per_class.csv")
    write_json(rows, out / "per_class.json")
    summary = {**metrics.summary(), **(extra or {})}
    if metrics.notes():
        summary["notes"] = metrics.notes()
    write_json(summary, out / "summary.json")  # nan (no usable class) and ±inf (perfect d') become null
    if counts is None:
        plot_ap_vs_count(metrics, metrics.n_positives, out / "ap_vs_train_count.png",
                         count_label="evaluation clips per class (training counts unknown)")
    else:
        plot_ap_vs_count(metrics, counts, out / "ap_vs_train_count.png",
                         count_label="training clips per class")
    logger.info("mAP %.4f, mAUC %.4f, d' %.3f over %d classes (%d excluded), %d clips -> %s",
                metrics.mAP, metrics.mAUC, metrics.d_prime, metrics.n_classes_used,
                metrics.n_classes_excluded, metrics.n_clips, out)
    return metrics


def evaluate_head(
    head: ClipPredictor,
    clipset: ClipSet,
    out_dir: str | os.PathLike[str],
    train_counts: np.ndarray | Sequence[int] | None = None,
) -> Metrics:
    """Score every clip of clipset with head.predict_clips (real frames only, uint8 [T,128]) and report.

    A head with `class_names` must list the clipset's classes in the same order. summary.json also gets
    the head's `name` (when it has one) as "model".
    """
    head_names = getattr(head, "class_names", None)
    if head_names is not None and list(head_names) != list(clipset.class_names):
        raise ValueError(
            f"head classes ({len(head_names)}) differ from the evaluation set's ({clipset.num_classes})"
        )
    scores = np.asarray(head.predict_clips(clipset.clips()), dtype=np.float32)
    if scores.shape != clipset.y.shape:
        raise ValueError(f"head returned scores {scores.shape}, expected {clipset.y.shape}")
    extra = {"model": str(head.name)} if getattr(head, "name", None) else None
    return evaluate_predictions(clipset.y, scores, clipset.class_names, train_counts, out_dir, extra=extra)
