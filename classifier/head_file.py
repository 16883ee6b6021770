"""The head file: writing, reading and checking one, and the rules that combine its members' probabilities.

A head file is one ``.npz`` (loaded with ``allow_pickle=False``) holding
  ``config``     a JSON string: {"format": "audiotag-head-v1", "name", "class_names", "task": one of TASKS
                 (absent means "multilabel"), "members": [model configs for
                 :func:`classifier.models.build_model`], "combine": one of COMBINE_RULES (absent means
                 "mean_probability"), "info": {free-form provenance}};
  ``m{i}/{j}``   member i's j-th weight array, in ``model.weights`` order (float32, float16, or for
                 "int8" heads: matrices as int8 with ``m{i}/{j}/scale`` float32 [columns], so that
                 w = q * scale, and vectors as float16).
A head with several members (an ensemble, or snapshots of one run) averages their probabilities
("mean_probability") or their log-odds ("mean_logit": sigmoid of the mean logit of the clipped probabilities).
The task says what the probabilities mean: "multilabel" (each class independently, sigmoid members) or
"multiclass" (exactly one class per clip: softmax members, whose mean is again one distribution, so such a
head combines by "mean_probability" only). A multiclass head scores a clip longer than one 10-patch window
by the mean of its windows' distributions, a multilabel head by the maximum per class
(:func:`combine_windows`).
Optional entries (heads without them still load; see data/heads/MODEL_CARD.md):
  config ``"frame_members"``  model configs of decision-level models used ONLY for the timeline (their
                 frame probabilities localize classes inside a clip; clip scores never use them), weights
                 ``f{i}/{j}`` stored like ``m{i}/{j}``;
  config ``"frame_shared"``  {frame member index (str): clip member index} for frame members whose
                 weights equal a clip member's: those are stored once, as ``m{i}/{j}``, with no ``f{i}/*``;
  config ``"timeline"``   :class:`classifier.timeline.TimelineParams` of the calibrated timeline;
  config ``"events"``     :class:`classifier.events.EventRules` (per-class onset/offset thresholds).

The bottom of the head modules: it imports only :mod:`classifier.inference` (the weights' layout) and
``safeio``; :mod:`classifier.pretrained` (``Head``), :mod:`classifier.train`, :mod:`classifier.lite` and
:mod:`classifier.tf_head` build on it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.inference import weight_layout
from safeio.artifacts import BrokenFileError, read_npz
from safeio.atomic import atomic_output

logger = logging.getLogger(__name__)

HEAD_FORMAT = "audiotag-head-v1"
WEIGHT_DTYPES = ("float32", "float16", "int8")
COMBINE_RULES = ("mean_probability", "mean_logit")
TASKS = ("multilabel", "multiclass")
TASK_OUTPUTS = {"multilabel": "sigmoid", "multiclass": "softmax"}  # the members' class activation per task
LOGIT_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before taking log-odds

_HEAD_REMEDY = "pass a head.npz written by `audiotag train` (or train one again)"


class HeadError(ValueError):
    """A head file is missing, unreadable or inconsistent; the message names the file."""


@dataclass(frozen=True)
class StoredHead:
    """What a head file holds, checked: configs (keywords of :func:`classifier.models.build_model`) and
    float32 weights (``model.weights`` order) of the members and frame members, and the settings."""

    name: str
    class_names: list[str]
    member_configs: list[dict]
    member_weights: list[list[np.ndarray]]
    combine: str
    info: dict
    frame_member_configs: list[dict]
    frame_member_weights: list[list[np.ndarray]]
    timeline: dict | None
    event_rules: dict | None
    task: str


def check_rule(rule: str) -> str:
    """``rule`` if it is one of COMBINE_RULES; ValueError otherwise."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"combine rule must be one of {COMBINE_RULES}, got {rule!r}")
    return rule


def check_task(task: str, member_configs: Sequence[dict], combine: str = "mean_probability") -> str:
    """``task`` if it is one of TASKS and fits the members (their ``output``, TASK_OUTPUTS) and the combine
    rule (a multiclass head averages probabilities); ValueError saying what does not fit otherwise."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    wrong = [i for i, c in enumerate(member_configs) if c.get("output", "sigmoid") != TASK_OUTPUTS[task]]
    if wrong:
        raise ValueError(f"a {task} head needs {TASK_OUTPUTS[task]} members; member(s) {wrong} are not")
    if task == "multiclass" and combine != "mean_probability":
        raise ValueError(f"a multiclass head combines its members by mean_probability, not {combine!r}")
    return task


def combine_windows(window_probs: np.ndarray, task: str = "multilabel") -> np.ndarray:
    """One clip's scores float32 [C] from its windows' probabilities float [W, C] (W >= 1): the maximum per
    class (multilabel: a sound anywhere in the clip), or the mean distribution (multiclass: what the whole
    clip is; it sums to 1)."""
    probs = np.asarray(window_probs, np.float32)
    return probs.mean(axis=0) if task == "multiclass" else probs.max(axis=0)


def combine_probabilities(probs: Sequence[np.ndarray], rule: str = "mean_probability") -> np.ndarray:
    """Members' probabilities (each float32 [..., C], same shape) -> one float32 array by ``rule``."""
    stacked = np.stack([np.asarray(p, np.float32) for p in probs])
    if check_rule(rule) == "mean_probability":
        return stacked.mean(axis=0, dtype=np.float32)
    return from_log_odds(log_odds(stacked.astype(np.float64)).mean(axis=0)).astype(np.float32)


