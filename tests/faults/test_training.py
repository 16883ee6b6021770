"""Degenerate training data, strict JSON, broken artifacts (heads, training checkpoints, VGGish
checkpoints), evaluating an empty folder, labels containing commas."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import EXIT_ERROR, EXIT_OK, main

from .helpers import one_line_error, write_features

pytestmark = pytest.mark.faults

TINY = ["--hidden-units", "8", "--num-layers", "1", "--iterations", "4", "--eval-every", "2",
        "--checkpoint-every", "2", "--batch-size", "8", "--no-progress"]


def _strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def features(tmp_path: Path) -> Path:
    """An `extract --format npz` folder of 12 clips of 3 frames each (random embeddings)."""
    write_features(tmp_path / "feats", 12)
    return tmp_path / "feats"


def _labels(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text("id,labels\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_one_class_trains_and_reports_what_cannot_be_computed(features: Path, tmp_path: Path, capsys) -> None:
    """One class: the report plot cannot be log-scaled, yet the run and its rerun finish with a summary."""
    labels = _labels(tmp_path, [f"c{i}.wav,Dog" for i in range(12)])
    args = ["train", str(features), "--labels", str(labels), "-o", str(tmp_path / "run"), *TINY]
    for _ in range(2):  # the run, then a rerun of the finished run
        assert main(args) == EXIT_OK
        summary = _strict_json(capsys.readouterr().out)
        assert summary["mAP"] is None and summary["d_prime"] is None and summary["classes_used"] == 0
        assert "cannot be computed" in summary["notes"][0]
    report = tmp_path / "run" / "report"
    assert _strict_json((report / "summary.json").read_text())["notes"] == summary["notes"]
    assert (report / "ap_vs_train_count.png").stat().st_size > 0


@pytest.mark.slow
def test_one_clip_trains_without_a_held_out_part(features: Path, tmp_path: Path, capsys) -> None:
    labels = _labels(tmp_path, ["c0.wav,Dog"])
    args = ["train", str(features), "--labels", str(labels), "-o", str(tmp_path / "run"), *TINY]
    assert main(args) == EXIT_OK
    summary = _strict_json(capsys.readouterr().out)
    assert Path(summary["head"]).is_file() and "no held-out part" in summary["notes"][0]


def test_labels_matching_no_clip_or_empty_stop_before_training(features: Path, tmp_path: Path,
                                                                capsys) -> None:
    for rows, words in ((["other.wav,Dog"], "none of its 1 ids match"), (["c0.wav,", "c1.wav,"], "no label")):
        labels = _labels(tmp_path, rows)
        args = ["train", str(features), "--labels", str(labels), "-o", str(tmp_path / "run"), *TINY]
        assert main(args) == EXIT_ERROR
        assert words in one_line_error(capsys.readouterr().err)


def test_infinite_d_prime_is_null_with_a_note(tmp_path: Path, capsys) -> None:
    from classifier.evaluate import evaluate_predictions
    from classifier.metrics import compute_metrics
    from pipeline.training import _metrics_summary, _print_json

    y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], bool)
    perfect = y.astype(np.float32)
    metrics = evaluate_predictions(y, perfect, ["a", "b"], None, tmp_path / "report")
    assert np.isinf(metrics.d_prime)
    summary = _strict_json((tmp_path / "report" / "summary.json").read_text())
    assert summary["d_prime"] is None and "infinity" in summary["notes"][0]
    _print_json(_metrics_summary(compute_metrics(y, 1 - perfect)))  # perfectly wrong: -infinity
    printed = _strict_json(capsys.readouterr().out)
    assert printed["d_prime"] is None and printed["mAUC"] == 0.0 and "-infinity" in printed["notes"][0]


def _broken_heads(folder: Path, good: bytes) -> dict[str, tuple[Path, str]]:
    """name -> (file, words its error must contain)."""
    cases = {
        "empty": (b"", "empty file"),
        "truncated": (good[: len(good) // 2], "truncated or corrupt"),
        "text": (b"just some text\n" * 10, "a text file, not an .npz archive"),
        "pickle": (pickle.dumps({"weights": [1, 2]}), "pickled"),
        "foreign": (None, "not a head file"),
    }
    files = {}
    for name, (data, words) in cases.items():
        path = folder / f"{name}.npz"
        if data is None:
            np.savez(path, weights=np.zeros(3))
        else:
            path.write_bytes(data)
        files[name] = (path, words)
    return files


def test_broken_head_files_are_one_line_naming_the_file(features: Path, tmp_path: Path, capsys) -> None:
    """Broken head files are one line naming the file (not BadZipFile / EOFError), each kind by its name."""
    from classifier.pretrained import heads_dir

    good = (heads_dir() / "audioset.npz").read_bytes()[:200_000]  # enough for a truncated copy
    labels = _labels(tmp_path, ["c0.wav,Dog"])
    for name, (path, words) in _broken_heads(tmp_path, good).items():
        code = main(["evaluate", str(features), "--labels", str(labels), "--head", str(path), "-o",
                     str(tmp_path / "eval")])
        line = one_line_error(capsys.readouterr().err)
        assert code == EXIT_ERROR and str(path) in line and words in line, (name, line)
        assert "audiotag train" in line
        assert ("pickled" in line) == (name == "pickle"), line


@pytest.mark.slow
def test_broken_training_checkpoint_is_one_line_naming_it(features: Path, tmp_path: Path, capsys) -> None:
    """A truncated checkpoint.npz is a one-line error naming it, not an internal BadZipFile error."""
    labels = _labels(tmp_path, [f"c{i}.wav,{'a' if i % 2 else 'b'}" for i in range(12)])
    run = tmp_path / "run"
    args = ["train", str(features), "--labels", str(labels), "-o", str(run), *TINY]
    assert main(args) == EXIT_OK
    capsys.readouterr()
    checkpoint = run / "checkpoint.npz"
    good = checkpoint.read_bytes()
    for data, words in ((good[: len(good) // 3], "truncated or corrupt"), (b"", "empty file"),
                        (None, "not a training checkpoint")):
        if data is None:
            np.savez(checkpoint, something=np.zeros(2))
        else:
            checkpoint.write_bytes(data)
        assert main(args) == EXIT_ERROR
        line = one_line_error(capsys.readouterr().err)
        assert str(checkpoint) in line and words in line and "delete it" in line, line


def test_broken_vggish_checkpoints_are_one_line_with_what_to_do(synthetic_checkpoint: Path, tmp_path: Path,
                                                                capsys) -> None:
    clip = tmp_path / "c.wav"
    import soundfile as sf

    sf.write(clip, np.zeros(16000), 16000)
    cases = {"truncated": synthetic_checkpoint.read_bytes()[:100_000], "empty": b"", "text": b"hello\n" * 9}
    for name, data in cases.items():
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(data)
        assert main(["--vggish-checkpoint", str(path), "tag", str(clip)]) == EXIT_ERROR
        line = one_line_error(capsys.readouterr().err)
        assert str(path) in line and "audiotag download-models" in line, line


def test_evaluate_on_an_empty_folder_says_there_are_no_features(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["evaluate", str(tmp_path / "empty"), "-o", str(tmp_path / "eval")])
    line = one_line_error(capsys.readouterr().err)
    assert code == EXIT_ERROR and "no features in this folder" in line and "label" not in line


def test_a_quoted_label_containing_a_comma_stays_one_label(tmp_path: Path) -> None:
    from classifier.labels import load_class_labels, read_labels_csv
    from classifier.readers import classes_from_labels_csv, label_table

    labels = tmp_path / "labels.csv"
    labels.write_text('id,labels\na.wav,"""Dog, large"",Cat"\nb.wav,"Dog,Bark"\nc.wav,Cat\n'
                      'd.wav,"""Male speech, man speaking"",Speech"\n')
    table = read_labels_csv(labels)
    assert table["a.wav"] == ["Dog, large", "Cat"] and table["b.wav"] == ["Dog", "Bark"]
    assert "Dog, large" in classes_from_labels_csv(labels)
    audioset = load_class_labels()
    labels.write_text('id,labels\nd.wav,"""Male speech, man speaking"",Speech"\n')
    assert label_table(labels, audioset)["d.wav"] == sorted(
        audioset.indices_of(["Male speech, man speaking", "Speech"]))
