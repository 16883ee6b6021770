"""`audiotag train` on a folder of class folders or a `path,labels` CSV of audio: extraction inside the
command, the cross-validated choice, and the trained heads in `tag`, `evaluate`, the HTML report and export.

The clips are generated (tones, noise, clicks) and embedded with the SYNTHETIC VGGish checkpoint: the
tests check the plumbing, not what a real checkpoint would learn from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from faults.helpers import run_cli as run
from labelled_clips import CLASSES, RATE, TINY, write_class_folders, write_clip

from pipeline.cli import EXIT_ERROR, EXIT_OK


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, synthetic_checkpoint: Path) -> tuple[Path, Path, str]:
    """(the folder of class folders, the run folder, stdout) of one `train` run."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("own")
    sounds = write_class_folders(root / "sounds")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run(synthetic_checkpoint, "train", str(sounds), "-o", str(root / "run"), *TINY) == EXIT_OK
    return sounds, root / "run", out.getvalue()


@pytest.mark.slow
def test_a_folder_of_class_folders_trains_a_multiclass_head_with_its_report(trained) -> None:
    from classifier.pretrained import load_head

    _, run_dir, stdout = trained
    assert "18 clips, 3 classes (multiclass); stratified 2-fold cross-validation" in stdout
    for model in ("linear", "single_attention", "multi_attention", "feature_attention"):
        assert model in stdout
    assert "chosen: " in stdout and str(run_dir / "report" / "report.html") in stdout
    head = load_head(run_dir / "head.npz")
    assert head.task == "multiclass" and head.class_names == list(CLASSES)
    assert head.info["chosen"] in stdout and len(head.info["comparison"]) == 4
    assert (run_dir / "features" / "embeddings.h5").is_file()
    assert (run_dir / "labels.csv").read_text().splitlines()[:2] == ["id,labels", "clicks/clicks0.wav,clicks"]
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["task"] == "multiclass" and summary["files_failed"] == 0 and "accuracy" in summary
    page = (run_dir / "report" / "report.html").read_text()
    assert "Confusion matrix" in page and "data:image/png;base64," in page and "Files left out" not in page


