"""evaluate_predictions / evaluate_head: report files, their contents, the mask honoured."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from classifier.clipset import ClipSet, pad_clips
from classifier.evaluate import REPORT_FILES, evaluate_head, evaluate_predictions
from classifier.labels import load_class_labels


def test_report_files(tmp_path: Path) -> None:
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], bool)
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.3], [0.7, 0.6, 0.3], [0.1, 0.3, 0.3]])
    m = evaluate_predictions(y, scores, ["dog", "cat", "owl"], [10, 200, 0], tmp_path / "rep",
                             extra={"model": "x"})
    out = tmp_path / "rep"
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)  # no temp files left
    assert m.mAP == pytest.approx(1.0) and m.n_classes_excluded == 1
    summary = json.loads((out / "summary.json").read_text())
    notes = summary.pop("notes")  # what could not be computed, and why
    assert summary == {"mAP": 1.0, "mAUC": 1.0, "d_prime": None,
                       "n_classes_used": 2, "n_classes_excluded": 1, "n_clips": 4, "model": "x"}
    assert "1 of 3 classes" in notes[0] and "d_prime is +infinity" in notes[1]
    with open(out / "per_class.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "mid", "name", "train_count", "n_eval_positives", "AP", "AUC"]
    assert rows[1] == {"index": "1", "mid": "cat", "name": "cat", "train_count": "200",
                       "n_eval_positives": "2", "AP": "1.000000", "AUC": "1.000000"}
    assert rows[2]["AP"] == "" and rows[2]["AUC"] == ""
    per_class = json.loads((out / "per_class.json").read_text())
    assert per_class[2]["AP"] is None and per_class[0]["train_count"] == 10
    assert (out / "ap_vs_train_count.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_is_valid_json_for_perfect_scores(tmp_path: Path) -> None:
    # d' of a perfect classifier is +inf, which strict JSON cannot hold: written as null
    y = np.array([[1], [0]], bool)
    evaluate_predictions(y, y.astype(float), ["a"], None, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["d_prime"] is None and summary["mAUC"] == 1.0


def test_audioset_mids_in_report(tmp_path: Path) -> None:
    labels = load_class_labels()
    rng = np.random.default_rng(0)
    y = rng.random((50, 527)) < 0.05
    evaluate_predictions(y, rng.random(y.shape), labels.names, np.arange(527), tmp_path)
    rows = json.loads((tmp_path / "per_class.json").read_text())
    assert rows[0]["mid"] == "/m/09x0r" and rows[0]["name"] == "Speech" and len(rows) == 527


class FakeHead:
    """Scores a clip by its mean first embedding value per class; records what it was given."""

    name = "fake"
    def __init__(self) -> None:
        self.class_names = ["a", "b"]
        self.seen: list[np.ndarray] = []

    def predict_clips(self, embeddings):
        self.seen = list(embeddings)
        return np.array([[clip[:, 0].mean() / 255, 1 - clip[:, 0].mean() / 255] for clip in self.seen],
                        np.float32)


def test_evaluate_head_passes_real_frames_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = [rng.integers(1, 256, (t, 128), dtype=np.uint8) for t in (1, 3, 10, 7)]
    x, mask = pad_clips(clips)
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], bool)
    cs = ClipSet(x=x, mask=mask, y=y, ids=np.array(list("pqrs")), class_names=["a", "b"])
    head = FakeHead()
    m = evaluate_head(head, cs, tmp_path, train_counts=[5, 6])
    assert [c.shape for c in head.seen] == [(1, 128), (3, 128), (10, 128), (7, 128)]
    assert all(c.dtype == np.uint8 for c in head.seen)
    for seen, clip in zip(head.seen, clips, strict=True):
        np.testing.assert_array_equal(seen, clip)
    expected = np.array([[c[:, 0].mean() / 255, 1 - c[:, 0].mean() / 255] for c in clips])
    from classifier.metrics import compute_metrics

    assert m.mAP == pytest.approx(compute_metrics(y, expected).mAP)
    assert json.loads((tmp_path / "summary.json").read_text())["model"] == "fake"
    cs.class_names = ["b", "a"]
    with pytest.raises(ValueError, match="differ"):
        evaluate_head(head, cs, tmp_path)
