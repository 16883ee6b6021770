"""Comparing candidate models on a user's clips: the evaluation splits, each candidate's out-of-fold
predictions and per-split scores, and the choice among them.

Evaluation: stratified k-fold cross-validation (:func:`classifier.sampling.kfold_split`, ``folds`` parts,
at most the smallest class's clip count) when the smallest class has fewer than SMALL_DATA_CLIPS clips or
``folds`` is given; otherwise one stratified held-out part of HOLDOUT_FRACTION
(:func:`classifier.sampling.holdout_split`). Every candidate is fitted on each split's training part and
scores its test part: accuracy and macro-F1 for single-label tasks, mAP for multi-label ones.

Candidates: the linear probe (:mod:`classifier.linear_probe`) and attention models trained by
:func:`classifier.train.train_clipset` with SMALL_DATA_SETTINGS (small, few iterations: seconds per fit on a
few hundred clips), at a fixed number of iterations and without a held-out part, so nothing of a test part
is seen before it is scored. Each attention fit is a resumable training run in its own folder; a finished
one (its head.npz written) is reused.

The choice (:func:`choose`) follows the one-standard-error rule: the simplest candidate (CANDIDATES is in
order of complexity, the linear probe first) whose mean primary metric (accuracy, or mAP) is within one
standard error of the best one's, the error being that of their paired difference over the clips. On a few
clips per class the scores are noisy, and the simplest model is then the safest choice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.clipset import ClipSet
from classifier.head_file import read_head
from classifier.inference import Member, weight_layout
from classifier.linear_probe import fit_linear
from classifier.sampling import holdout_split, kfold_split
from classifier.train import TrainConfig, TrainError, train_clipset

logger = logging.getLogger(__name__)

SMALL_DATA_CLIPS = 50  # below this many clips in the smallest class: k-fold cross-validation
DEFAULT_FOLDS = 5
HOLDOUT_FRACTION = 0.2  # the held-out part when every class has SMALL_DATA_CLIPS clips or more
AUTO_MODEL = "auto"  # compare CANDIDATES and keep the best
LINEAR = "linear"
ATTENTION_KINDS = ("single_attention", "multi_attention", "feature_attention")
CANDIDATES = (LINEAR, *ATTENTION_KINDS)  # simplest first: the choice prefers the earlier ones
SMALL_DATA_SETTINGS = {"hidden_units": 128, "num_layers": 2, "batch_size": 64, "iterations": 300,
                       "checkpoint_every": 100}
"""Attention models' TrainConfig settings for small sets (any field can be overridden). On draws of the
own-sounds benchmark (benchmarks/own_sounds.py, 5-100 clips per class) 600 iterations scored lower, and 256
units with mixup and frame dropout about the same at twice the time."""
BOOTSTRAP_SAMPLES = 200  # resamples of the clips for the standard error of an mAP difference
PRIMARY_METRIC = {"multiclass": "accuracy", "multilabel": "mAP"}
METRICS = {"multiclass": ("accuracy", "macro_F1"), "multilabel": ("mAP",)}
# TrainConfig fields that the candidates' training runs set themselves
_RUN_FIELDS = ("kind", "out_dir", "task", "holdout_fraction", "folds", "fold", "eval_every", "snapshots",
               "snapshot_average", "progress", "train_data", "labels_csv", "seed")


@dataclass(frozen=True)
class Evaluation:
    """How candidates are scored: ``scheme`` in words and the splits, (train rows, test rows) int64 each."""

    scheme: str
    splits: list[tuple[np.ndarray, np.ndarray]]


@dataclass
class CandidateResult:
    """One candidate's scores: per split {metric: value}, its out-of-fold probabilities float32 [N, C] (nan
    rows for clips no split tests) and the mean seconds per fit."""

    name: str
    split_scores: list[dict[str, float]]
    oof: np.ndarray
    fit_seconds: float

    def _values(self, metric: str) -> np.ndarray:
        values = np.array([s[metric] for s in self.split_scores], np.float64)
        return values[np.isfinite(values)]  # a split without a usable class has no mAP

    def mean(self, metric: str) -> float:
        """Mean over the splits (nan when no split has a value)."""
        values = self._values(metric)
        return float(values.mean()) if len(values) else float("nan")

    def std(self, metric: str) -> float:
        """Standard deviation over the splits (0 for one split)."""
        values = self._values(metric)
        return float(values.std()) if len(values) else float("nan")

    def row(self, task: str) -> dict[str, float | str]:
        """{"model", "<metric>_mean", "<metric>_std" ..., "fit_seconds"}: one line of the comparison table."""
        row: dict[str, float | str] = {"model": self.name}
        for metric in METRICS[task]:
            row |= {f"{metric}_mean": self.mean(metric), f"{metric}_std": self.std(metric)}
        return row | {"fit_seconds": self.fit_seconds}


def plan_evaluation(y: np.ndarray, folds: int | None = None, seed: int = 0) -> Evaluation:
    """The splits of labels y bool [N, C] (see the module docstring); TrainError when a class has fewer than
    two clips (it could never be both trained on and tested)."""
    counts = np.asarray(y, bool).sum(axis=0)
    smallest = int(counts.min())
    if smallest < 2:
        raise TrainError(f"{int((counts < 2).sum())} class(es) have fewer than 2 clips; every class needs at "
                         "least 2 to be cross-validated")
    if folds is not None and folds < 2:
        raise TrainError(f"cross-validation needs at least 2 folds, got {folds}")
    if folds is None and smallest >= SMALL_DATA_CLIPS:
        train_idx, test_idx = holdout_split(y, HOLDOUT_FRACTION, seed=seed)
        return Evaluation(f"one stratified held-out part ({HOLDOUT_FRACTION:.0%} of the clips)",
                          [(train_idx, test_idx)])
    k = min(folds or DEFAULT_FOLDS, smallest)
    parts = kfold_split(y, k, seed=seed)
    splits = [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), parts[i]) for i in range(k)]
    note = f" (the smallest class has {smallest} clips)" if k < (folds or DEFAULT_FOLDS) else ""
    return Evaluation(f"stratified {k}-fold cross-validation{note}", splits)


def split_scores(y: np.ndarray, probs: np.ndarray, task: str) -> dict[str, float]:
    """{metric: value} of METRICS[task] for labels y bool [n, C] and probabilities float [n, C]."""
    from classifier.metrics import class_metrics, compute_metrics

    if task == "multiclass":
        return class_metrics(y, probs).summary()
    return {"mAP": compute_metrics(y, probs).mAP}


def train_config(kind: str, task: str, run_dir: str | os.PathLike[str], settings: Mapping[str, object],
                 seed: int = 0, tag: str = "") -> TrainConfig:
    """The TrainConfig of a candidate's training run: SMALL_DATA_SETTINGS | ``settings``, on all the clips
    it is given (no held-out part), one evaluation point at the end. ``tag`` identifies the data in the
    run's config (a changed tag refuses to resume). TrainError naming the setting that does not fit."""
    forbidden = sorted(set(settings) & set(_RUN_FIELDS))
    if forbidden:
        raise TrainError(f"these settings are chosen by the cross-validation itself: {forbidden}")
    fields = SMALL_DATA_SETTINGS | dict(settings)
    try:
        config = TrainConfig(**(fields | {
            "kind": kind, "out_dir": str(run_dir), "task": task, "holdout_fraction": 0.0, "folds": 0,
            "fold": 0, "eval_every": int(fields["iterations"]), "snapshots": 1, "progress": False,
            "train_data": tag, "seed": seed}))
    except TypeError as exc:
        raise TrainError(f"unknown training setting ({exc})") from None
    config.check()
    try:
        weight_layout(**config.model_config(2))
    except ValueError as exc:
        raise TrainError(f"{kind}: {exc}") from None
    return config


