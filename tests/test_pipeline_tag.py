"""`audiotag tag` and pipeline.Tagger end to end: SYNTHETIC VGGish checkpoint, a tiny untrained head built
with classifier's API (real computations, meaningless labels), real clips from ../shared/audio."""

from __future__ import annotations

import csv
import io
import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import EXIT_SOME_FAILED, main
from pipeline.tagger import Tagger, window_starts

pytestmark = [pytest.mark.slow, pytest.mark.shared]

LONG = "bus_chatter.wav"  # 18.3 s, 44.1 kHz stereo: 19 patches, 10 windows
SHORT = "dog_975ms.wav"  # 0.975 s at 16 kHz: exactly one patch


@pytest.fixture(scope="module")
def tiny_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained single-attention head over the 527 AudioSet classes, saved in classifier's head format."""
    import keras

    from classifier.head_file import save_head
    from classifier.labels import load_class_labels
    from classifier.models import build_model

    keras.utils.set_random_seed(0)
    config = {
        "kind": "single_attention",
        "num_classes": 527,
        "hidden_units": 32,
        "num_layers": 1,
        "dropout": 0.0,
    }
    model = build_model(**config)
    path = tmp_path_factory.mktemp("head") / "tiny.npz"
    names = load_class_labels().names
    return save_head(path, [config], [[np.asarray(w) for w in model.weights]], names, "tiny-untrained")


@pytest.fixture(scope="module")
def tagger(synthetic_checkpoint: Path, tiny_head: Path) -> Tagger:
    with Tagger(synthetic_checkpoint, head=str(tiny_head)) as loaded:
        yield loaded


def test_window_starts() -> None:
    assert window_starts(3).tolist() == [0]
    assert window_starts(10).tolist() == [0]
    assert window_starts(13).tolist() == [0, 1, 2, 3]
    assert window_starts(25, hop=10).tolist() == [0, 10, 15]


def test_long_file_slides_windows_and_takes_the_max(tagger: Tagger, shared_audio: Path) -> None:
    result = tagger.tag(shared_audio / LONG)
    emb = result.embeddings.embedding
    assert emb.shape == (19, 128)
    assert result.duration == pytest.approx(18.3, abs=0.05)
    assert result.window_scores.shape == (10, 527)
    np.testing.assert_allclose(result.window_starts, np.arange(10) * 0.96)
    expected = tagger.head.predict_clips([emb[s : s + 10] for s in range(10)])
    np.testing.assert_allclose(result.window_scores, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.scores, expected.max(axis=0), rtol=1e-5, atol=1e-6)
    assert result.frame_scores.shape == (19, 527)
    np.testing.assert_allclose(result.frame_starts, np.arange(19) * 0.96)
    assert [label.index for label in result.labels] == [label.index for label in result.top(10)]
    top = result.top(5)
    assert [label.score for label in top] == sorted((label.score for label in top), reverse=True)
    assert top[0].score == pytest.approx(float(result.scores.max()))
    assert top[0].mid.startswith("/m/") or top[0].mid.startswith("/t/")


def test_embeddings_match_vggish_and_waveforms_match_files(tagger: Tagger, shared_audio: Path) -> None:
    import vggish

    path = shared_audio / "speech_16k.wav"
    emb = tagger.embed(path)
    raw, starts = tagger.vggish.embed_file(path)
    np.testing.assert_array_equal(emb.raw, raw)
    np.testing.assert_array_equal(emb.embedding, tagger.vggish.postprocess(raw))
    samples, rate = vggish.read_audio(path)
    from_file = tagger.tag(path)
    from_waveform = tagger.tag(samples, sample_rate=rate)
    np.testing.assert_allclose(from_waveform.scores, from_file.scores, rtol=1e-5, atol=1e-6)
    assert from_waveform.source == "<waveform>"
    assert from_waveform.duration == pytest.approx(from_file.duration)
    frames, frame_starts = tagger.frame_scores(path)
    np.testing.assert_allclose(frames, from_file.frame_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frame_starts, starts)


