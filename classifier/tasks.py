"""Which task a label set is: single-label ("multiclass", one label per clip) or multi-label.

The task decides a head's outputs (:data:`classifier.head_file.TASK_OUTPUTS`), its loss and its metrics.
"""

from __future__ import annotations

import numpy as np

from classifier.head_file import TASKS

AUTO_TASK = "auto"


class TaskError(ValueError):
    """The labels do not fit the requested task; the message says which clips and why."""


def labels_per_clip(y: np.ndarray) -> np.ndarray:
    """int64 [N]: how many labels each clip of y bool [N, C] has."""
    return np.asarray(y, bool).sum(axis=1).astype(np.int64)


def resolve_task(y: np.ndarray, requested: str = AUTO_TASK, source: str = "the labels") -> str:
    """The task of labels y bool [N, C]: ``requested`` when it is one of TASKS and fits, else for "auto"
    "multiclass" when every clip has exactly one label and "multilabel" otherwise. TaskError when
    "multiclass" is asked of clips with no label or several (``source`` names the labels in the message)."""
    if requested not in (*TASKS, AUTO_TASK):
        raise TaskError(f"task must be one of {(*TASKS, AUTO_TASK)}, got {requested!r}")
    counts = labels_per_clip(y)
    single = bool(len(counts)) and bool((counts == 1).all())
    if requested == AUTO_TASK:
        return "multiclass" if single else "multilabel"
    if requested == "multiclass" and not single:
        several, none = int((counts > 1).sum()), int((counts == 0).sum())
        raise TaskError(f"{source}: a multiclass task needs exactly one label per clip, but {several} clips "
                        f"have several and {none} have none (use --task multilabel)")
    return requested
