"""Input discovery, atomic outputs and the errors report of `audiotag extract` (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errorlog import HEADER, ErrorLog
from pipeline.errors import PipelineError
from pipeline.inputs import collect_inputs
from pipeline.writers import ClipEmbeddings, HDF5Writer, NpzWriter
from safeio.atomic import atomic_output, temp_path_for


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_directories_are_searched_recursively_by_extension(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _touch(root / "dogs" / "bark1.wav")
    _touch(root / "dogs" / "deep" / "bark2.FLAC")
    _touch(root / "cat.mp3")
    _touch(root / "readme.md")
    _touch(root / ".hidden.wav")
    ids = [item.clip_id for item in collect_inputs([root])]
    assert ids == ["cat.mp3", "dogs/bark1.wav", "dogs/deep/bark2.FLAC"]


def test_single_files_and_list_files(tmp_path: Path) -> None:
    single = _touch(tmp_path / "a" / "one.wav")
    listed = _touch(tmp_path / "lists" / "sub" / "two.wav")
    outside = _touch(tmp_path / "elsewhere" / "three.ogg")
    listing = _touch(
        tmp_path / "lists" / "files.txt", f"# comment\n\nsub/two.wav\n{outside}\nsub/missing.wav\n"
    )
    items = collect_inputs([single, listing])
    assert [item.clip_id for item in items] == [
        "one.wav",
        "sub/two.wav",
        outside.resolve().as_posix().lstrip("/"),
        "sub/missing.wav",
    ]
    assert items[1].path.resolve() == listed.resolve()


def test_missing_argument_and_colliding_ids_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no such file"):
        collect_inputs([tmp_path / "nope"])
    first = _touch(tmp_path / "x" / "same.wav")
    second = _touch(tmp_path / "y" / "same.wav")
    with pytest.raises(PipelineError, match=r"same clip id 'same\.wav'"):
        collect_inputs([first, second])
    assert len(collect_inputs([first, first])) == 1


def test_atomic_output_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old"
    assert not temp_path_for(target).exists()
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_error_log_survives_a_line_cut_short(tmp_path: Path) -> None:
    log = ErrorLog(tmp_path)
    log.add(tmp_path / "a.wav", "a.wav", "corrupt\tdata\nhere")
    with open(log.path, "a") as f:
        f.write("/x/b.wav\tb.wav\thalf a li")  # a crash in the middle of a line
    again = ErrorLog(tmp_path)
    assert again.failed == {"a.wav": "corrupt data here"}
    assert again.path.read_text().startswith(HEADER)
    again.add("c.wav", "c.wav", "empty")
    assert set(ErrorLog(tmp_path).failed) == {"a.wav", "c.wav"}


def _clip(clip_id: str, n: int, seed: int) -> ClipEmbeddings:
    rng = np.random.default_rng(seed)
    return ClipEmbeddings(
        clip_id,
        rng.integers(0, 256, (n, 128), dtype=np.uint8),
        rng.standard_normal((n, 128)).astype(np.float32),
        np.arange(n) * 0.96,
        n * 0.96 + 0.1,
    )


def test_npz_writer_mirrors_the_tree_and_knows_what_is_finished(tmp_path: Path) -> None:
    writer = NpzWriter(tmp_path, ["dogs/a.wav", "b.wav"], raw=True)
    writer.add(_clip("dogs/a.wav", 3, 0))
    assert writer.finished_ids() == {"dogs/a.wav"}
    with np.load(tmp_path / "dogs" / "a.wav.npz") as data:
        assert sorted(data.files) == ["embedding", "raw", "timestamps"]
        assert data["embedding"].dtype == np.uint8 and data["embedding"].shape == (3, 128)
        np.testing.assert_allclose(data["timestamps"], [0, 0.96, 1.92])


def test_hdf5_writer_merges_parts_and_resumes_without_duplicates(tmp_path: Path) -> None:
    import h5py

    clips = [_clip(f"c{i}.wav", i + 1, i) for i in range(4)]
    writer = HDF5Writer(tmp_path, raw=True, hop_seconds=0.96, checkpoint_status="synthetic")
    writer.add(clips[0])
    writer.checkpoint()
    writer.add(clips[1])
    writer.close()  # interrupted run: parts durable, no final file yet
    assert not (tmp_path / "embeddings.h5").exists()
    resumed = HDF5Writer(tmp_path, raw=True, hop_seconds=0.96, checkpoint_status="synthetic")
    assert resumed.finished_ids() == {"c0.wav", "c1.wav"}
    resumed.add(clips[2])
    resumed.finalize()
    later = HDF5Writer(tmp_path, raw=True, hop_seconds=0.96, checkpoint_status="synthetic")
    later.add(clips[3])
    later.add(clips[0])  # a clip that is already in the final file is not duplicated
    later.finalize()
    with h5py.File(tmp_path / "embeddings.h5", "r") as f:
        assert f.attrs["format"] == "audiotag-embeddings-v1"
        ids = list(f["video_id"].asstr()[()])
        assert ids == ["c0.wav", "c1.wav", "c2.wav", "c3.wav"]
        offsets = f["clip_offsets"][()]
        for i, clip in enumerate(clips):
            rows = slice(offsets[i], offsets[i + 1])
            np.testing.assert_array_equal(f["embedding"][rows], clip.embedding)
            np.testing.assert_array_equal(f["raw"][rows], clip.raw)
            np.testing.assert_allclose(f["timestamps"][rows], clip.timestamps)
        np.testing.assert_allclose(f["duration"][()], [c.duration for c in clips])
    assert not list((tmp_path / ".audiotag" / "parts").glob("*.npz"))
