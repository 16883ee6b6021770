"""Full and read-only file systems (a small tmpfs), too many open files: one line naming the path, never
"internal error" or a crash, finished work kept, and the rerun completes once the problem is gone."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.cli import EXIT_ERROR, EXIT_OK
from pipeline.writers import ClipEmbeddings, HDF5Writer
from safeio.oserrors import describe_os_error, is_environment_error

from .helpers import CHILD_ENV, fill, one_line_error, remount_read_only, run_cli, write_tones

pytestmark = pytest.mark.faults


def test_environment_errors_are_described_with_their_path() -> None:
    cases = {
        errno.ENOSPC: "no space left", errno.EACCES: "permission denied",
        errno.EROFS: "read-only file system", errno.EMFILE: "ulimit -n", errno.ELOOP: "symbolic link loop",
    }
    for number, words in cases.items():
        exc = OSError(number, "system words", "/data/out/x.npz")
        assert is_environment_error(exc)
        assert describe_os_error(exc).startswith("/data/out/x.npz: ") and words in describe_os_error(exc)
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device"), "/d/f").startswith("/d/f: ")
    assert not is_environment_error(OSError(errno.EINVAL, "invalid"))


def _writer_with_parts(out: Path, clips: int = 20) -> HDF5Writer:
    writer = HDF5Writer(out, raw=True, hop_seconds=0.96, checkpoint_status="synthetic")
    rng = np.random.default_rng(0)
    for i in range(clips):
        writer.add(ClipEmbeddings(f"c{i}", rng.integers(0, 255, (100, 128), dtype=np.uint8),
                                  rng.random((100, 128), dtype=np.float32), np.arange(100) * 0.96, 96.0))
        if i % 10 == 9:
            writer.checkpoint()
    return writer


def test_hdf5_merge_on_a_full_disk_is_an_error_not_a_crash(small_disk: Path, monkeypatch) -> None:
    """HDF5 can segfault (exit 139) when the disk fills up during a merge: the merge runs isolated."""
    import pipeline.writers

    out = small_disk / "out"
    writer = _writer_with_parts(out)
    parts = sorted((out / ".audiotag" / "parts").iterdir())
    filler = fill(small_disk, 100_000)
    with pytest.raises(OSError) as caught:  # the free-space check, before writing anything
        writer.finalize()
    assert caught.value.errno == errno.ENOSPC and "needs about" in describe_os_error(caught.value)
    # Without the check (space taken by someone else in between), HDF5 itself fails, in a child process.
    real_check, calls = pipeline.writers.check_free_space, []
    monkeypatch.setattr(pipeline.writers, "check_free_space",
                        lambda *args: real_check(*args) if calls.append(args) or len(calls) > 1 else None)
    with pytest.raises(OSError) as caught:
        writer.finalize()
    assert caught.value.errno == errno.ENOSPC, caught.value  # this process is alive and says why
    assert sorted((out / ".audiotag" / "parts").iterdir()) == parts  # partial state intact
    assert not list(out.glob(".*.part")) and not (out / "embeddings.h5").exists()
    monkeypatch.undo()
    filler.unlink()
    writer.finalize()
    with h5py.File(out / "embeddings.h5", "r") as f:
        assert len(f["video_id"]) == 20 and f["raw"].shape == (2000, 128)
    assert not list((out / ".audiotag" / "parts").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["npz", "tfrecord", "parquet", "hdf5"])
def test_full_disk_during_extract_is_one_line_and_the_rerun_completes(
    fmt: str, small_disk: Path, synthetic_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="Parquet output needs pyarrow (the beam extra)")
    clip_ids = write_tones(tmp_path / "in", 8, seconds=10.0)
    out = small_disk / "out"
    # npz / tfrecord: room for a few outputs only; hdf5: room for the parts, not for the merge.
    filler = fill(small_disk, 40_000 if fmt != "hdf5" else 400_000)
    args = ["extract", str(tmp_path / "in"), "-o", str(out), "--format", fmt, "--files-per-shard", "1",
            "--batch-size", "10", "--workers", "1", "--no-progress"]
    assert run_cli(synthetic_checkpoint, *args) == EXIT_ERROR
    line = one_line_error(capsys.readouterr().err)
    assert str(out) in line and "no space left on the device" in line and "rerun" in line
    filler.unlink()
    assert run_cli(synthetic_checkpoint, *args) == EXIT_OK
    err = capsys.readouterr().err
    done = int(err.split(" files embedded")[0].rsplit(" ", 1)[-1])
    assert f"{8 - done} already done" in err  # what the first run finished was kept
    from classifier.readers import load_clipset
    from pipeline.training import features_source

    if fmt == "parquet":
        from pipeline.parquet import read_clips

        found = [clip_id for shard in out.glob("*.parquet") for clip_id in read_clips(shard)]
    else:
        labels = tmp_path / "labels.csv"
        labels.write_text("id,labels\n" + "".join(f"{clip_id},x\n" for clip_id in clip_ids))
        found = load_clipset(features_source(out), labels_csv=labels, class_names=["x"]).ids
    assert sorted(found) == clip_ids  # each exactly once
    assert not list(out.rglob(".*.part"))


@pytest.mark.slow
def test_read_only_output_folder_is_one_line(small_disk: Path, synthetic_checkpoint: Path, tmp_path: Path,
                                             capsys) -> None:
    write_tones(tmp_path / "in", 1)
    remount_read_only(small_disk)
    code = run_cli(synthetic_checkpoint, "extract", str(tmp_path / "in"), "-o", str(small_disk / "out"))
    line = one_line_error(capsys.readouterr().err)
    assert code == EXIT_ERROR and str(small_disk / "out") in line and "read-only file system" in line


_TOO_MANY_FILES = """
import os, sys
import classifier.labels, classifier.pretrained, classifier.readers, classifier.train, pipeline.errors
import pipeline.beam.cli, pipeline.labelled_audio, pipeline.train_audio, pipeline.training, pipeline.writers
import safeio.lock, vggish, vggish.download
from pipeline.cli import main
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
sys.exit(main(sys.argv[1:]))
"""


def test_too_many_open_files_is_one_line(tmp_path: Path) -> None:
    args = ["train", str(tmp_path), "-o", str(tmp_path / "run"), "--labels", str(tmp_path / "labels.csv")]
    done = subprocess.run([sys.executable, "-c", _TOO_MANY_FILES, *args], env=CHILD_ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == EXIT_ERROR
    line = one_line_error(done.stderr)
    # train reads DATA (to tell class folders, a CSV and features apart) before it locks RUN: either is named
    assert str(tmp_path) in line and "too many open files" in line and "ulimit -n" in line