def log_odds(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of probabilities clipped to [LOGIT_EPS, 1 - LOGIT_EPS], in p's float dtype (the
    mean_logit rule's transform)."""
    p = np.clip(p, LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def from_log_odds(z: np.ndarray) -> np.ndarray:
    """The logistic function 1 / (1 + exp(-z)), inverse of :func:`log_odds`, in z's float dtype."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-z))


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to an uncompressed .npz at ``path`` atomically (head files, training checkpoints)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def save_head(path: str | os.PathLike[str], member_configs: Sequence[dict],
              member_weights: Sequence[Sequence[np.ndarray]], class_names: Sequence[str], name: str,
              info: dict | None = None, dtype: str = "float32", combine: str = "mean_probability", *,
              frame_member_configs: Sequence[dict] = (),
              frame_member_weights: Sequence[Sequence[np.ndarray]] = (), timeline: dict | None = None,
              event_rules: dict | None = None, task: str = "multilabel") -> Path:
    """Write a head file from model configs and weight lists (``model.weights`` order) atomically.

    ``dtype`` "int8" quantizes every matrix per output column (symmetric, 127 levels: a quarter of the
    float32 size) and keeps vectors (biases, batch-norm statistics) as float16. The optional frame members
    (timeline only), timeline parameters and event rules are described in the module docstring. ``task``:
    one of TASKS, checked against the members (:func:`check_task`).
    """
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"dtype must be one of {WEIGHT_DTYPES}, got {dtype!r}")
    config = {"format": HEAD_FORMAT, "name": name, "class_names": list(class_names),
              "task": check_task(task, member_configs, check_rule(combine)),
              "members": [dict(c) for c in member_configs], "combine": combine, "info": dict(info or {})}
    if frame_member_configs:
        config["frame_members"] = [dict(c) for c in frame_member_configs]
    shared = _shared_frame_members(member_configs, member_weights, frame_member_configs, frame_member_weights)
    if shared:
        config["frame_shared"] = {str(f): m for f, m in shared.items()}
    if timeline:
        config["timeline"] = dict(timeline)
    if event_rules:
        config["events"] = dict(event_rules)
    arrays = {"config": np.array(json.dumps(config))}
    for prefix, member_list in (("m", member_weights), ("f", frame_member_weights)):
        for i, weights in enumerate(member_list):
            if prefix == "f" and i in shared:
                continue
            for j, w in enumerate(weights):
                key = f"{prefix}{i}/{j}"
                w = np.asarray(w, dtype=np.float32)
                if dtype != "int8":
                    arrays[key] = w.astype(dtype)
                elif w.ndim == 2:
                    arrays[key], arrays[f"{key}/scale"] = quantize_columns(w)
                else:
                    arrays[key] = w.astype(np.float16)
    path = Path(path)
    save_npz_atomic(path, arrays)
    return path


def _shared_frame_members(member_configs: Sequence[dict], member_weights: Sequence[Sequence[np.ndarray]],
                          frame_member_configs: Sequence[dict],
                          frame_member_weights: Sequence[Sequence[np.ndarray]]) -> dict[int, int]:
    """{frame member index: clip member index} for frame members with a clip member's config and weights."""
    def same(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:  # array_equal is False on shapes
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    shared = {}
    for f, (f_config, f_weights) in enumerate(zip(frame_member_configs, frame_member_weights, strict=True)):
        for m, (m_config, m_weights) in enumerate(zip(member_configs, member_weights, strict=True)):
            if dict(f_config) == dict(m_config) and same(f_weights, m_weights):
                shared[f] = m
                break
    return shared


def quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matrix float32 [rows, cols] -> (int8 [rows, cols], scale float32 [cols]) with w ~ q * scale."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale


def _stored_weight(arrays: dict[str, np.ndarray], key: str) -> np.ndarray | None:
    """Weight ``key`` as float32 (dequantized when it has a scale), or None when absent."""
    w = arrays.get(key)
    if w is None:
        return None
    scale = arrays.get(f"{key}/scale")  # float32 [columns], written by quantize_columns
    return w.astype(np.float32) if scale is None else np.multiply(w, scale, dtype=np.float32)


def read_head(path: str | os.PathLike[str]) -> StoredHead:
    """The checked contents of a head file written by :func:`save_head`; HeadError naming the file when it
    is missing, unreadable or inconsistent (members' weights against their configs, the combine rule)."""
    path = Path(path)
    if not path.is_file():
        raise HeadError(f"{path}: head file not found")
    try:
        arrays = read_npz(path)
    except BrokenFileError as exc:
        raise HeadError(f"{exc}; not a usable head file: {_HEAD_REMEDY}") from None
    except OSError as exc:
        raise HeadError(f"{path}: cannot read the head file ({exc.strerror or exc})") from exc
    try:
        config = json.loads(str(arrays.pop("config")))
    except (ValueError, KeyError) as exc:
        raise HeadError(f"{path}: an .npz archive but not a head file (no valid `config`): "
                        f"{_HEAD_REMEDY}") from exc
    if not isinstance(config, dict):
        raise HeadError(f"{path}: an .npz archive but not a head file: {_HEAD_REMEDY}")
    if config.get("format") != HEAD_FORMAT:
        raise HeadError(f"{path}: unknown head format {config.get('format')!r} (expected {HEAD_FORMAT})")
    member_weights = [_member_weights(path, arrays, f"m{i}", member)
                      for i, member in enumerate(config["members"])]
    frame_configs = config.get("frame_members", [])
    frame_shared = _frame_shared(path, config, len(member_weights))
    frame_weights = [member_weights[frame_shared[i]] if i in frame_shared
                     else _member_weights(path, arrays, f"f{i}", member)
                     for i, member in enumerate(frame_configs)]
    if not member_weights:
        raise HeadError(f"{path}: head has no members")
    combine = config.get("combine", "mean_probability")
    if combine not in COMBINE_RULES:
        raise HeadError(f"{path}: unknown combine rule {combine!r} (expected one of {COMBINE_RULES})")
    task = config.get("task", "multilabel")
    try:
        check_task(task, config["members"], combine)
    except ValueError as exc:
        raise HeadError(f"{path}: {exc}: {_HEAD_REMEDY}") from None
    logger.info("loaded head %r (%d member(s), %d classes) from %s",
                config["name"], len(member_weights), len(config["class_names"]), path)
    return StoredHead(config["name"], config["class_names"], config["members"], member_weights, combine,
                      config.get("info") or {}, frame_configs, frame_weights, config.get("timeline"),
                      config.get("events"), task)


def _frame_shared(path: Path, config: dict, num_members: int) -> dict[int, int]:
    """The config's ``"frame_shared"`` as {frame member index: clip member index}; HeadError if bad."""
    raw = config.get("frame_shared", {})
    num_frame = len(config.get("frame_members", []))
    try:
        shared = {int(f): int(m) for f, m in raw.items()}
    except (AttributeError, TypeError, ValueError):
        shared = None
    if shared is None or not all(0 <= f < num_frame and 0 <= m < num_members for f, m in shared.items()):
        raise HeadError(f"{path}: bad `frame_shared` {raw!r} (frame members {num_frame}, members "
                        f"{num_members}): {_HEAD_REMEDY}")
    for f, m in shared.items():
        if config["frame_members"][f] != config["members"][m]:
            raise HeadError(f"{path}: frame member f{f} is stored as member m{m} but their configs differ: "
                            f"{_HEAD_REMEDY}")
    return shared


def _member_weights(path: Path, arrays: dict[str, np.ndarray], prefix: str, member: dict) -> list[np.ndarray]:
    """Stored weights of member ``prefix`` ("m3", "f0") checked against its config; HeadError if bad."""
    try:
        layout = weight_layout(**member)
    except (TypeError, ValueError) as exc:
        raise HeadError(f"{path}: member {prefix} has a bad model config ({exc})") from exc
    weights = [_stored_weight(arrays, f"{prefix}/{j}") for j in range(len(layout))]
    shapes_ok = all(w is not None and w.shape == shape for w, (_, shape) in zip(weights, layout, strict=True))
    if not shapes_ok or f"{prefix}/{len(layout)}" in arrays:
        raise HeadError(f"{path}: member {prefix} weights do not match its {member.get('kind')!r} model")
    return weights


def set_postprocessing(path: str | os.PathLike[str], *, timeline: dict | None = None,
                       event_rules: dict | None = None) -> Path:
    """Store timeline parameters and/or event rules in an existing head file, leaving its weights
    byte-for-byte as they are (rewritten atomically)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        config = json.loads(str(arrays["config"]))
    except (OSError, ValueError, KeyError) as exc:
        raise HeadError(f"{path}: not a readable head file ({exc})") from exc
    if timeline is not None:
        config["timeline"] = dict(timeline)
    if event_rules is not None:
        config["events"] = dict(event_rules)
    arrays["config"] = np.array(json.dumps(config))
    save_npz_atomic(path, arrays)
    return path