def fit_member(kind: str, data: ClipSet, task: str, run_dir: str | os.PathLike[str],
               settings: Mapping[str, object], seed: int = 0, tag: str = "") -> tuple[dict, list[np.ndarray]]:
    """Fit one candidate on ``data``: (member config, weights). The linear probe is fitted directly; other
    kinds train in ``run_dir`` (:func:`train_config`; resumable, and a finished run's head is reused)."""
    if kind == LINEAR:
        return fit_linear(data.x, data.mask, data.y, task)
    head_path = Path(run_dir) / "head.npz"
    if not head_path.is_file():
        train_clipset(train_config(kind, task, run_dir, settings, seed, tag), data)
    stored = read_head(head_path)
    return stored.member_configs[0], stored.member_weights[0]


def predict(config: dict, weights: Sequence[np.ndarray], data: ClipSet) -> np.ndarray:
    """Clip probabilities float32 [N, C] of one member on ``data``."""
    return Member(config, weights).clip_probs(data.x.astype(np.float32), data.mask.astype(np.float32))


def cross_validate(data: ClipSet, task: str, candidates: Sequence[str], evaluation: Evaluation,
                   work_dir: str | os.PathLike[str], settings: Mapping[str, object] | None = None,
                   seed: int = 0, tag: str = "", on_fit=None) -> list[CandidateResult]:
    """Every candidate fitted on every split's training part and scored on its test part. Attention runs
    live in ``work_dir/cv/<kind>/split<i>``. ``on_fit(candidate, split)`` is called after each fit
    (progress)."""
    for name in candidates:  # every setting checked before the first fit
        if name != LINEAR:
            train_config(name, task, work_dir, settings or {}, seed)
    results = []
    for name in candidates:
        oof = np.full(data.y.shape, np.nan, np.float32)
        scores, seconds = [], []
        for i, (train_idx, test_idx) in enumerate(evaluation.splits):
            started = time.perf_counter()
            run_dir = Path(work_dir) / "cv" / name / f"split{i}"
            config, weights = fit_member(name, data.subset(train_idx), task, run_dir, settings or {}, seed,
                                         f"{tag} split {i}")
            seconds.append(time.perf_counter() - started)
            if on_fit is not None:
                on_fit(name, i)
            test = data.subset(test_idx)
            oof[test_idx] = predict(config, weights, test)
            scores.append(split_scores(test.y, oof[test_idx], task))
        result = CandidateResult(name, scores, oof, float(np.mean(seconds)))
        logger.info("%s: %s", name, {k: round(v, 4) if isinstance(v, float) else v
                                     for k, v in result.row(task).items()})
        results.append(result)
    return results


