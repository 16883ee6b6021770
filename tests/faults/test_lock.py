"""One run per output folder: refused at once (folder and PID named), --wait, stale locks of killed runs,
temporaries of live runs never deleted, and two real extract runs started on one folder."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.cli import EXIT_ERROR, EXIT_OK, main
from safeio.atomic import remove_stale_temporaries, temp_path_for
from safeio.lock import LOCK_NAME, FolderBusyError, FolderLock

from .helpers import CHILD_ENV, cli_process, one_line_error, run_cli, write_tones

pytestmark = pytest.mark.faults

_HOLDER = """
import sys, time
from safeio.lock import FolderLock
with FolderLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    """A process holding folder's lock for `seconds` (returned once it holds it)."""
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), str(seconds)], env=CHILD_ENV,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_run_is_refused_at_once_naming_the_folder_and_the_holder(tmp_path: Path) -> None:
    holder = _holder(tmp_path / "out", 30)
    try:
        started = time.monotonic()
        with pytest.raises(FolderBusyError) as caught, FolderLock(tmp_path / "out"):
            pass
        assert time.monotonic() - started < 1.0
        assert str(tmp_path / "out") in str(caught.value) and f"PID {holder.pid}" in str(caught.value)
        assert "--wait" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()


def test_wait_takes_the_lock_when_the_holder_finishes(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1.0)
    started = time.monotonic()
    with FolderLock(tmp_path, wait=True):
        assert (tmp_path / LOCK_NAME).read_text().split() == [str(os.getpid())]
    assert time.monotonic() - started >= 0.5  # it waited for the holder to finish
    holder.wait()


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_NAME).read_text().split() == [str(holder.pid)]  # the stale PID is still there
    with FolderLock(tmp_path):  # but the kernel released the lock with the process
        assert (tmp_path / LOCK_NAME).read_text().split() == [str(os.getpid())]


def test_nested_locks_in_one_process_and_release(tmp_path: Path) -> None:
    with FolderLock(tmp_path), FolderLock(tmp_path / "."):
        pass
    holder = _holder(tmp_path, 0.0)  # released: another process gets it at once
    holder.wait()


def test_cleanup_never_deletes_a_live_runs_temporaries(tmp_path: Path) -> None:
    holder = _holder(tmp_path / "other", 30)
    try:
        live = tmp_path / f".part-000001.npz.{holder.pid}.part"
        finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True)
        dead_pid = finished.stdout.strip()
        dead = tmp_path / f".part-000001.npz.{dead_pid}.part"
        old_style = tmp_path / ".embeddings.h5.part"
        mine = temp_path_for(tmp_path / "x.npz")
        for path in (live, dead, old_style, mine):
            path.write_bytes(b"partial")
        assert remove_stale_temporaries(tmp_path) == 2
        assert live.exists() and mine.exists() and not dead.exists() and not old_style.exists()
    finally:
        holder.kill()
        holder.wait()


def test_extract_beam_extract_and_train_refuse_a_busy_folder_before_loading_anything(
    synthetic_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    write_tones(tmp_path / "in", 1)
    holder = _holder(tmp_path / "out", 60)
    try:
        started = time.monotonic()
        code = run_cli(synthetic_checkpoint, "extract", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                       "--format", "hdf5", "--no-progress")
        line = one_line_error(capsys.readouterr().err)
        assert code == EXIT_ERROR and f"PID {holder.pid}" in line and str(tmp_path / "out") in line
        (tmp_path / "feats").mkdir()
        (tmp_path / "feats" / "embeddings.h5").write_bytes(b"")  # features by name: read only after the lock
        code = run_cli(synthetic_checkpoint, "train", str(tmp_path / "feats"), "-o", str(tmp_path / "out"),
                       "--labels", str(tmp_path / "labels.csv"))
        line = one_line_error(capsys.readouterr().err)
        assert code == EXIT_ERROR and f"PID {holder.pid}" in line
        if importlib.util.find_spec("apache_beam") is not None:  # beam-extract needs the `beam` extra
            code = run_cli(synthetic_checkpoint, "beam-extract", str(tmp_path / "in"), "-o",
                           str(tmp_path / "out"))
            line = one_line_error(capsys.readouterr().err)
            assert code == EXIT_ERROR and f"PID {holder.pid}" in line and str(tmp_path / "out") in line
        assert time.monotonic() - started < 10  # no model was loaded
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_concurrent_extract_runs_on_one_folder_lose_nothing(
    synthetic_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """Two hdf5 runs into one folder: the first holds the folder, a second one without --wait is refused
    naming it, one with --wait finds the work done (no run exits 0 with clips missing)."""
    clip_ids = write_tones(tmp_path / "in", 6)
    out = tmp_path / "out"
    args = ["--vggish-checkpoint", str(synthetic_checkpoint), "extract", str(tmp_path / "in"), "-o", str(out),
            "--format", "hdf5", "--batch-size", "2", "--workers", "1", "--no-progress"]
    first = cli_process(*args)
    deadline = time.monotonic() + 120
    while not (out / LOCK_NAME).is_file() or not (out / LOCK_NAME).read_text().strip():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    refused = cli_process(*args)
    _, refused_err = refused.communicate(timeout=120)
    assert refused.returncode == EXIT_ERROR and f"PID {first.pid}" in one_line_error(refused_err)
    assert first.poll() is None  # refused while the first run was still going
    assert main([*args, "--wait"]) == EXIT_OK  # in this process: waits for the first run, then finds it done
    assert "0 files embedded" in capsys.readouterr().err
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == EXIT_OK, first_err
    assert "6 files embedded" in first_err
    with h5py.File(out / "embeddings.h5", "r") as f:
        assert sorted(f["video_id"].asstr()[()]) == clip_ids
        assert np.diff(f["clip_offsets"][()]).tolist() == [1] * 6
    assert not list(out.rglob("*.part"))
