"""Retrain a classifier head on a user's own embeddings and label set, with its own evaluation report.

The embeddings are anything :func:`classifier.readers.load_clipset` reads (``audiotag extract`` outputs,
AudioSet-format TFRecords, HDF5); the labels come from a CSV with header ``id,labels`` (any number of
classes, named freely).  The head is trained with :func:`classifier.train.train_clipset` on a seeded
held-out split, then evaluated on that held-out part with :func:`classifier.evaluate.evaluate_predictions`
(per-class AP/AUC, mAP, d'), and saved as ``out_dir/head.npz``, loadable with
:func:`classifier.pretrained.load_head`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from classifier.clipset import ClipSet
from classifier.metrics import Metrics
from classifier.train import TrainConfig, TrainError, split_holdout, train_clipset

logger = logging.getLogger(__name__)


class RetrainError(TrainError):
    """The user's data or settings cannot be retrained on; the message says why."""

RETRAIN_DEFAULTS = {"hidden_units": 512, "batch_size": 128, "iterations": 1000, "eval_every": 50,
                    "checkpoint_every": 50, "holdout_fraction": 0.2, "snapshots": 3}
"""Settings suited to small user sets (hundreds to thousands of clips); any TrainConfig field overrides."""


@dataclass
class RetrainResult:
    """head_path: the saved head; metrics: held-out metrics (None without a held-out part); report_dir."""

    head_path: Path
    metrics: Metrics | None
    report_dir: Path | None


def retrain_clipset(data: ClipSet, out_dir: str | os.PathLike[str], **overrides) -> RetrainResult:
    """Train a head on ``data`` (its own class_names) and evaluate it on the held-out part."""
    from classifier.evaluate import evaluate_predictions
    from classifier.pretrained import load_head

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise RetrainError(f"unknown training settings: {sorted(unknown)}")
    config = TrainConfig(**(RETRAIN_DEFAULTS | overrides | {"out_dir": str(out_dir)}))
    if len(data) == 0 or not data.y.any():
        raise RetrainError("no labelled clips to train on (check that the labels CSV ids match the clips)")
    head_path = train_clipset(config, data)
    train_set, holdout = split_holdout(config, data)
    if holdout is None or len(holdout) == 0:
        logger.info("no held-out part (holdout_fraction=%s): no evaluation report", config.holdout_fraction)
        return RetrainResult(head_path, None, None)
    head = load_head(head_path)
    scores = head.predict_arrays(holdout.x, holdout.mask)
    report_dir = Path(out_dir) / "report"
    metrics = evaluate_predictions(holdout.y, scores, data.class_names, train_set.class_counts(), report_dir,
                                   extra={"model": str(head_path), "split": "held-out part of the user data"},
                                   task=config.task)
    logger.info("held-out mAP %.4f over %d classes; report in %s", metrics.mAP, metrics.n_classes_used,
                report_dir)
    return RetrainResult(head_path, metrics, report_dir)


def retrain(train_data: str | os.PathLike[str], labels_csv: str | os.PathLike[str],
            out_dir: str | os.PathLike[str], **overrides) -> RetrainResult:
    """Load ``train_data`` with the labels of ``labels_csv`` and run :func:`retrain_clipset`.

    The classes are every distinct label in the CSV, sorted (``classes_from_labels_csv``).
    ``overrides``: any :class:`TrainConfig` field (kind, hidden_units, iterations, ...).
    """
    from classifier.readers import classes_from_labels_csv, load_clipset

    data = load_clipset(train_data, labels_csv=labels_csv, class_names=classes_from_labels_csv(labels_csv))
    logger.info("retraining on %d clips, %d classes", len(data), data.num_classes)
    return retrain_clipset(data, out_dir, train_data=str(train_data), labels_csv=str(labels_csv), **overrides)
