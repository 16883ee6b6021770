"""Multi-label evaluation as in the AudioSet papers (mAP, mean AUC and d′ over classes with positives) and
single-label evaluation (accuracy, macro-F1, the confusion matrix)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class Metrics:
    """Per-class and averaged scores.

    ap, auc: float64 [C], nan for excluded classes (no positive or no negative clip in y_true).
    mAP, mAUC: means over the used classes; d_prime = sqrt(2) * Phi^-1(mAUC).
    n_positives: int64 [C] positive clips per class in y_true.
    """

    mAP: float  # noqa: N815 (the papers' name)
    mAUC: float  # noqa: N815
    d_prime: float
    ap: np.ndarray
    auc: np.ndarray
    n_positives: np.ndarray
    n_classes_used: int
    n_classes_excluded: int
    n_clips: int

    def summary(self) -> dict[str, float | int]:
        """The scalar results as a JSON-ready dict."""
        return {
            "mAP": self.mAP, "mAUC": self.mAUC, "d_prime": self.d_prime,
            "n_classes_used": self.n_classes_used, "n_classes_excluded": self.n_classes_excluded,
            "n_clips": self.n_clips,
        }

    def notes(self) -> list[str]:
        """What could not be computed, and why, in words (empty when everything was)."""
        notes = []
        if self.n_classes_used == 0:
            notes.append(
                f"no class has both positive and negative clips among the {self.n_clips} clips: mAP, mAUC "
                "and d_prime cannot be computed (null)"
            )
        elif self.n_classes_excluded:
            notes.append(
                f"{self.n_classes_excluded} of {self.n_classes_used + self.n_classes_excluded} classes have "
                "no positive or no negative clip: left out of the means"
            )
        if math.isinf(self.d_prime):
            notes.append(
                f"d_prime is {'+' if self.d_prime > 0 else '-'}infinity (mean AUC {self.mAUC:g}: the scores "
                "separate positives from negatives perfectly); written as null"
            )
        return notes


def d_prime(auc: float) -> float:
    """d′ = sqrt(2) * Phi^-1(AUC): the separation of two unit Gaussians giving this AUC (0 at AUC 0.5)."""
    return float(math.sqrt(2.0) * norm.ppf(auc))


def _ap_auc(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row AP and ROC AUC of y_true bool [K, N] (each row with positives and negatives), scores [K, N].

    Vectorized over rows; identical (to float rounding) to scikit-learn's average_precision_score
    (sum over distinct thresholds of recall increase times precision) and roc_auc_score (a tied
    positive/negative pair counts half). tests/test_classifier_metrics.py checks both against scikit-learn.
    """
    k, n = y_true.shape
    positions = np.broadcast_to(np.arange(n), (k, n))
    order = np.argsort(-y_score, axis=1, kind="stable")
    scores = np.take_along_axis(y_score, order, axis=1)
    hits = np.take_along_axis(y_true, order, axis=1)
    # Tie groups: every clip is counted at its group's end (all tied clips pass the same threshold).
    new_group = np.ones((k, n), bool)
    new_group[:, 1:] = scores[:, 1:] != scores[:, :-1]
    group_end = np.ones((k, n), bool)
    group_end[:, :-1] = new_group[:, 1:]
    start = np.maximum.accumulate(np.where(new_group, positions, 0), axis=1)
    end = np.minimum.accumulate(np.where(group_end, positions, n)[:, ::-1], axis=1)[:, ::-1]
    true_pos = np.cumsum(hits, axis=1)
    false_pos = positions + 1 - true_pos
    positives = true_pos[:, -1].astype(np.float64)
    negatives = n - positives
    precision_at_end = np.take_along_axis(true_pos, end, axis=1) / (end + 1)
    ap = (precision_at_end * hits).sum(axis=1) / positives
    # For each positive: negatives scored below it, plus half of the negatives tied with it.
    neg_to_end = np.take_along_axis(false_pos, end, axis=1)
    neg_before_group = np.take_along_axis(false_pos, start, axis=1) - ~hits[np.arange(k)[:, None], start]
    wins = (negatives[:, None] - neg_to_end) + 0.5 * (neg_to_end - neg_before_group)
    auc = (wins * hits).sum(axis=1) / (positives * negatives)
    return ap, auc


