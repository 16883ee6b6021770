"""classifier.events: hysteresis, merging, minimum duration, invariants, stream == file."""

from __future__ import annotations

import itertools
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from classifier.events import Event, EventRules, EventTracker, detect_events

HOP = 0.96


def _names(c: int) -> tuple[list[str], list[str]]:
    return [f"/m/{i}" for i in range(c)], [f"class {i}" for i in range(c)]


def _detect(scores, rules, **kw):
    scores = np.asarray(scores, np.float32)
    if scores.ndim == 1:
        scores = scores[:, None]
    mids, names = _names(scores.shape[1])
    return detect_events(scores, np.arange(len(scores)) * HOP, rules, mids, names, **kw)


def _spans(events):
    return [(round(e.start, 2), round(e.end, 2)) for e in events]


def _reference(column: np.ndarray, onset: float, offset: float, min_duration: float, merge_gap: float):
    """An independent per-class oracle of the documented rules: runs of frames, merged, then filtered."""
    runs, i, n = [], 0, len(column)
    while i < n:
        if column[i] >= onset:
            j = i
            while j + 1 < n and column[j + 1] >= offset:
                j += 1
            runs.append([i * HOP, j * HOP + HOP, float(column[i : j + 1].max())])
            i = j + 1
        else:
            i += 1
    merged: list[list[float]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < merge_gap:
            merged[-1][1] = run[1]
            merged[-1][2] = max(merged[-1][2], run[2])
        else:
            merged.append(run)
    return [(s, e, p) for s, e, p in merged if e - s >= min_duration - 1e-9]


def test_hysteresis_onset_and_lower_offset():
    scores = [0.1, 0.6, 0.45, 0.45, 0.2, 0.45, 0.7, 0.1]
    assert _spans(_detect(scores, EventRules.uniform(1, 0.5, offset=0.4))) == [(0.96, 3.84), (5.76, 6.72)]
    assert _spans(_detect(scores, EventRules.uniform(1, 0.5))) == [(0.96, 1.92), (5.76, 6.72)]


def test_score_is_the_peak_inside_the_event():
    (event,) = _detect([0.0, 0.55, 0.9, 0.6, 0.0], EventRules.uniform(1, 0.5))
    assert event.score == pytest.approx(0.9)
    assert event.to_dict() == {"index": 0, "mid": "/m/0", "name": "class 0", "start": 0.96, "end": 3.84,
                               "score": pytest.approx(0.9)}


def test_merge_gap_closes_short_gaps_only():
    scores = [0.9, 0.0, 0.9, 0.0, 0.0, 0.9]  # gaps of one frame (0.96 s), then two frames (1.92 s)
    assert _spans(_detect(scores, EventRules.uniform(1))) == [(0, 0.96), (1.92, 2.88), (4.8, 5.76)]
    assert _spans(_detect(scores, EventRules.uniform(1, merge_gap=1.0))) == [(0, 2.88), (4.8, 5.76)]
    assert _spans(_detect(scores, EventRules.uniform(1, merge_gap=2.0))) == [(0, 5.76)]


def test_min_duration_applies_after_merging():
    scores = [0.9, 0.0, 0.9, 0.0, 0.0, 0.0, 0.9]
    assert _spans(_detect(scores, EventRules.uniform(1, min_duration=2.0))) == []
    assert _spans(_detect(scores, EventRules.uniform(1, min_duration=2.0, merge_gap=1.0))) == [(0, 2.88)]


def test_events_clipped_to_the_file_duration():
    (event,) = _detect([0.0, 0.0, 0.9], EventRules.uniform(1), duration=2.5)
    assert (event.start, event.end) == (pytest.approx(1.92), 2.5)
    assert _detect([0.0, 0.0, 0.9], EventRules.uniform(1, min_duration=0.9), duration=2.5) == []


def test_rules_validation_and_config_round_trip():
    with pytest.raises(ValueError, match="offset"):
        EventRules(np.array([0.5]), np.array([0.6]))
    with pytest.raises(ValueError, match="min_duration"):
        EventRules.uniform(2, min_duration=-1)
    rules = EventRules(np.array([0.5, 0.3]), np.array([0.4, 0.3]), 1.5, 0.5)
    back = EventRules.from_config(rules.to_config())
    assert np.array_equal(back.onset, rules.onset) and np.array_equal(back.offset, rules.offset)
    assert (back.min_duration, back.merge_gap) == (1.5, 0.5)


def test_from_head_uses_stored_rules_else_half_with_a_warning(caplog):
    head = SimpleNamespace(name="h", class_names=["a", "b"], event_rules=None)  # what from_head reads
    with caplog.at_level(logging.WARNING, logger="classifier.events"):
        rules = EventRules.from_head(head)
    assert np.all(rules.onset == 0.5) and "no event thresholds" in caplog.text
    head.event_rules = EventRules(np.array([0.2, 0.3]), np.array([0.1, 0.3]), 0.96, 1.0).to_config()
    assert np.allclose(EventRules.from_head(head).onset, [0.2, 0.3])


@pytest.mark.parametrize("seed", range(12))
def test_invariants_and_oracle_on_random_timelines(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 60)), 4
    # Smooth-ish random timelines so that events of several frames occur.
    scores = np.clip(np.cumsum(rng.normal(0, 0.25, (n, c)), axis=0) * 0.3 + 0.5, 0, 1).astype(np.float32)
    onset = rng.uniform(0.3, 0.8, c).astype(np.float32)
    offset = (onset - rng.uniform(0, 0.2, c)).astype(np.float32)
    rules = EventRules(onset, offset, float(rng.choice([0, 0.96, 2.5])), float(rng.choice([0, 1.0, 2.0])))
    duration = n * HOP - float(rng.uniform(0, 0.9))
    events = _detect(scores, rules, duration=duration)
    assert events == sorted(events, key=lambda e: (e.start, e.index))
    for e in events:
        assert 0 <= e.start < e.end <= duration
        assert e.end - e.start >= rules.min_duration - 1e-9
    for k in range(c):
        mine = [e for e in events if e.index == k]
        assert all(a.end + rules.merge_gap <= b.start + 1e-9 for a, b in itertools.pairwise(mine))
        expected = [(s, min(e, duration), p)
                    for s, e, p in _reference(scores[:, k], onset[k], offset[k], 0.0, rules.merge_gap)]
        expected = [x for x in expected if x[1] > x[0] and x[1] - x[0] >= rules.min_duration - 1e-9]
        assert [(e.start, e.end, e.score) for e in mine] == [
            (pytest.approx(s), pytest.approx(t), pytest.approx(p)) for s, t, p in expected]


@pytest.mark.parametrize("seed", range(6))
def test_tracker_stream_equals_detect_events(seed):
    rng = np.random.default_rng(100 + seed)
    n, c = 40, 5
    scores = rng.uniform(0, 1, (n, c)).astype(np.float32)
    rules = EventRules(np.full(c, 0.6, np.float32), np.full(c, 0.4, np.float32), 0.96, 1.5)
    mids, names = _names(c)
    starts = np.arange(n) * HOP
    tracker = EventTracker(rules, mids, names)
    streamed: list[Event] = []
    for row, t in zip(scores, starts, strict=True):
        final = tracker.push(row, t)
        assert all(e.end <= t + HOP + 1e-9 for e in final)
        streamed += final
        for e in tracker.open_events:
            assert e.end == pytest.approx(t + HOP)
    streamed += tracker.finish()
    batch = detect_events(scores, starts, rules, mids, names)
    assert sorted(streamed, key=lambda e: (e.start, e.index)) == batch and batch


def test_tracker_rejects_out_of_order_frames_and_wrong_width():
    tracker = EventTracker(EventRules.uniform(2), *_names(2))
    tracker.push(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="time order"):
        tracker.push(np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="expected 2"):
        tracker.push(np.zeros(3), 2.0)
