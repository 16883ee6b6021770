"""Sound events from a head's timeline: per class, stretches where the frame score stays high.

A timeline is one score row float [C] per frame (a 0.96 s VGGish patch), frames in time order. The rules,
per class c (all times in seconds of the file or stream):

1. Hysteresis: an event opens at the first frame with score >= ``onset[c]`` and stays open while the score
   is >= ``offset[c]`` (offset <= onset); it ends at the end of its last frame above the offset
   (frame start + ``patch_seconds``). Its score is the peak frame score inside it.
2. Merge: when a class's next event opens less than ``merge_gap`` seconds after the previous one ended, the
   two become one event (the gap is closed).
3. Minimum duration: events (after merging) shorter than ``min_duration`` seconds are dropped.

:class:`EventTracker` applies the rules one frame at a time (streams); :func:`detect_events` runs a whole
timeline through a tracker, so a stream and a file give the same events. numpy only (no TensorFlow).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PATCH_SECONDS = 0.96  # one VGGish patch (and the default hop between patches)
DEFAULT_THRESHOLD = 0.5  # onset = offset for heads without stored thresholds
DEFAULT_MIN_DURATION = 0.0  # seconds
DEFAULT_MERGE_GAP = 0.0  # seconds


@dataclass(frozen=True)
class Event:
    """One sound event: class ``index`` (in the head's class list), its ``mid`` and ``name``, ``start`` and
    ``end`` in seconds from the start of the file or stream (end > start), ``score`` the peak frame score
    inside it."""

    index: int
    mid: str
    name: str
    start: float
    end: float
    score: float

    @property
    def duration(self) -> float:
        """end - start, seconds."""
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        """``{"index", "mid", "name", "start", "end", "score"}`` (times rounded to ms, score to 1e-6)."""
        return {"index": self.index, "mid": self.mid, "name": self.name, "start": round(self.start, 3),
                "end": round(self.end, 3), "score": round(float(self.score), 6)}


@dataclass(frozen=True, eq=False)
class EventRules:
    """Thresholds and durations of :func:`detect_events`.

    onset, offset: float32 [C] frame-score thresholds per class (offset <= onset: the hysteresis);
    min_duration: seconds, shorter events are dropped; merge_gap: seconds, shorter gaps are closed.
    """

    onset: np.ndarray
    offset: np.ndarray
    min_duration: float = DEFAULT_MIN_DURATION
    merge_gap: float = DEFAULT_MERGE_GAP

    def __post_init__(self) -> None:
        onset = np.asarray(self.onset, np.float32).reshape(-1)
        offset = np.asarray(self.offset, np.float32).reshape(-1)
        if onset.shape != offset.shape:
            raise ValueError(f"onset {onset.shape} and offset {offset.shape} thresholds differ in length")
        if np.any(offset > onset):
            raise ValueError("every offset threshold must be <= its onset threshold")
        if not (np.isfinite(onset).all() and np.isfinite(offset).all()):
            raise ValueError("event thresholds must be finite")
        if self.min_duration < 0 or self.merge_gap < 0:
            raise ValueError("min_duration and merge_gap must be >= 0 seconds")
        object.__setattr__(self, "onset", onset)
        object.__setattr__(self, "offset", offset)

    @property
    def num_classes(self) -> int:
        return len(self.onset)

    @classmethod
    def uniform(cls, num_classes: int, threshold: float = DEFAULT_THRESHOLD, offset: float | None = None,
                min_duration: float = DEFAULT_MIN_DURATION, merge_gap: float = DEFAULT_MERGE_GAP
                ) -> EventRules:
        """The same thresholds for every class (offset defaults to the onset threshold)."""
        onset = np.full(num_classes, threshold, np.float32)
        off = onset if offset is None else np.full(num_classes, offset, np.float32)
        return cls(onset, off, min_duration, merge_gap)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready dict (the head file's ``"events"`` entry); inverse of :meth:`from_config`."""
        return {"onset": [round(float(v), 6) for v in self.onset],
                "offset": [round(float(v), 6) for v in self.offset],
                "min_duration": float(self.min_duration), "merge_gap": float(self.merge_gap)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EventRules:
        """Rules from :meth:`to_config`'s dict."""
        return cls(np.asarray(config["onset"], np.float32), np.asarray(config["offset"], np.float32),
                   float(config.get("min_duration", DEFAULT_MIN_DURATION)),
                   float(config.get("merge_gap", DEFAULT_MERGE_GAP)))

    @classmethod
    def from_head(cls, head: Any) -> EventRules:
        """The rules stored in the head file (``head.event_rules``); else 0.5 for every class, with a
        warning."""
        config = getattr(head, "event_rules", None)
        if config:
            rules = config if isinstance(config, EventRules) else cls.from_config(config)
            if rules.num_classes != len(head.class_names):
                raise ValueError(f"head {getattr(head, 'name', '?')!r}: event thresholds for "
                                 f"{rules.num_classes} classes, head has {len(head.class_names)}")
            return rules
        logger.warning("head %r stores no event thresholds; using %.1f for every class",
                       getattr(head, "name", "?"), DEFAULT_THRESHOLD)
        return cls.uniform(len(head.class_names))


class EventTracker:
    """Incremental detection, one frame (patch) at a time, with the rules of the module docstring.

    ``detect_events`` is built on it, so a stream and a file give the same events. Frames must come in
    order of their start times. ``patch_seconds`` is a frame's length (an event ends at its last frame's
    start + patch_seconds); ``hop_seconds``, the nominal spacing of frames, is kept as an attribute for
    callers: the rules use each frame's own start time, so a stream that skips frames still works.
    """

    def __init__(self, rules: EventRules, mids: Sequence[str], names: Sequence[str],
                 hop_seconds: float = PATCH_SECONDS, patch_seconds: float = PATCH_SECONDS):
        if not len(mids) == len(names) == rules.num_classes:
            raise ValueError(f"{len(mids)} mids, {len(names)} names, rules for {rules.num_classes} classes")
        if hop_seconds <= 0 or patch_seconds <= 0:
            raise ValueError("hop_seconds and patch_seconds must be > 0")
        self.rules = rules
        self.mids = list(mids)
        self.names = list(names)
        self.hop_seconds = float(hop_seconds)
        self.patch_seconds = float(patch_seconds)
        c = rules.num_classes
        self._open = np.zeros(c, bool)  # an event is open (its last frame was active)
        self._pending = np.zeros(c, bool)  # a closed event that a later onset may still merge with
        self._start = np.zeros(c, np.float64)  # of the open or pending event
        self._end = np.zeros(c, np.float64)  # end of its last active frame
        self._peak = np.zeros(c, np.float64)
        self._last_start = -np.inf

    def _event(self, c: int) -> Event:
        return Event(int(c), self.mids[c], self.names[c], float(self._start[c]), float(self._end[c]),
                     float(self._peak[c]))

    def _finalize(self, classes: np.ndarray) -> list[Event]:
        """Pending events of ``classes`` become final (returned when long enough)."""
        self._pending[classes] = False
        keep = classes[self._end[classes] - self._start[classes] >= self.rules.min_duration - 1e-9]
        return [self._event(c) for c in keep]

    def push(self, scores: np.ndarray, start: float) -> list[Event]:
        """Add the frame starting at ``start`` s with scores float [C]; returns the events that became final
        (closed and no longer mergeable, long enough) with it, sorted by (start, index)."""
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(scores) != self.rules.num_classes:
            raise ValueError(f"frame has {len(scores)} scores, expected {self.rules.num_classes}")
        if start <= self._last_start:
            raise ValueError(f"frames must come in time order: {start} s after {self._last_start} s")
        self._last_start = float(start)
        end = start + self.patch_seconds
        # Pending events that this frame (and so every later one) can no longer merge with are final.
        done = self._finalize(np.flatnonzero(self._pending & (start - self._end >= self.rules.merge_gap)))
        staying = self._open & (scores >= self.rules.offset)
        closing = self._open & ~staying
        opening = ~self._open & (scores >= self.rules.onset)
        # Closing: the event ends with its last active frame and waits for a possible merge.
        self._pending |= closing
        self._open &= ~closing
        # Opening: continue a pending event (gap < merge_gap by now), else start a new one.
        resumed = opening & self._pending
        fresh = opening & ~self._pending
        self._pending &= ~resumed
        self._start[fresh] = start
        self._peak[fresh] = -np.inf
        active = staying | opening
        self._open |= opening
        self._end[active] = end
        self._peak[active] = np.maximum(self._peak[active], scores[active])
        return sorted(done, key=_order)

    @property
    def open_events(self) -> list[Event]:
        """Events currently open (end = end of the last frame pushed), sorted by (start, index); they may
        still grow, merge, or be dropped as too short."""
        return sorted((self._event(c) for c in np.flatnonzero(self._open)), key=_order)

    def finish(self) -> list[Event]:
        """End of input: close what is still open and return every remaining final event, sorted."""
        self._pending |= self._open
        self._open[:] = False
        return sorted(self._finalize(np.flatnonzero(self._pending)), key=_order)


def _order(event: Event) -> tuple[float, int]:
    return event.start, event.index


def detect_events(frame_scores: np.ndarray, frame_starts: np.ndarray, rules: EventRules,
                  mids: Sequence[str], names: Sequence[str], hop_seconds: float = PATCH_SECONDS,
                  patch_seconds: float = PATCH_SECONDS, *, duration: float | None = None) -> list[Event]:
    """Events of a timeline: scores float [N, C] of frames starting at ``frame_starts`` float [N] seconds
    (increasing), each ``patch_seconds`` long. Returns events sorted by (start, index), times in seconds.

    ``duration`` (seconds, optional): the file's length; events are clipped to it (the last patch of a file
    is zero-padded past its end), and an event left shorter than ``min_duration`` or empty is dropped.
    """
    frame_scores = np.asarray(frame_scores)
    frame_starts = np.asarray(frame_starts, np.float64).reshape(-1)
    if frame_scores.ndim != 2 or len(frame_scores) != len(frame_starts):
        raise ValueError(f"frame_scores {frame_scores.shape} must be [N, C] with N = {len(frame_starts)}")
    tracker = EventTracker(rules, mids, names, hop_seconds, patch_seconds)
    events: list[Event] = []
    for row, start in zip(frame_scores, frame_starts, strict=True):
        events += tracker.push(row, float(start))
    events += tracker.finish()
    if duration is not None:
        clipped = []
        for e in events:
            end = min(e.end, float(duration))
            if end > e.start and end - e.start >= rules.min_duration - 1e-9:
                clipped.append(Event(e.index, e.mid, e.name, e.start, end, e.score))
        events = clipped
    return sorted(events, key=_order)