def test_clips_under_one_patch_are_padded_with_a_warning(tagger: Tagger, tmp_path: Path, caplog) -> None:
    import soundfile as sf

    path = tmp_path / "half_second.wav"
    sf.write(path, 0.2 * np.sin(np.arange(8000) * 0.3), 16000, subtype="PCM_16")
    with caplog.at_level(logging.WARNING):
        result = tagger.tag(path)
    assert result.frame_scores.shape == (1, 527) and result.duration == pytest.approx(0.5)
    assert any(
        "zero-padded" in record.getMessage() and "half_second" in record.getMessage()
        for record in caplog.records
    )


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_cli_json_frames_plot_and_a_bad_file(
    synthetic_checkpoint: Path, tiny_head: Path, shared_audio: Path, tmp_path: Path, capsys
) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    plot = tmp_path / "plot.png"
    files = [str(shared_audio / LONG), str(bad), str(shared_audio / SHORT)]
    code = main(
        [
            "--vggish-checkpoint",
            str(synthetic_checkpoint),
            "tag",
            *files,
            "--head",
            str(tiny_head),
            "--format",
            "json",
            "--top-k",
            "3",
            "--frames",
            "--plot",
            str(plot),
        ]
    )
    out, err = capsys.readouterr()
    assert code == EXIT_SOME_FAILED
    error_lines = [line for line in err.splitlines() if "broken.wav" in line]
    assert len(error_lines) == 1 and "Traceback" not in err
    document = json.loads(out)
    assert [item["file"] for item in document] == [files[0], files[2]]
    long_item, short_item = document
    assert long_item["duration"] == pytest.approx(18.3, abs=0.05)
    assert len(long_item["labels"]) == 3
    assert set(long_item["labels"][0]) == {"index", "mid", "name", "score"}
    scores = [label["score"] for label in long_item["labels"]]
    assert scores == sorted(scores, reverse=True)
    assert len(long_item["frames"]) == 19 and long_item["frames"][1]["start"] == pytest.approx(0.96)
    assert len(long_item["frames"][0]["labels"]) == 3
    assert len(long_item["windows"]) == 10
    assert len(short_item["frames"]) == 1 and short_item["windows"] == []
    for name in ("plot-bus_chatter.png", "plot-dog_975ms.png"):
        assert _png_size(tmp_path / name) == (1000, 600)


