"""`audiotag beam-extract` / `beam-tag` on Beam's local multi-process runner and, as on a cluster, through
Beam's PortableRunner (its job service and an external worker pool, separate processes), against `extract`
and `tag`, with a SYNTHETIC checkpoint, real clips from ../shared/audio and generated ones."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from parquet_folder import read_dataset
from real_clips import REAL_CLIPS, copy_real_clips
from release_records import read_tfrecords

from pipeline.cli import EXIT_ERROR, EXIT_SOME_FAILED, main

pytest.importorskip("apache_beam")
pa_parquet = pytest.importorskip("pyarrow.parquet")

LONG_CLIP = "long/tone22k.wav"  # generated, 22.05 kHz, 11.5 s: 4 segments of 3 patches at --segment-seconds 3
BAD_CLIPS = {"bad/empty.wav", "bad/notes.wav", "bad/corrupt.flac"}


def _tone(path: Path, seconds: float, rate: int, freq: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    noise = 0.05 * np.random.default_rng(int(freq)).standard_normal(len(t))
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t) + noise, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def inputs(shared_audio: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_real_clips(shared_audio, tmp_path_factory.mktemp("beam_in"))
    _tone(root / LONG_CLIP, 11.5, 22050, 660.0)
    (root / "bad").mkdir()
    (root / "bad/empty.wav").write_bytes(b"")
    (root / "bad/notes.wav").write_text("this is not audio\n" * 20)
    good = (root / "dog.wav").read_bytes()
    (root / "bad/corrupt.flac").write_bytes(b"fLaC" + good[4:300])
    return root


def _run(args: list[str], checkpoint: Path) -> int:
    return main(["--vggish-checkpoint", str(checkpoint), *args])


@pytest.fixture(scope="module")
def extract_parquet(inputs: Path, synthetic_checkpoint: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`audiotag extract --format parquet` of the inputs."""
    out = tmp_path_factory.mktemp("extract") / "out"
    code = _run(["extract", str(inputs), "-o", str(out), "--format", "parquet", "--no-progress",
                 "--batch-size", "16", "--files-per-shard", "4"], synthetic_checkpoint)
    assert code == EXIT_SOME_FAILED
    return out