@pytest.mark.slow
def test_the_rerun_reuses_features_and_training_runs(trained, synthetic_checkpoint: Path, capsys) -> None:
    from classifier.head_file import read_head

    sounds, run_dir, _ = trained
    before = read_head(run_dir / "head.npz")
    runs = sorted((run_dir / "training").glob("*/cv/*/split*/head.npz"))
    stamps = [p.stat().st_mtime_ns for p in runs]
    assert run(synthetic_checkpoint, "train", str(sounds), "-o", str(run_dir), *TINY) == EXIT_OK
    assert [p.stat().st_mtime_ns for p in runs] == stamps
    after = read_head(run_dir / "head.npz")
    for a, b in zip(before.member_weights[0], after.member_weights[0], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_tag_shows_the_class_and_its_probability(trained, synthetic_checkpoint: Path, tmp_path: Path,
                                                 capsys) -> None:
    sounds, run_dir, _ = trained
    clip = sounds / "tone" / "tone1.wav"
    long_clip = tmp_path / "long.wav"  # 14.4 s, several windows: their distributions are averaged
    sf.write(long_clip, np.tile(sf.read(clip)[0], 12), RATE)
    head = str(run_dir / "head.npz")
    assert run(synthetic_checkpoint, "tag", str(clip), str(long_clip), "--head", head, "--format", "json",
               "--events") == EXIT_OK
    items = json.loads(capsys.readouterr().out)
    for item in items:
        scores = [label["score"] for label in item["labels"]]
        assert item["class"] == item["labels"][0] and item["class"]["name"] in CLASSES
        assert sum(scores) == pytest.approx(1, abs=1e-5) and len(scores) == 3
    assert run(synthetic_checkpoint, "tag", str(clip), "--head", head) == EXIT_OK
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith(f"{clip} (1.20 s): ") and first_line.split(": ")[1].split(" (")[0] in CLASSES
    html = tmp_path / "report.html"
    assert run(synthetic_checkpoint, "tag", str(clip), "--head", head, "--html", str(html)) == EXIT_OK
    assert 'class="verdict">class: <b>' in html.read_text()


@pytest.mark.slow
def test_evaluate_scores_a_folder_of_class_folders(trained, synthetic_checkpoint: Path, tmp_path: Path,
                                                   capsys) -> None:
    sounds, run_dir, _ = trained
    assert run(synthetic_checkpoint, "evaluate", str(sounds), "--head", str(run_dir / "head.npz"), "-o",
               str(tmp_path / "eval")) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 18 and 0 <= summary["accuracy"] <= 1 and "macro_F1" in summary
    assert (tmp_path / "eval" / "confusion.png").is_file() and (tmp_path / "eval" / "features").is_dir()
    as_features = ["evaluate", str(run_dir / "features"), "--labels", str(run_dir / "labels.csv"), "--head",
                   str(run_dir / "head.npz"), "-o", str(tmp_path / "eval_features")]
    assert run(synthetic_checkpoint, *as_features) == EXIT_OK  # the same clips, extracted by the run
    assert json.loads(capsys.readouterr().out)["accuracy"] == summary["accuracy"]
    other = write_class_folders(tmp_path / "other", per_class=1)
    (other / "tone").rename(other / "siren")
    assert run(synthetic_checkpoint, "evaluate", str(other), "--head", str(run_dir / "head.npz"), "-o",
               str(tmp_path / "eval2")) == EXIT_ERROR
    assert "class(es) the head 'run' does not know: siren" in capsys.readouterr().err


@pytest.mark.slow
def test_a_csv_of_audio_with_several_labels_trains_a_multilabel_head(synthetic_checkpoint: Path,
                                                                      tmp_path: Path, capsys) -> None:
    from classifier.pretrained import load_head

    rows = ["path,labels"]
    for kind in CLASSES:
        for i in range(4):
            write_clip(tmp_path / "audio" / f"{kind}{i}.wav", kind, i)
            labels = f'"{kind},loud"' if i % 2 else kind
            rows.append(f"audio/{kind}{i}.wav,{labels}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    assert run(synthetic_checkpoint, "train", str(tmp_path / "labels.csv"), "-o", str(tmp_path / "run"),
               *TINY) == EXIT_OK
    assert "12 clips, 4 classes (multilabel)" in capsys.readouterr().out
    head = load_head(tmp_path / "run" / "head.npz")
    assert head.task == "multilabel" and head.class_names == ["clicks", "loud", "noise", "tone"]
    assert run(synthetic_checkpoint, "tag", str(tmp_path / "audio" / "tone1.wav"), "--head",
               str(tmp_path / "run" / "head.npz"), "--format", "json") == EXIT_OK
    item = json.loads(capsys.readouterr().out)[0]
    assert "class" not in item and {label["name"] for label in item["labels"]} == set(head.class_names)


@pytest.mark.slow
def test_the_export_graph_scores_user_heads_as_the_tagger(trained, synthetic_checkpoint: Path) -> None:
    """A multiclass head's exported clip scores are the mean of its windows' distributions, as tag's."""
    import tensorflow as tf

    from classifier.pretrained import load_head
    from pipeline.export import build_module
    from pipeline.tagger import Embeddings, Tagger

    head = load_head(trained[1] / "head.npz")
    module = build_module(synthetic_checkpoint, head, allow_synthetic=True)
    assert module.info.as_dict()["task"] == "multiclass" and module.names == list(CLASSES)
    rng = np.random.default_rng(0)
    with Tagger(synthetic_checkpoint, head) as tagger:
        for patches in (3, 23):
            x = rng.integers(0, 256, (patches, 128)).astype(np.uint8)
            emb = Embeddings(raw=np.zeros((patches, 128), np.float32), embedding=x,
                             starts=np.arange(patches) * 0.96, duration=patches * 0.96)
            want = tagger.score(emb)
            scores, frames = module.scores(tf.constant(x, tf.float32), 1)
            np.testing.assert_allclose(scores.numpy(), want.scores, atol=1e-5)
            np.testing.assert_allclose(frames.numpy(), want.frame_scores, atol=1e-5)
            assert want.scores.sum() == pytest.approx(1, abs=1e-5)


@pytest.mark.slow
def test_export_of_a_multiclass_head_scores_as_tag(trained, synthetic_checkpoint: Path,
                                                   tmp_path: Path) -> None:
    """`audiotag export --format tflite` of a trained head: its classes and task in the sidecars, and on a
    clip of 14.4 s (several windows) the scores of `tag` (the mean of the windows' distributions)."""
    from ai_edge_litert.interpreter import Interpreter

    from pipeline.tagger import Tagger

    sounds, run_dir, _ = trained
    out = tmp_path / "export"
    assert run(synthetic_checkpoint, "export", str(out), "--head", str(run_dir / "head.npz"), "--format",
               "tflite", "--allow-synthetic") == EXIT_OK
    assert (out / "tflite" / "labels.csv").read_text().splitlines()[1:] == [f"{i},{c},{c}"
                                                                          for i, c in enumerate(CLASSES)]
    assert json.loads((out / "tflite" / "export_info.json").read_text())["task"] == "multiclass"
    waveform = np.tile(sf.read(sounds / "tone" / "tone1.wav", dtype="float32")[0], 12)
    exported = Interpreter(str(out / "tflite" / "audiotag.tflite")).get_signature_runner()(waveform=waveform)
    with Tagger(synthetic_checkpoint, str(run_dir / "head.npz")) as tagger:
        want = tagger.tag(waveform, RATE)
    assert len(want.window_scores) > 1 and exported["scores"].sum() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(exported["scores"], want.scores, atol=5e-3)