def compute_metrics(y_true: np.ndarray, y_score: np.ndarray, *, chunk: int = 64) -> Metrics:
    """Score y_score float [N, C] against y_true bool [N, C].

    AP and AUC follow scikit-learn's definitions exactly (see _ap_auc), computed `chunk` classes at a
    time. Classes without any positive, or without any negative, have no defined AP/AUC: they are excluded
    from the means (nan per class) and counted in n_classes_excluded. With no usable class the means are nan.
    """
    y_true = np.asarray(y_true).astype(bool)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must both be [N, C]")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score contains nan or inf")
    n, c = y_true.shape
    positives = y_true.sum(axis=0).astype(np.int64)
    used = np.flatnonzero((positives > 0) & (positives < n))
    ap = np.full(c, np.nan)
    auc = np.full(c, np.nan)
    for start in range(0, len(used), chunk):
        columns = used[start : start + chunk]
        ap[columns], auc[columns] = _ap_auc(y_true[:, columns].T.copy(), y_score[:, columns].T.copy())
    n_used = len(used)
    mean_ap = float(np.mean(ap[used])) if n_used else math.nan
    mean_auc = float(np.mean(auc[used])) if n_used else math.nan
    return Metrics(
        mAP=mean_ap, mAUC=mean_auc, d_prime=d_prime(mean_auc) if n_used else math.nan,
        ap=ap, auc=auc, n_positives=positives, n_classes_used=n_used, n_classes_excluded=c - n_used,
        n_clips=n,
    )


@dataclass(frozen=True)
class PairedBootstrap:
    """mAP(a) - mAP(b) on the same clips: the observed difference, the bootstrap mean and standard
    deviation of the difference over clip resamples, and the share of resamples in which a scores higher."""

    difference: float
    mean: float
    std: float
    p_a_better: float
    samples: int


def paired_bootstrap_map(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, *, samples: int = 200,
                         seed: int = 0) -> PairedBootstrap:
    """How well do these clips separate two score sets? Resamples the N clips (rows) with replacement
    ``samples`` times, the same rows for both, and compares their mAPs (see PairedBootstrap). y_true bool
    [N, C], scores float [N, C]."""
    observed = compute_metrics(y_true, score_a).mAP - compute_metrics(y_true, score_b).mAP
    rng = np.random.default_rng(seed)
    diffs = np.empty(samples)
    for i in range(samples):
        rows = rng.integers(0, len(y_true), len(y_true))
        truth = y_true[rows]
        diffs[i] = compute_metrics(truth, score_a[rows]).mAP - compute_metrics(truth, score_b[rows]).mAP
    return PairedBootstrap(observed, float(diffs.mean()), float(diffs.std(ddof=1)), float((diffs > 0).mean()),
                           samples)


@dataclass(frozen=True)
class ClassMetrics:
    """Single-label scores of predicted classes (each clip's top class) against true classes.

    accuracy: share of clips whose top class is their label. macro_f1: mean F1 over the classes that occur
    as a label or a prediction (scikit-learn's f1_score(average="macro"); a class with no true positive
    has F1 0). precision, recall, f1: float64 [C], nan where undefined (no prediction / no clip of the
    class). support: int64 [C] clips per true class. confusion: int64 [C, C], rows true class, columns
    predicted class.
    """

    accuracy: float
    macro_f1: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    confusion: np.ndarray

    def summary(self) -> dict[str, float]:
        """The scalar results as a JSON-ready dict."""
        return {"accuracy": self.accuracy, "macro_F1": self.macro_f1}


def class_metrics(y_true: np.ndarray, y_score: np.ndarray) -> ClassMetrics:
    """Single-label metrics of scores float [N, C] against one-hot labels bool [N, C] (each clip exactly one
    label; ValueError otherwise); the predicted class is each row's highest score (ties: the first)."""
    y_true = np.asarray(y_true).astype(bool)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must both be [N, C]")
    if not (y_true.sum(axis=1) == 1).all():
        raise ValueError("single-label metrics need exactly one label per clip")
    c = y_true.shape[1]
    truth, predicted = y_true.argmax(axis=1), y_score.argmax(axis=1)
    confusion = np.bincount(truth * c + predicted, minlength=c * c).reshape(c, c).astype(np.int64)
    hits = np.diag(confusion).astype(np.float64)
    support, predicted_count = confusion.sum(axis=1), confusion.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = hits / predicted_count
        recall = hits / support
        f1 = 2 * hits / (support + predicted_count)
    occurring = (support + predicted_count) > 0
    return ClassMetrics(
        accuracy=float(hits.sum() / max(len(truth), 1)),
        macro_f1=float(f1[occurring].mean()) if occurring.any() else math.nan,
        precision=precision, recall=recall, f1=f1, support=support, confusion=confusion,
    )
