"""Calibrated timeline, label view (roll-up, filters), F1 thresholds and the strong-label metrics (numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from classifier.clipset import ClipSet
from classifier.labels import LabelsError, load_class_labels, load_ontology
from classifier.labelview import LabelView
from classifier.strong import (
    RELEASE_FRAME_HOP,
    frame_targets,
    localization_ap,
    match_release,
    read_strong_labels,
    segment_activity,
    segment_f1,
    segment_video_id,
)
from classifier.thresholds import clip_f1, f1_thresholds
from classifier.timeline import TimelineParams, calibrate_frames, merge_windows


# --- calibration ----------------------------------------------------------------------------------------
def test_calibration_peaks_at_clip_score_keeps_ranking_and_gamma_zero_broadcasts():
    rng = np.random.default_rng(0)
    clip = rng.uniform(0, 1, 6).astype(np.float32)
    raw = rng.uniform(0, 1, (10, 6)).astype(np.float32)
    out = calibrate_frames(clip, raw, TimelineParams(0.25))
    np.testing.assert_allclose(out.max(axis=0), clip, rtol=1e-6)
    assert np.array_equal(np.argsort(out, axis=0, kind="stable"), np.argsort(raw, axis=0, kind="stable"))
    assert np.all(out <= clip + 1e-7)
    np.testing.assert_allclose(calibrate_frames(clip, raw, TimelineParams(0.0)), np.tile(clip, (10, 1)))
    batched = calibrate_frames(np.stack([clip, clip / 2]), np.stack([raw, raw]), TimelineParams(0.25))
    np.testing.assert_allclose(batched[1], out / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="gamma"):
        TimelineParams(-1.0)


def test_timeline_params_round_trip_and_default_to_plain_frames():
    params = TimelineParams(0.3, attention_exponent=0.5)
    assert TimelineParams.from_config(params.to_config()) == params
    assert TimelineParams.from_config({"gamma": 0.25}).attention_exponent == 0.0  # heads saved before it
    assert TimelineParams.from_config(None) == TimelineParams()
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="attention_exponent"):
            TimelineParams(attention_exponent=bad)


def test_calibration_of_a_silent_class_is_zero_not_nan():
    out = calibrate_frames(np.array([0.3], np.float32), np.zeros((4, 1), np.float32))
    assert np.all(out == 0)


def test_merge_windows_takes_the_max_over_covering_windows():
    a = np.array([[0.1], [0.5], [0.2]], np.float32)
    b = np.array([[0.4], [0.1], [0.9]], np.float32)
    merged = merge_windows([a, b], np.array([0, 1]), 5)
    np.testing.assert_allclose(merged[:, 0], [0.1, 0.5, 0.2, 0.9, 0.0])


# --- label view -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audioset():
    return load_class_labels()


def test_rollup_never_lowers_a_score_and_parents_take_descendant_maxima(audioset):
    view = LabelView(audioset.mids, audioset.names, rollup=True)
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, (3, len(audioset))).astype(np.float32)
    rolled = view.apply(scores)
    ontology = load_ontology()
    parents = ontology.parents()
    for k, info in enumerate(view.classes):
        if info.index >= 0:
            assert np.all(rolled[:, k] >= scores[:, info.index])
        descendants = [i for i, mid in enumerate(audioset.mids)
                       if info.mid in ontology.ancestors(mid, parents)]
        own = [info.index] if info.index >= 0 else []
        np.testing.assert_allclose(rolled[:, k], scores[:, own + descendants].max(axis=1))
        assert info.rolled_up == bool(descendants)
    speech = view.mids.index("/m/09x0r")
    assert view.classes[speech].rolled_up  # Speech has children among the 527 classes
    added = [c for c in view.classes if c.index < 0]
    assert added and all(c.mid in ontology.entries for c in added)
    human_sounds = next(c for c in view.classes if c.mid == "/m/0dgw9r")
    assert human_sounds.abstract and human_sounds.flags() == {"rolled_up": True, "abstract": True}


def test_filters_by_name_mid_file_and_exclude(audioset, tmp_path):
    listing = tmp_path / "keep.txt"
    listing.write_text("# my classes\nDog\n/m/09x0r  # Speech\n\n", encoding="utf-8")
    view = LabelView(audioset.mids, audioset.names, classes=[f"@{listing}", "music"], exclude=["Dog"])
    assert view.names == ["Speech", "Music"]
    scores = np.arange(len(audioset), dtype=np.float32)
    expected = [audioset.index_of("Speech"), audioset.index_of("Music")]
    np.testing.assert_array_equal(view.apply(scores), expected)
    with pytest.raises(LabelsError, match="Barkk"):
        LabelView(audioset.mids, audioset.names, classes=["Barkk"])
    with pytest.raises(LabelsError, match="cannot read"):
        LabelView(audioset.mids, audioset.names, classes=[f"@{tmp_path / 'missing.txt'}"])


def test_user_label_sets_have_no_ontology():
    view = LabelView(["a", "b"], ["a", "b"], rollup=True)
    assert view.names == ["a", "b"] and not any(c.rolled_up for c in view.classes)


# --- thresholds -----------------------------------------------------------------------------------------
def test_f1_thresholds_separate_and_clip_f1_matches_scikit_learn():
    rng = np.random.default_rng(2)
    y = rng.uniform(0, 1, (300, 4)) < 0.2
    scores = np.where(y, rng.uniform(0.35, 1, y.shape), rng.uniform(0, 0.3, y.shape)).astype(np.float32)
    scores[:, 3] = rng.uniform(0, 1, 300)
    y[:, 2] = False  # no positive: keeps the default
    t = f1_thresholds(y, scores)
    assert np.all((t[:2] > 0.3) & (t[:2] <= 0.36)) and t[2] == 0.5
    f1 = clip_f1(y, scores, t)
    predicted = scores >= t
    used = y.any(axis=0)
    macro = f1_score(y[:, used], predicted[:, used], average="macro", zero_division=0)
    assert f1.macro == pytest.approx(macro)
    assert f1.micro == pytest.approx(f1_score(y, predicted, average="micro", zero_division=0))


# --- strong labels and metrics --------------------------------------------------------------------------
def test_frame_targets_half_patch_or_half_event():
    index = {"/m/a": 0, "/m/b": 1}
    events = [(0.5, 1.0, "/m/a"),     # 0.46 s of patch 0 (< half of it) but all of the event: active
              (2.0, 4.0, "/m/b"),     # patch 2 (1.92-2.88): 0.88 s; patch 3 (2.88-3.84): all; patch 4: 0.16 s
              (7.0, 9.0, "/m/zzz")]   # a class outside the index is ignored
    y = frame_targets(events, 10, index)
    assert y[:, 0].nonzero()[0].tolist() == [0]
    assert y[:, 1].nonzero()[0].tolist() == [2, 3]
    # The release's 1 Hz frames: patch t spans [t, t + 0.96), so the grids drift apart by 0.04 s per patch.
    release = frame_targets(events, 10, index, hop=RELEASE_FRAME_HOP)
    assert release[:, 0].nonzero()[0].tolist() == [0]
    assert release[:, 1].nonzero()[0].tolist() == [2, 3]  # patches 2.0-2.96 and 3.0-3.96
    late = [(8.5, 9.3, "/m/a")]  # patch 8 (8.0-8.96) holds 0.46 s of it (>= half the event), patch 9 0.30 s
    assert frame_targets(late, 10, index, hop=RELEASE_FRAME_HOP)[:, 0].nonzero()[0].tolist() == [8]
    # on the 0.96-s grid patch 9 (8.64-9.60) holds 0.66 s and patch 8 (7.68-8.64) 0.14 s
    assert frame_targets(late, 10, index)[:, 0].nonzero()[0].tolist() == [9]


def test_localization_ap_pools_positive_clips_and_matches_scikit_learn():
    rng = np.random.default_rng(4)
    targets, scores = [], []
    for _ in range(20):
        targets.append(rng.uniform(0, 1, (10, 3)) < 0.3)
        scores.append(np.round(rng.uniform(0, 1, (10, 3)), 1))  # ties included
    targets[0][:, 2] = True  # an all-active clip is pooled too
    loc = localization_ap(targets, scores)
    aps, chances = [], []
    for k in range(3):
        positive = [i for i, y in enumerate(targets) if y[:, k].any()]
        y = np.concatenate([targets[i][:, k] for i in positive])
        aps.append(average_precision_score(y, np.concatenate([scores[i][:, k] for i in positive])))
        chances.append(y.mean())
    assert loc.ap == pytest.approx(np.mean(aps)) and loc.chance == pytest.approx(np.mean(chances))
    assert loc.pairs == sum(int(y[:, k].any()) for y in targets for k in range(3))


def test_segment_f1_counts():
    ref = [segment_activity([(0.2, 2.5, 0)], 2, 4.0)]  # class 0 in segments 0, 1, 2
    est = [segment_activity([(1.5, 3.5, 0), (0.0, 1.0, 1)], 2, 4.0)]  # class 0 in 1, 2, 3; class 1 in 0
    assert ref[0][:, 0].tolist() == [True, True, True, False]
    f1 = segment_f1(ref, est)
    assert f1.micro == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))  # tp 2, fp 2 (one per class), fn 1
    assert f1.macro == pytest.approx(2 * 2 / (2 * 2 + 1 + 1)) and f1.classes == 1


def test_match_release_orders_clips_as_the_strong_table_and_keeps_shared_classes():
    x = np.zeros((3, 10, 128), np.uint8)
    x[:, 0, 0] = [10, 20, 30]  # tells the clips apart
    mask = np.zeros((3, 10), bool)
    mask[:, :2] = True
    clipset = ClipSet(x, mask, np.zeros((3, 1), bool), np.array(["aa", "b_b", "cc"]), ["k"])
    strong = {"cc_0": [(0.0, 1.0, "/m/z")], "zz_0": [(0.0, 1.0, "/m/x")],
              "b_b_30000": [(1.0, 2.0, "/m/x"), (2.0, 3.0, "/m/q")]}
    matched = match_release(clipset, strong, ["/m/x", "/m/y", "/m/z"])
    assert matched.segments == ["cc_0", "b_b_30000"]  # zz is not in the release
    assert [int(c[0, 0]) for c in matched.clips] == [30, 20] and all(len(c) == 2 for c in matched.clips)
    assert matched.mids == ["/m/x", "/m/z"]  # /m/q is not among the head's classes, /m/y has no events
    assert matched.columns.tolist() == [0, 2] and matched.column_of == {"/m/x": 0, "/m/z": 1}


def test_read_strong_labels(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
                    "a_b_30000\t0.000\t1.500\t/m/x\n", encoding="utf-8")
    assert read_strong_labels(path) == {"a_b_30000": [(0.0, 1.5, "/m/x")]}
    assert segment_video_id("a_b_30000") == ("a_b", 30.0)
    path.write_text("id\tx\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        read_strong_labels(path)