@pytest.fixture(scope="module")
def beam_tfrecords(inputs: Path, synthetic_checkpoint: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`audiotag beam-extract` (TFRecords) of the inputs on two local worker processes."""
    out = tmp_path_factory.mktemp("beam") / "out"
    code = _run(["beam-extract", str(inputs), "-o", str(out), "--batch-size", "16", "--num-shards", "2",
                 "--direct_num_workers=2"], synthetic_checkpoint)
    assert code == EXIT_SOME_FAILED
    return out


def _errors(files: list[Path]) -> dict[str, str]:
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert all(line == "path\tclip_id\treason" for line in lines[:: len(lines) // len(files) or 1][:1])
    return {line.split("\t")[1]: line.split("\t")[2] for line in lines if not line.startswith("path\t")}


def _assert_close(a: np.ndarray, b: np.ndarray, clip_id: str) -> int:
    """Postprocessed embeddings from differently composed CNN batches: at most ±1 level; returns how many
    values differ."""
    assert a.shape == b.shape, clip_id
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max(initial=0) <= 1, clip_id
    return int(np.count_nonzero(diff))


def _allowed_differences(values: int) -> int:
    """At most 0.01 % of the values may differ by one level. The CNN's float rounding depends on how a
    batch is composed, and Beam composes batches differently from run to run; on a few thousand values
    0.01 % is less than one value, so up to 2 are allowed (100 clips differed in 1 to 10 of 128,000
    values in bench_beam.py)."""
    return max(2, int(values * 1e-4))


pytestmark = [pytest.mark.slow, pytest.mark.shared]


def _check_against_extract(beam: dict[str, dict], out: Path, extract_parquet: Path) -> None:
    """beam-extract's clips ({clip id: {"embedding", "end"}}) and its dead letters in `out` against extract's
    Parquet folder (read whole, as a dataset): the same clip ids and patch counts, embeddings within one
    level on at most 0.01 % of the values, the same failed clip ids and reasons; no temporaries left."""
    ours = read_dataset(extract_parquet)
    assert set(beam) == set(ours) == {*REAL_CLIPS, LONG_CLIP}
    differing = values = 0
    for clip_id, clip in beam.items():
        assert len(clip["embedding"]) == len(ours[clip_id]["embedding"]) == len(ours[clip_id]["timestamps"])
        differing += _assert_close(clip["embedding"], ours[clip_id]["embedding"], clip_id)
        values += clip["embedding"].size
        assert clip["end"] == pytest.approx(ours[clip_id]["end"], abs=1e-5)
    assert len(beam[LONG_CLIP]["embedding"]) == 11 and len(beam["dog.wav"]["embedding"]) == 1
    assert differing <= _allowed_differences(values)
    beam_errors = _errors(sorted(out.glob("_errors-r001-*.tsv")))
    assert beam_errors == _errors([extract_parquet / "_errors.tsv"])
    assert set(beam_errors) == BAD_CLIPS
    assert "empty" in beam_errors["bad/empty.wav"]
    assert not list(out.glob("beam-temp-*"))


def test_beam_extract_equals_extract(beam_tfrecords: Path, extract_parquet: Path) -> None:
    shards = sorted(beam_tfrecords.glob("*.tfrecord"))
    assert [s.name for s in shards] == ["embeddings-r001-00000-of-00002.tfrecord",
                                        "embeddings-r001-00001-of-00002.tfrecord"]
    _check_against_extract(read_tfrecords(shards), beam_tfrecords, extract_parquet)


def test_parquet_of_segments_equals_the_tfrecords(
    inputs: Path, beam_tfrecords: Path, synthetic_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "parquet"
    code = _run(["beam-extract", str(inputs), "-o", str(out), "--format", "parquet", "--raw",
                 "--segment-seconds", "3", "--batch-size", "16", "--direct_num_workers=1"],
                synthetic_checkpoint)
    assert code == EXIT_SOME_FAILED
    counters = dict(item.split("=") for item in
                    capsys.readouterr().err.split("counters: ")[1].splitlines()[0].split(", "))
    # Every file of more than 3 patches was split (the 11-patch one into 4 segments).
    assert int(counters["segments"]) >= int(counters["files_planned"]) + 3
    import pyarrow as pa

    schema = pa_parquet.read_schema(sorted(out.glob("embeddings-r001-*.parquet"))[0])
    expected = {"video_id": pa.string(), "start_time_seconds": pa.float64(), "end_time_seconds": pa.float64(),
                "labels": pa.list_(pa.int64()), "embedding": pa.list_(pa.binary(128)),
                "timestamps": pa.list_(pa.float64()), "raw": pa.list_(pa.list_(pa.float32(), 128))}
    assert {name: schema.field(name).type for name in schema.names} == expected
    clips = read_dataset(out)  # the whole folder, errors files and lock beside the shards
    reference = read_tfrecords(sorted(beam_tfrecords.glob("*.tfrecord")))  # unsegmented
    assert set(clips) == set(reference)
    from vggish import Postprocessor

    post = Postprocessor()
    differing = values = 0
    for clip_id, clip in clips.items():
        differing += _assert_close(clip["embedding"], reference[clip_id]["embedding"], clip_id)
        values += clip["embedding"].size
        raw = np.asarray(clip["raw"], np.float32)
        np.testing.assert_array_equal(post.postprocess(raw), clip["embedding"])
        np.testing.assert_allclose(clip["timestamps"], np.arange(len(raw)) * 0.96)
        assert clip["start_time_seconds"] == 0.0 and clip["labels"] == []
    assert differing <= _allowed_differences(values)
    # The long generated file ran as 4 segments on their own and is joined back into the unsegmented result
    # (the same 11 patches; its log-mel equals the whole-file stream's: tests/test_vggish_input.py).
    assert len(clips[LONG_CLIP]["embedding"]) == 11


def test_skip_existing_processes_only_new_files(
    inputs: Path, beam_tfrecords: Path, synthetic_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    shutil.copytree(beam_tfrecords, out)
    extended = tmp_path / "in"
    shutil.copytree(inputs, extended)
    _tone(extended / "new/added.wav", 2.5, 16000, 330.0)
    args = ["beam-extract", str(extended), "-o", str(out), "--direct_num_workers=1"]
    assert _run(args, synthetic_checkpoint) == EXIT_ERROR  # a folder with outputs needs --skip-existing
    assert "--skip-existing" in capsys.readouterr().err
    code = _run([*args, "--skip-existing"], synthetic_checkpoint)
    assert code == EXIT_SOME_FAILED  # the earlier failures are still listed
    err = capsys.readouterr().err
    assert "files_planned=1," in err and "run r002: 1 files embedded, 0 failed" in err
    new = read_tfrecords(sorted(out.glob("embeddings-r002-*.tfrecord")))
    assert set(new) == {"new/added.wav"} and len(new["new/added.wav"]["embedding"]) == 2
    assert not list(out.glob("_errors-r002-*"))


@pytest.fixture(scope="module")
def tagged(inputs: Path, synthetic_checkpoint: Path) -> dict[str, tuple[np.ndarray, dict]]:
    """`tag` of every good input: {clip id: (its embeddings, what `tag --format json` prints for it)}."""
    from pipeline.formatting import to_json
    from pipeline.tagger import Tagger

    results = {}
    with Tagger(synthetic_checkpoint, vggish_engine="tf") as tagger:  # beam-extract's embeddings are TF's
        for clip_id in [*REAL_CLIPS, LONG_CLIP]:
            result = tagger.tag(inputs / clip_id)
            results[clip_id] = (result.embeddings.embedding, json.loads(to_json([result], top_k=527))[0])
    return results


def _check_tags(out: Path, features: Path, tagged: dict[str, tuple[np.ndarray, dict]]) -> None:
    """beam-tag's JSON Lines in `out`, over the TFRecords in `features`, against `tag`: scores within 1e-5
    for every clip whose embeddings are those `tag` computed."""
    lines = [json.loads(line) for f in sorted(out.glob("tags-r001-*.jsonl"))
             for line in f.read_text().splitlines()]
    beam = {item["file"]: item for item in lines}
    records = read_tfrecords(sorted(features.glob("*.tfrecord")))
    assert set(beam) == set(records) == set(tagged)
    compared = 0
    for clip_id, record in records.items():
        embedding, expected = tagged[clip_id]
        if not np.array_equal(embedding, record["embedding"]):
            continue  # batch-composition rounding changed a level: not the same embeddings
        assert set(expected) == set(beam[clip_id])
        ours = {label["index"]: label["score"] for label in beam[clip_id]["labels"]}
        theirs = {label["index"]: label["score"] for label in expected["labels"]}
        assert set(ours) == set(theirs) == set(range(527))
        assert max(abs(ours[i] - theirs[i]) for i in ours) <= 1e-5
        top = [lab["mid"] for lab in expected["labels"][:3]]
        assert [lab["mid"] for lab in beam[clip_id]["labels"][:3]] == top
        compared += 1
    assert compared >= len(records) - 1  # the long clip is scored over two windows


def test_beam_tag_equals_tag(beam_tfrecords: Path, tagged: dict, tmp_path: Path) -> None:
    out = tmp_path / "tags"
    code = main(["beam-tag", str(beam_tfrecords), "-o", str(out), "--top-k", "527", "--direct_num_workers=1"])
    assert code == 0
    _check_tags(out, beam_tfrecords, tagged)


# --- through Beam's PortableRunner, as on a cluster ---------------------------------------------------------
@pytest.fixture(scope="module")
def portable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Beam's job service and an external SDK worker pool, separate processes on free local ports, stopped
    (their whole process groups) however the tests end; yields the pipeline options that use them."""
    from pipeline.beam.portable import local_portable_services

    with local_portable_services(tmp_path_factory.mktemp("portable_logs")) as services:
        yield services.pipeline_args()


@pytest.fixture(scope="module")
def portable_tfrecords(inputs: Path, synthetic_checkpoint: Path, portable: list[str],
                       tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`audiotag beam-extract` (TFRecords) of the inputs through the PortableRunner."""
    out = tmp_path_factory.mktemp("portable") / "out"
    code = _run(["beam-extract", str(inputs), "-o", str(out), "--batch-size", "16", *portable],
                synthetic_checkpoint)
    assert code == EXIT_SOME_FAILED
    return out


def test_portable_beam_extract_equals_extract(portable_tfrecords: Path, extract_parquet: Path) -> None:
    records = read_tfrecords(sorted(portable_tfrecords.glob("embeddings-r001-*.tfrecord")))
    _check_against_extract(records, portable_tfrecords, extract_parquet)


def test_portable_beam_extract_parquet_equals_extract(inputs: Path, synthetic_checkpoint: Path,
                                                      portable: list[str], extract_parquet: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "parquet"
    code = _run(["beam-extract", str(inputs), "-o", str(out), "--format", "parquet", "--batch-size", "16",
                 *portable], synthetic_checkpoint)
    assert code == EXIT_SOME_FAILED
    _check_against_extract(read_dataset(out), out, extract_parquet)


def test_portable_beam_tag_equals_tag(portable_tfrecords: Path, portable: list[str], tagged: dict,
                                      tmp_path: Path) -> None:
    out = tmp_path / "tags"
    assert main(["beam-tag", str(portable_tfrecords), "-o", str(out), "--top-k", "527", *portable]) == 0
    _check_tags(out, portable_tfrecords, tagged)
