"""`audiotag train` on audio that goes wrong: unreadable files (exit status 3, listed, training goes on),
class folders without audio or without readable audio, inputs that are neither or both kinds, and runs
killed while extracting or training (the rerun completes, as an uninterrupted run would)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
from labelled_clips import CLASSES, TINY, write_class_folders, write_clip

from pipeline.cli import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED

from .helpers import cli_process, one_line_error, run_cli

pytestmark = pytest.mark.faults


def _train(checkpoint: Path, data: Path, out: Path, *extra: str) -> int:
    return run_cli(checkpoint, "train", str(data), "-o", str(out), *TINY, *extra)


@pytest.mark.slow
def test_unreadable_files_are_listed_and_training_goes_on(synthetic_checkpoint: Path, tmp_path: Path,
                                                          capsys) -> None:
    sounds = write_class_folders(tmp_path / "sounds", per_class=4)
    (sounds / "noise" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    assert _train(synthetic_checkpoint, sounds, tmp_path / "run") == EXIT_SOME_FAILED
    captured = capsys.readouterr()
    errors = tmp_path / "run" / "features" / "errors.tsv"
    assert f"1 of 13 audio files could not be read and were left out (listed with the reasons in {errors})" \
        in captured.err
    assert "noise/broken.wav" in errors.read_text() and "12 clips, 3 classes" in captured.out
    summary = json.loads((tmp_path / "run" / "report" / "summary.json").read_text())
    assert summary["files_failed"] == 1 and summary["clips_per_class"]["noise"] == 4
    assert "Files left out (1)" in (tmp_path / "run" / "report" / "report.html").read_text()


def test_class_folders_without_audio_are_named_and_nothing_is_written(synthetic_checkpoint: Path,
                                                                      tmp_path: Path, capsys) -> None:
    sounds = write_class_folders(tmp_path / "sounds", per_class=2)
    (sounds / "silence").mkdir()
    (sounds / "notes").mkdir()
    (sounds / "notes" / "readme.txt").write_text("not audio")
    assert _train(synthetic_checkpoint, sounds, tmp_path / "run") == EXIT_ERROR
    line = one_line_error(capsys.readouterr().err)
    assert "class folder(s) without audio files: notes, silence" in line and str(sounds) in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("layout", "words"),
    [("loose", "1 audio file(s) outside any class folder (stray.wav)"),
     ("features", "holds both audio (clicks, noise) and features (x.npz)"),
     ("empty", "no features in this folder (.tfrecord, .h5, .npz) and no class folders of audio")],
)
def test_ambiguous_or_empty_inputs_are_one_line_errors(layout: str, words: str, synthetic_checkpoint: Path,
                                                       tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if layout != "empty":
        write_clip(data / "clicks" / "a.wav", "clicks", 0)
        write_clip(data / "noise" / "a.wav", "noise", 0)
    if layout == "loose":
        write_clip(data / "stray.wav", "tone", 0)
    if layout == "features":
        np.savez(data / "x.npz", embedding=np.zeros((1, 128), np.uint8))
    assert _train(synthetic_checkpoint, data, tmp_path / "run") == EXIT_ERROR
    assert words in one_line_error(capsys.readouterr().err)


def test_options_for_features_and_an_output_inside_the_data_are_refused(synthetic_checkpoint: Path,
                                                                        tmp_path: Path, capsys) -> None:
    sounds = write_class_folders(tmp_path / "sounds", per_class=2)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,labels\n")
    for extra, words in ((["--labels", str(labels)], "--labels: for features only"),
                         (["--holdout-fraction", "0.2", "--eval-every", "5"],
                          "--holdout-fraction, --eval-every: for features only")):
        assert _train(synthetic_checkpoint, sounds, tmp_path / "run", *extra) == EXIT_ERROR
        assert words in one_line_error(capsys.readouterr().err)
    assert _train(synthetic_checkpoint, sounds, sounds / "run") == EXIT_ERROR
    assert "the output folder is inside" in one_line_error(capsys.readouterr().err)
    assert not (sounds / "run").exists()


@pytest.mark.slow
def test_a_class_without_readable_audio_stops_before_training_and_keeps_the_features(
        synthetic_checkpoint: Path, tmp_path: Path, capsys) -> None:
    sounds = write_class_folders(tmp_path / "sounds", per_class=3)
    for path in (sounds / "tone").iterdir():
        path.write_bytes(b"\0" * 100)
    out = tmp_path / "run"
    assert _train(synthetic_checkpoint, sounds, out) == EXIT_ERROR
    line = one_line_error(capsys.readouterr().err)
    assert "class(es) with fewer than 2 readable audio file(s): tone (0)" in line and "errors.tsv" in line
    assert not (out / "head.npz").exists()
    with h5py.File(out / "features" / "embeddings.h5", "r") as f:
        assert len(f["video_id"]) == 6  # the readable files, kept for the rerun
    for i in range(3):  # new tone clips: the rerun extracts only them, and trains
        write_clip(sounds / "tone" / f"new{i}.wav", "tone", i)
    assert _train(synthetic_checkpoint, sounds, out) == EXIT_SOME_FAILED  # the broken ones stay listed
    assert "9 clips, 3 classes" in capsys.readouterr().out


def _killed(checkpoint: Path, moment: str, *args: str) -> None:
    process = cli_process("--vggish-checkpoint", str(checkpoint), *args, kill_at=moment)
    _, err = process.communicate(timeout=600)
    assert process.returncode == -signal.SIGKILL, err


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before-rename:part-:1", "after-merge", "before-rename:checkpoint.npz:3"])
def test_a_run_killed_while_extracting_or_training_resumes_to_the_same_head(
        moment: str, synthetic_checkpoint: Path, tmp_path: Path, capsys) -> None:
    """Killed with a complete temporary of the extraction's HDF5 part, right after its merge (the parts still
    there) or with a complete temporary of a training checkpoint; the rerun finishes with every clip once and
    exactly the head of an uninterrupted run."""
    from classifier.head_file import read_head

    sounds = write_class_folders(tmp_path / "sounds", per_class=4)
    args = ["train", str(sounds), "-o", str(tmp_path / "run"), *TINY, "--model", "single_attention"]
    _killed(synthetic_checkpoint, moment, *args)
    assert not (tmp_path / "run" / "head.npz").exists()
    assert run_cli(synthetic_checkpoint, *args) == EXIT_OK
    assert not list((tmp_path / "run").rglob("*.part"))
    with h5py.File(tmp_path / "run" / "features" / "embeddings.h5", "r") as f:
        clip_ids = sorted(f["video_id"].asstr()[()])
    assert clip_ids == sorted(f"{c}/{c}{i}.wav" for c in CLASSES for i in range(4))  # each exactly once
    clean = ["train", str(sounds), "-o", str(tmp_path / "clean"), *TINY, "--model", "single_attention"]
    assert run_cli(synthetic_checkpoint, *clean) == EXIT_OK
    resumed = read_head(tmp_path / "run" / "head.npz").member_weights[0]
    for a, b in zip(resumed, read_head(tmp_path / "clean" / "head.npz").member_weights[0], strict=True):
        np.testing.assert_array_equal(a, b)