def test_cli_text_and_csv(
    synthetic_checkpoint: Path, tiny_head: Path, shared_audio: Path, tmp_path: Path, capsys
) -> None:
    base = [
        "--vggish-checkpoint",
        str(synthetic_checkpoint),
        "tag",
        str(shared_audio / SHORT),
        "--head",
        str(tiny_head),
    ]
    plot = tmp_path / "one.png"
    assert main([*base, "--top-k", "4", "--plot", str(plot)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith(str(shared_audio / SHORT)) and len(text) == 5
    assert _png_size(plot) == (1000, 600)
    assert main([*base, "--format", "csv", "--top-k", "2", "--frames"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["scope"], r["rank"]) for r in rows] == [
        ("clip", "1"),
        ("clip", "2"),
        ("frame", "1"),
        ("frame", "2"),
    ]
    assert float(rows[0]["score"]) >= float(rows[1]["score"])
    assert rows[2]["start"] == "0.000"


def test_events_follow_the_calibrated_timeline(tagger: Tagger, shared_audio: Path) -> None:
    from classifier.events import detect_events

    result = tagger.tag(shared_audio / LONG)
    # The timeline's peak over the file equals the clip score (each window's peak patch is its clip score).
    np.testing.assert_allclose(result.frame_scores.max(axis=0), result.scores, rtol=1e-5)
    assert result.events, "the untrained head should cross 0.5 somewhere"
    assert result.events == sorted(result.events, key=lambda e: (e.start, e.index))
    assert all(0 <= e.start < e.end <= result.duration for e in result.events)
    expected = detect_events(result.frame_scores, result.frame_starts, tagger.event_rules, result.mids,
                             result.names, duration=result.duration)
    assert result.events == expected


def test_label_control_applies_to_labels_frames_windows_and_events(
    synthetic_checkpoint: Path, tiny_head: Path, shared_audio: Path, tmp_path: Path
) -> None:
    from classifier.labels import load_class_labels

    names = load_class_labels().names
    keep = tmp_path / "keep.txt"
    keep.write_text("Speech\n/m/04rlf\n# Music\nHuman voice\n", encoding="utf-8")
    with Tagger(synthetic_checkpoint, head=str(tiny_head), rollup=True, classes=[f"@{keep}", "Dog"],
                exclude=["Dog"], min_score=0.3) as tagger:
        result = tagger.tag(shared_audio / LONG)
    assert result.names == ["Speech", "Music", "Human voice"]
    assert result.indices == [names.index("Speech"), names.index("Music"), -1]
    assert result.frame_scores.shape == (19, 3) and result.window_scores.shape == (10, 3)
    with Tagger(synthetic_checkpoint, head=str(tiny_head)) as plain:
        full = plain.tag(shared_audio / LONG)
    speech = names.index("Speech")
    children = [names.index(n) for n in ("Male speech, man speaking", "Female speech, woman speaking")]
    assert result.scores[0] >= full.scores[speech]  # roll-up never lowers a score
    assert result.scores[0] >= full.scores[children].max()
    assert all(label.score >= 0.3 for label in result.top(None))
    assert all(e.name in result.names and e.score >= 0.3 for e in result.events)
    labels = {label.name: label.as_dict() for label in result.top(None)}
    if "Human voice" in labels:
        assert labels["Human voice"]["rolled_up"] and labels["Human voice"]["index"] == -1


def test_cli_events_csv_json_and_audacity(
    synthetic_checkpoint: Path, tiny_head: Path, shared_audio: Path, tmp_path: Path, capsys
) -> None:
    base = ["--vggish-checkpoint", str(synthetic_checkpoint), "tag", str(shared_audio / LONG),
            str(shared_audio / SHORT), "--head", str(tiny_head)]
    assert main([*base, "--format", "json", "--events"]) == 0
    document = json.loads(capsys.readouterr().out)
    fields, flags = {"index", "mid", "name", "start", "end", "score"}, {"abstract", "blacklisted"}
    assert document[0]["events"] and all(fields <= set(e) <= fields | flags for e in document[0]["events"])
    assert main([*base, "--format", "csv", "--events"]) == 0
    rows = [r for r in csv.DictReader(io.StringIO(capsys.readouterr().out)) if r["scope"] == "event"]
    long_rows = [r for r in rows if r["file"].endswith(LONG)]
    assert [int(r["rank"]) for r in long_rows] == list(range(1, len(document[0]["events"]) + 1))
    assert main([*base, "--format", "audacity"]) == 1  # several files need --output
    capsys.readouterr()
    out = tmp_path / "labels.txt"
    assert main([*base, "--format", "audacity", "--output", str(out)]) == 0
    for item in document:
        track = (tmp_path / f"labels-{Path(item['file']).stem}.txt").read_text(encoding="utf-8")
        parsed = [line.split("\t") for line in track.splitlines()]  # what Audacity's label import reads
        assert all(len(fields) == 3 for fields in parsed)
        assert [(round(float(a), 3), round(float(b), 3), name) for a, b, name in parsed] == [
            (e["start"], e["end"], e["name"]) for e in item["events"]]


def test_cli_engines_agree(
    synthetic_checkpoint: Path, tiny_head: Path, shared_audio: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """`tag --engine lite` gives the numpy engine's scores; an unknown engine is a usage error."""
    monkeypatch.setenv("AUDIOTAG_HOME", str(tmp_path))
    base = ["--vggish-checkpoint", str(synthetic_checkpoint), "tag", str(shared_audio / LONG), "--head",
            str(tiny_head), "--format", "json", "--top-k", "5", "--frames"]
    documents = {}
    for engine in ("numpy", "lite"):
        assert main([*base, "--engine", engine]) == 0
        documents[engine] = json.loads(capsys.readouterr().out)[0]
    for scope in ("labels", "windows", "frames"):
        want, got = documents["numpy"][scope], documents["lite"][scope]
        assert len(got) == len(want)
    want = {label["index"]: label["score"] for label in documents["numpy"]["labels"]}
    got = {label["index"]: label["score"] for label in documents["lite"]["labels"]}
    assert got.keys() == want.keys()
    assert all(abs(got[index] - want[index]) <= 1e-4 for index in want)  # scores are printed rounded
    assert list((tmp_path / "heads").glob("*.tflite"))
    with pytest.raises(SystemExit) as exited:
        main([*base, "--engine", "gpu"])
    assert exited.value.code == 2 and "invalid choice: 'gpu'" in capsys.readouterr().err
