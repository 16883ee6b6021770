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
from classifier.metrics import ClassMetrics, Metrics, class_metrics, compute_metrics
from classifier.report import (
    per_class_rows,
    plot_ap_vs_count,
    plot_confusion,
    write_confusion_csv,
    write_json,
    write_per_class_csv,
)

logger = logging.getLogger(__name__)

REPORT_FILES = ("per_class.csv", "per_class.json", "summary.json", "ap_vs_train_count.png")
CONFUSION_CSV, CONFUSION_PNG = "confusion.csv", "confusion.png"
SINGLE_LABEL_FILES = (CONFUSION_CSV, CONFUSION_PNG)  # also written for multiclass heads


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
    task: str = "multilabel",
) -> Metrics:
    """Compute metrics and write REPORT_FILES into out_dir (each atomically); for ``task`` "multiclass" also
    accuracy and macro-F1 (summary.json "accuracy", "macro_F1"; per-class precision, recall, F1) and
    SINGLE_LABEL_FILES, when every clip has exactly one label (else a note says why not).

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
    single = _single_label(y_true, y_score, task)
    rows = per_class_rows(metrics, _mids_for(names), names, counts, single)
    write_per_class_csv(rows, out / "per_class.csv")
    write_json(rows, out / "per_class.json")
    summary = {**metrics.summary(), **(single.summary() if single else {}), **(extra or {})}
    notes = metrics.notes()
    if task == "multiclass" and single is None:
        notes.append("a multiclass head, but not every clip has exactly one label: no accuracy or macro-F1")
    if single is not None:
        write_confusion_csv(single.confusion, names, out / CONFUSION_CSV)
        plot_confusion(single.confusion, names, out / CONFUSION_PNG)
    if notes:
        summary["notes"] = notes
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


def _single_label(y_true: np.ndarray, y_score: np.ndarray, task: str) -> ClassMetrics | None:
    """Single-label metrics for a multiclass task whose clips each have exactly one label; else None."""
    one_label = bool(len(y_true)) and bool((np.asarray(y_true).sum(axis=1) == 1).all())
    return class_metrics(y_true, y_score) if task == "multiclass" and one_label else None


def evaluate_head(
    head: ClipPredictor,
    clipset: ClipSet,
    out_dir: str | os.PathLike[str],
    train_counts: np.ndarray | Sequence[int] | None = None,
) -> Metrics:
    """Score every clip of clipset with head.predict_clips (real frames only, uint8 [T,128]) and report.

    A head with `class_names` must list the clipset's classes in the same order. summary.json also gets
    the head's `name` (when it has one) as "model". A head whose `task` is "multiclass" is also scored as
    a single-label classifier (see evaluate_predictions).
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
    return evaluate_predictions(clipset.y, scores, clipset.class_names, train_counts, out_dir, extra=extra,
                                task=getattr(head, "task", "multilabel"))
