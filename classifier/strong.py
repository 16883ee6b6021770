"""Temporally-strong labels (AudioSet strong release, Hershey et al. 2021) and the timeline metrics on them.

Strong labels are rows ``segment_id  start_time_seconds  end_time_seconds  label`` (a TSV with a header),
``segment_id = YTID_startms``, times in seconds within the 10-s segment, ``label`` a MID.

Frame targets: patch t of a clip spans [t * hop, t * hop + patch) seconds; it is active for a class when
one of the class's events overlaps it by at least half the patch or by at least half the event. The
embedding release has one frame per second (``RELEASE_FRAME_HOP``): its frame t is the 0.96-s patch that
starts t seconds into the segment, not 0.96 t (our own extraction's default hop). On the strong dev half the
shipped head's frames agree best with the labels on that grid: shifting the events by -0.12 / +0.12 s
lowers localization AP on the 1-s grid, while on a 0.96-s grid the best shift is about -0.24 s, the mean
drift between the two grids.

Metrics (numpy only):
- frame mAP: AP per class over all patches of all clips pooled, averaged over classes with positives;
- localization AP inside positive clips: per class, the AP of the patch scores over the patches of the
  clips that contain the class, pooled, averaged over classes; chance is the AP of a random order, i.e. the
  active fraction of those patches;
- segment F1: 1-s segments of each clip; a class is present in a segment when a reference (or detected)
  event overlaps it; micro F1 (counts summed over classes) and macro F1 (mean over classes with
  reference or detected activity).
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from classifier.events import PATCH_SECONDS, Event
from classifier.metrics import compute_metrics

RELEASE_FRAME_HOP = 1.0  # seconds between the frames of the AudioSet embedding release ("extracted at 1 Hz")
StrongLabels = dict[str, list[tuple[float, float, str]]]  # segment_id -> [(start s, end s, mid)]


def read_strong_labels(path: str | os.PathLike[str]) -> StrongLabels:
    """Read a strong-label TSV into segment_id -> [(start, end, mid)] (file order)."""
    labels: StrongLabels = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None or header[:4] != ["segment_id", "start_time_seconds", "end_time_seconds", "label"]:
            raise ValueError(f"{path}: expected the header segment_id, start_time_seconds, "
                             f"end_time_seconds, label; got {header!r}")
        for lineno, row in enumerate(reader, start=2):
            try:
                labels[row[0]].append((float(row[1]), float(row[2]), row[3]))
            except (IndexError, ValueError) as exc:
                raise ValueError(f"{path}: line {lineno}: bad row {row!r} ({exc})") from None
    return dict(labels)


def segment_video_id(segment_id: str) -> tuple[str, float]:
    """``YTID_startms`` -> (YTID, start seconds); YouTube ids may themselves contain '_'."""
    ytid, _, start_ms = segment_id.rpartition("_")
    return ytid, int(start_ms) / 1000.0


@dataclass(frozen=True)
class StrongClips:
    """The release clips that have strong labels, and the strong-label classes a 527-class head knows.

    ``segments[i]`` is the segment id of ``clips[i]`` (uint8 [T, 128]); ``mids`` the sorted MIDs both tables
    share, ``columns`` their indices in the head's classes, ``column_of`` MID -> index into ``mids``.
    """

    segments: list[str]
    clips: list[np.ndarray]
    mids: list[str]
    columns: np.ndarray
    column_of: dict[str, int]


def match_release(clipset, strong: StrongLabels, class_mids: Sequence[str]) -> StrongClips:
    """The clips of ``clipset`` (a ClipSet of the eval release) that ``strong`` labels, in the strong table's
    order, and the strong MIDs among ``class_mids`` (the head's classes)."""
    row_of = {vid: i for i, vid in enumerate(clipset.ids)}
    segments = [s for s in strong if segment_video_id(s)[0] in row_of]
    mids = sorted({mid for events in strong.values() for *_, mid in events} & set(class_mids))
    clips = clipset.subset(np.array([row_of[segment_video_id(s)[0]] for s in segments], dtype=int)).clips()
    return StrongClips(segments, clips, mids, np.array([list(class_mids).index(m) for m in mids]),
                       {m: k for k, m in enumerate(mids)})


def frame_targets(events: Sequence[tuple[float, float, str]], num_frames: int, class_index: Mapping[str, int],
                  hop: float = PATCH_SECONDS, patch: float = PATCH_SECONDS) -> np.ndarray:
    """bool [num_frames, C]: patch t active for a class when an event of it overlaps the patch by >= half the
    patch or >= half the event. Events of MIDs not in ``class_index`` are ignored."""
    y = np.zeros((num_frames, len(class_index)), bool)
    starts = np.arange(num_frames) * hop
    for onset, offset, mid in events:
        k = class_index.get(mid)
        if k is None or offset <= onset:
            continue
        overlap = np.minimum(starts + patch, offset) - np.maximum(starts, onset)
        y[:, k] |= (overlap >= 0.5 * patch - 1e-9) | (overlap >= 0.5 * (offset - onset) - 1e-9)
    return y


def frame_map(targets: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> float:
    """Frame-level mAP: per-class AP over all patches of all clips pooled (targets bool [T_i, C], scores
    float [T_i, C] per clip), averaged over classes with positive and negative patches."""
    return compute_metrics(np.concatenate(targets), np.concatenate(scores)).mAP


@dataclass(frozen=True)
class Localization:
    """Localization AP inside positive clips and its chance level (see the module docstring); ``pairs`` is
    the number of (clip, class) pairs used."""

    ap: float
    chance: float
    pairs: int


def localization_ap(targets: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> Localization:
    """Per class: the AP of the patch scores over all patches of the clips that contain the class (at least
    one active patch), pooled; chance is the active fraction of those patches. Both averaged over classes
    whose pooled patches are not all active; ``pairs`` counts the (clip, class) pairs used."""
    aps, chances, pairs = [], [], 0
    for k in range(targets[0].shape[1] if targets else 0):
        positive = [i for i, y in enumerate(targets) if y[:, k].any()]
        if not positive:
            continue
        y = np.concatenate([targets[i][:, k] for i in positive])
        if y.all():
            continue
        aps.append(_average_precision(y, np.concatenate([scores[i][:, k] for i in positive])))
        chances.append(y.mean())
        pairs += len(positive)
    if not aps:
        return Localization(float("nan"), float("nan"), 0)
    return Localization(float(np.mean(aps)), float(np.mean(chances)), pairs)


def _average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """AP of scores s [T] for targets y bool [T] (ties counted at the end of their group, as scikit-learn)."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    group_end = np.r_[s[1:] != s[:-1], True]
    ends = np.flatnonzero(group_end)
    tp_at = np.cumsum(y)[ends]
    precision = tp_at / (ends + 1)
    gained = np.diff(np.r_[0, tp_at])
    return float((precision * gained).sum() / y.sum())


def segment_activity(events: Sequence[tuple[float, float, int]], num_classes: int, duration: float,
                     segment: float = 1.0) -> np.ndarray:
    """bool [S, C] with S = ceil(duration / segment): class c is active in segment i when one of its events
    (start s, end s, class index) overlaps [i * segment, (i + 1) * segment) by more than nothing."""
    n = int(np.ceil(duration / segment - 1e-9))
    out = np.zeros((n, num_classes), bool)
    edges = np.arange(n) * segment
    for onset, offset, k in events:
        out[:, k] |= (edges < offset) & (edges + segment > onset)
    return out


@dataclass(frozen=True)
class SegmentF1:
    micro: float
    macro: float
    classes: int


def segment_f1(reference: Sequence[np.ndarray], estimated: Sequence[np.ndarray]) -> SegmentF1:
    """Segment-based F1 from per-clip activity bool [S_i, C] (reference and estimated): micro over all
    classes' counts, macro as the mean per-class F1 over classes present in the reference."""
    ref = np.concatenate(reference)
    est = np.concatenate(estimated)
    tp = (ref & est).sum(axis=0).astype(np.float64)
    fp = (~ref & est).sum(axis=0).astype(np.float64)
    fn = (ref & ~est).sum(axis=0).astype(np.float64)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1.0)
    used = ref.any(axis=0)
    per_class = 2 * tp[used] / np.maximum(2 * tp[used] + fp[used] + fn[used], 1.0)
    return SegmentF1(float(micro), float(per_class.mean()) if used.any() else float("nan"), int(used.sum()))


def events_as_tuples(events: Sequence[Event], columns: Mapping[int, int]) -> list[tuple[float, float, int]]:
    """Detected events -> (start, end, column) for the events whose head class index is in ``columns``."""
    return [(e.start, e.end, columns[e.index]) for e in events if e.index in columns]
