"""The HDF5 writer's merge of a previous output with new clips, read back in chunks; Parquet shards; the
errors report's name (no model needed)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pipeline import writers
from pipeline.writers import ClipEmbeddings, HDF5Writer


def _clip(clip_id: str, patches: int, seed: int) -> ClipEmbeddings:
    rng = np.random.default_rng(seed)
    return ClipEmbeddings(
        clip_id=clip_id,
        embedding=rng.integers(0, 256, (patches, 128), dtype=np.uint8),
        raw=rng.standard_normal((patches, 128)).astype(np.float32),
        timestamps=np.arange(patches) * 0.96,
        duration=patches * 0.96,
    )


def _write(out: Path, clips: list[ClipEmbeddings]) -> None:
    writer = HDF5Writer(out, raw=True, hop_seconds=0.96, checkpoint_status="synthetic")
    for clip in clips:
        writer.add(clip)
        writer.checkpoint()
    writer.finalize()
    writer.close()


def test_second_run_merges_the_previous_file_chunk_by_chunk(tmp_path: Path, monkeypatch) -> None:
    first = [_clip(f"a{i}", patches=i + 1, seed=i) for i in range(7)]
    later = [_clip(f"b{i}", patches=3, seed=100 + i) for i in range(3)]
    _write(tmp_path, first)
    chunk_sizes = []
    original = writers._read_source

    def small_chunks(path: Path, raw: bool, clips_per_chunk: int = 4096):
        for chunk in original(path, raw, clips_per_chunk=3):
            chunk_sizes.append(len(chunk["lengths"]))
            yield chunk

    monkeypatch.setattr(writers, "_read_source", small_chunks)
    # The merge normally runs in a child process (safeio.isolated); here in this one, to watch its reads.
    monkeypatch.setattr(writers, "run_isolated", lambda context, target, args, **kwargs: target(*args))
    _write(tmp_path, [*later, first[2]])  # a repeated clip id is kept once
    assert chunk_sizes[:3] == [3, 3, 1]  # the previous file: 7 clips in chunks of 3
    with h5py.File(tmp_path / "embeddings.h5", "r") as f:
        ids = list(f["video_id"].asstr()[()])
        offsets = f["clip_offsets"][()]
        assert ids == [c.clip_id for c in first + later]
        for i, clip in enumerate(first + later):
            rows = slice(offsets[i], offsets[i + 1])
            np.testing.assert_array_equal(f["embedding"][rows], clip.embedding)
            np.testing.assert_array_equal(f["raw"][rows], clip.raw)
            np.testing.assert_array_equal(f["timestamps"][rows], clip.timestamps)
            assert f["duration"][i] == clip.duration


def test_parquet_shards_are_written_when_complete_and_read_back_with_pyarrow(tmp_path: Path) -> None:
    pq = __import__("pytest").importorskip("pyarrow.parquet")
    clip_ids = ["a.wav", "b.wav", "c/d.wav"]
    clips = {clip_id: _clip(clip_id, patches, seed) for seed, (clip_id, patches)
             in enumerate(zip(clip_ids, [3, 1, 12], strict=True))}
    writer = writers.open_writer("parquet", tmp_path, clip_ids, raw=True, hop_seconds=0.96,
                                 checkpoint_status="synthetic", files_per_shard=2, labels={"b.wav": [74, 0]})
    writer.add(clips["b.wav"])
    assert not list(tmp_path.glob("*.parquet"))  # shard 0 waits for a.wav
    writer.skip("c/d.wav")  # failed: shard 1 is complete (empty)
    writer.add(clips["a.wav"])
    names = sorted(p.name for p in tmp_path.glob("*.parquet"))
    assert names == ["embeddings-00000-of-00002.parquet", "embeddings-00001-of-00002.parquet"]
    rows = {row["video_id"]: row for row in pq.read_table(tmp_path / names[0]).to_pylist()}
    assert list(rows) == ["a.wav", "b.wav"] and pq.read_table(tmp_path / names[1]).num_rows == 0
    for clip_id, row in rows.items():
        clip = clips[clip_id]
        embedding = np.frombuffer(b"".join(row["embedding"]), np.uint8).reshape(-1, 128)
        np.testing.assert_array_equal(embedding, clip.embedding)
        np.testing.assert_array_equal(np.asarray(row["raw"], np.float32), clip.raw)
        np.testing.assert_allclose(row["timestamps"], clip.timestamps)
        assert (row["start_time_seconds"], row["end_time_seconds"]) == (0.0, clip.duration)
    assert rows["b.wav"]["labels"] == [74, 0] and rows["a.wav"]["labels"] == []
    # A rerun over the same folder finds both shards finished.
    again = writers.open_writer("parquet", tmp_path, clip_ids, raw=True, hop_seconds=0.96,
                                checkpoint_status="synthetic", files_per_shard=2)
    assert again.finished_ids() == set(clip_ids)
    assert not list(tmp_path.glob(".*.part"))


def test_a_parquet_folder_has_its_errors_report_hidden_and_an_old_one_renamed(tmp_path: Path) -> None:
    from pipeline.errorlog import ErrorLog

    (tmp_path / "errors.tsv").write_text("path\tclip_id\treason\nin/a.wav\ta.wav\tempty file\n")
    log = ErrorLog(tmp_path, "parquet")  # a folder written when the report was still errors.tsv
    assert log.path == tmp_path / "_errors.tsv" and log.failed == {"a.wav": "empty file"}
    assert not (tmp_path / "errors.tsv").exists()
    log.add("in/b.wav", "b.wav", "not audio")
    assert ErrorLog(tmp_path, "parquet").failed == {"a.wav": "empty file", "b.wav": "not audio"}
    assert ErrorLog(tmp_path / "h5", "hdf5").path.name == "errors.tsv"