def difference_error(y: np.ndarray, better: CandidateResult, other: CandidateResult, task: str) -> float:
    """Standard error of the primary metric's difference between two candidates, paired over the clips both
    scored out of fold (y bool [N, C]): per-clip correctness for accuracy, a paired bootstrap for mAP."""
    rows = np.flatnonzero(np.isfinite(better.oof).all(axis=1) & np.isfinite(other.oof).all(axis=1))
    if len(rows) < 2:
        return 0.0
    if task == "multiclass":
        truth = y[rows].argmax(axis=1)
        gain = ((better.oof[rows].argmax(axis=1) == truth).astype(np.float64)
                - (other.oof[rows].argmax(axis=1) == truth))
        return float(gain.std(ddof=1) / np.sqrt(len(rows)))
    from classifier.metrics import paired_bootstrap_map

    return paired_bootstrap_map(y[rows], better.oof[rows], other.oof[rows], samples=BOOTSTRAP_SAMPLES).std


def choose(results: Sequence[CandidateResult], task: str, y: np.ndarray) -> tuple[str, str]:
    """(the chosen candidate's name, why in one sentence) among ``results`` on labels y bool [N, C]: the
    first candidate, simplest first, whose mean primary metric is below the best one's by at most one
    standard error of their difference (:func:`difference_error`), so that a more complex model must win
    clearly to be chosen."""
    metric = PRIMARY_METRIC[task]

    def score(result: CandidateResult) -> float:
        value = result.mean(metric)
        return value if np.isfinite(value) else -np.inf

    best = max(results, key=score)  # max keeps the first of equal ones
    if len(results) == 1:
        return best.name, (f"{best.name} was the only candidate ({metric} {best.mean(metric):.3f} ± "
                           f"{best.std(metric):.3f})")
    for result in results:  # simplest first; the best one always qualifies
        gap = score(best) - score(result)
        error = 0.0 if result is best else difference_error(y, best, result, task)
        if gap <= error:
            break
    if result is best:
        simpler = [r.name for r in results[: results.index(best)]]
        runner_up = max((r for r in results if r is not best), key=score)
        beaten = f"; it beats {', '.join(simpler)} by more than one standard error" if simpler else ""
        return best.name, (f"{best.name} has the best mean {metric} ({score(best):.3f}; next "
                           f"{runner_up.name} {score(runner_up):.3f}){beaten}")
    return result.name, (f"{result.name}'s mean {metric} ({score(result):.3f}) is within one standard error "
                         f"of the best, {best.name}'s ({score(best):.3f}; difference {gap:.3f} ± "
                         f"{error:.3f}), and it is the simpler model")
