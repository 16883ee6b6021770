"""A head from a user's labelled clips, the model chosen by cross-validation: what `audiotag train` runs on
a folder of class folders (or a `path,labels` CSV) once their embeddings are extracted.

1. The task: single-label ("multiclass") when every clip has exactly one label, else multi-label, unless
   asked for (:func:`classifier.tasks.resolve_task`).
2. The comparison (:mod:`classifier.crossval`): the linear probe and the attention models, each scored on
   clips it was not trained on (stratified k-fold cross-validation for small sets, else a held-out part).
3. The winner, trained again on every clip, written as ``out_dir/head.npz``: its task and classes, the
   comparison and the reason in ``info``, and event thresholds of 0.5 on the calibrated timeline
   (uniform, not fitted: the clip's top classes decide what an event is).
4. The report (:mod:`classifier.train_report`) in ``out_dir/report``.

Training runs of the attention models live in ``out_dir/training/<key>/`` (``cv/<model>/split<i>`` and
``final/<model>``), the key covering the clips, the task, the splits and the settings: a rerun of the same
command resumes or reuses them; a changed one starts over in a new key folder, and the old one is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.clipset import ClipSet
from classifier.crossval import (
    AUTO_MODEL,
    CANDIDATES,
    LINEAR,
    SMALL_DATA_SETTINGS,
    CandidateResult,
    Evaluation,
    choose,
    cross_validate,
    fit_member,
    plan_evaluation,
)
from classifier.events import EventRules
from classifier.head_file import save_head
from classifier.inference import MODEL_KINDS
from classifier.linear_probe import PROBE_C
from classifier.tasks import AUTO_TASK, TaskError, resolve_task
from classifier.train import TrainError
from classifier.train_report import write_training_report

logger = logging.getLogger(__name__)

HEAD_NAME = "head.npz"
REPORT_DIR = "report"
TRAINING_DIR = "training"
KEY_LENGTH = 16  # hex digits of the training folders' key


@dataclass
class AutoTrainResult:
    """What :func:`autotrain` did: the head, the task, the chosen model and why, every model's scores, the
    report folder and its summary (JSON-ready)."""

    head_path: Path
    task: str
    chosen: str
    reason: str
    evaluation: Evaluation
    results: list[CandidateResult]
    report_dir: Path
    summary: dict


def training_key(data: ClipSet, task: str, evaluation: Evaluation, settings: Mapping[str, object],
                 seed: int) -> str:
    """Hex digest of everything the training runs depend on: the clips (ids, embeddings, masks, labels),
    the classes, the task, the splits, the settings and the seed."""
    digest = hashlib.sha256()
    for array in (data.ids.astype(str), data.x, data.mask, data.y):
        digest.update(np.ascontiguousarray(array).tobytes())
    for _, test in evaluation.splits:
        digest.update(np.asarray(test, np.int64).tobytes())
    digest.update(json.dumps([data.class_names, task, dict(settings), seed], sort_keys=True).encode())
    return digest.hexdigest()[:KEY_LENGTH]


def _training_dir(out_dir: Path, key: str) -> Path:
    """out_dir/training/<key>, after removing the folders of other keys (runs of other data or settings)."""
    root = out_dir / TRAINING_DIR
    if root.is_dir():
        for old in root.iterdir():
            if old.is_dir() and old.name != key:
                logger.info("the clips or settings changed: removing the earlier training runs in %s", old)
                shutil.rmtree(old)
    return root / key


def _candidates(model: str) -> tuple[str, ...]:
    if model == AUTO_MODEL:
        return CANDIDATES
    if model not in MODEL_KINDS:
        raise TrainError(f"model must be {AUTO_MODEL!r} or one of {MODEL_KINDS}, got {model!r}")
    return (model,)


def autotrain(data: ClipSet, out_dir: str | os.PathLike[str], *, task: str = AUTO_TASK,
              model: str = AUTO_MODEL, folds: int | None = None, settings: Mapping[str, object] | None = None,
              seed: int = 0, source: str = "the clips", progress: bool = False, extra: dict | None = None,
              failed: Sequence[tuple[str, str]] = ()) -> AutoTrainResult:
    """Choose, train and report a head for labelled ``data`` (see the module docstring).

    model: "auto" (compare CANDIDATES) or one model kind (still cross-validated, for the report); folds:
    k-fold cross-validation with this many folds (None: 5 folds below 50 clips in the smallest class, else
    a held-out part); settings: TrainConfig fields for the attention models (over SMALL_DATA_SETTINGS);
    source: names the data in messages; extra: more summary fields; failed: (file, reason) of inputs left
    out, for the report. TrainError when the data or settings cannot be trained on.
    """
    out_dir = Path(out_dir)
    settings = dict(settings or {})
    data = data.subset(np.argsort(data.ids, kind="stable"))  # the splits do not depend on the input order
    try:
        task = resolve_task(data.y, task, source)
    except TaskError as exc:
        raise TrainError(str(exc)) from None
    candidates = _candidates(model)
    evaluation = plan_evaluation(data.y, folds, seed)
    work_dir = _training_dir(out_dir, training_key(data, task, evaluation, settings, seed))
    logger.info("%s task, %d clips, %d classes; comparing %s by %s", task, len(data), data.num_classes,
                ", ".join(candidates), evaluation.scheme)
    from tqdm import tqdm

    total = len(candidates) * len(evaluation.splits) + 1
    with tqdm(total=total, desc="train", unit="fit", disable=not progress) as bar:
        def fitted(name: str, split: int) -> None:
            bar.set_postfix_str(f"{name} split {split + 1}/{len(evaluation.splits)} done")
            bar.update(1)

        results = cross_validate(data, task, candidates, evaluation, work_dir, settings, seed,
                                 f"clips {work_dir.name}", fitted)
        chosen, reason = choose(results, task, data.y)
        bar.set_postfix_str(f"{chosen} on all {len(data)} clips")
        config, weights = fit_member(chosen, data, task, work_dir / "final" / chosen, settings, seed,
                                     f"clips {work_dir.name} all")
        bar.update(1)
    info = {"task": task, "chosen": chosen, "why": reason, "evaluation": evaluation.scheme,
            "comparison": [r.row(task) for r in results], "clips": len(data),
            "clips_per_class": dict(zip(data.class_names, data.class_counts().tolist(), strict=True)),
            "settings": {LINEAR: {"C": PROBE_C}, "attention": SMALL_DATA_SETTINGS | settings}, "seed": seed}
    head_path = save_head(out_dir / HEAD_NAME, [config], [weights], data.class_names, name=out_dir.name,
                          info=info, task=task, event_rules=EventRules.uniform(data.num_classes).to_config())
    summary = write_training_report(out_dir / REPORT_DIR, data=data, task=task, evaluation=evaluation,
                                    results=results, chosen=chosen, reason=reason, head_path=head_path,
                                    extra=extra, failed=failed)
    logger.info("chose %s (%s); head written to %s", chosen, reason, head_path)
    return AutoTrainResult(head_path, task, chosen, reason, evaluation, results, out_dir / REPORT_DIR,
                           summary)
