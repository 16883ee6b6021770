"""`audiotag extract` end to end on a SYNTHETIC checkpoint and real clips: formats, resume, bad files."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from real_clips import REAL_CLIPS, copy_real_clips
from release_records import read_tfrecords

from pipeline.cli import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, main
from vggish.audio_io import DEFAULT_BLOCK_FRAMES

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def clip_tree(shared_audio: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tree of real recordings of tests/real_clips.py."""
    return copy_real_clips(shared_audio, tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def reference(clip_tree: Path, synthetic_checkpoint: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """VGGish.embed_file + postprocess of each clip, file by file: (raw float32 [N,128], uint8 [N,128])."""
    import vggish

    with vggish.VGGish(synthetic_checkpoint) as model:
        out = {}
        for clip_id in REAL_CLIPS:
            raw, _ = model.embed_file(clip_tree / clip_id)
            out[clip_id] = (raw, model.postprocess(raw))
    return out


def _extract(args: list[str], checkpoint: Path) -> int:
    return main(["--vggish-checkpoint", str(checkpoint), "extract", *args, "--no-progress"])


def _check(clip_id: str, embedding: np.ndarray, reference: dict, raw: np.ndarray | None = None) -> None:
    ref_raw, ref_emb = reference[clip_id]
    assert embedding.dtype == np.uint8 and embedding.shape == ref_emb.shape, clip_id
    # Batches span file boundaries, so float rounding may differ from a file-by-file run in the last bits.
    assert np.abs(embedding.astype(int) - ref_emb.astype(int)).max() <= 1
    assert np.mean(embedding == ref_emb) > 0.99
    if raw is not None:
        np.testing.assert_allclose(raw, ref_raw, rtol=1e-4, atol=1e-4)


@pytest.mark.shared
def test_tfrecord_shards_read_back_with_plain_tf_data(
    clip_tree: Path, synthetic_checkpoint: Path, reference: dict, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text('id,labels\ndog.wav,"Dog,Bark"\nspeech/16k.wav,/m/09x0r\n')
    out = tmp_path / "out"
    args = [
        str(clip_tree),
        "-o",
        str(out),
        "--files-per-shard",
        "3",
        "--labels",
        str(labels),
        "--batch-size",
        "8",
    ]
    assert _extract(args, synthetic_checkpoint) == EXIT_OK
    shards = sorted(out.glob("*.tfrecord"))
    assert [s.name for s in shards] == [
        "embeddings-00000-of-00002.tfrecord",
        "embeddings-00001-of-00002.tfrecord",
    ]
    clips = read_tfrecords(shards)
    assert set(clips) == set(REAL_CLIPS)
    for clip_id, clip in clips.items():
        _check(clip_id, clip["embedding"], reference)
        assert clip["start"] == 0.0
        assert clip["end"] == pytest.approx(sf.info(str(clip_tree / clip_id)).duration, abs=1e-3)
    assert clips["dog.wav"]["labels"] == [74, 75]  # Dog, Bark in class_labels_indices.csv
    assert clips["speech/16k.wav"]["labels"] == [0]
    assert clips["baby.mp3"]["labels"] == []
    # A rerun finds everything finished and leaves the shards alone.
    before = {s: s.stat().st_mtime_ns for s in shards}
    assert _extract(args, synthetic_checkpoint) == EXIT_OK
    assert {s: s.stat().st_mtime_ns for s in shards} == before
    # pack-features turns the shards into Kong's HDF5 layout with the labels carried over.
    import h5py

    assert main(["pack-features", str(out), str(tmp_path / "packed.h5")]) == EXIT_OK
    with h5py.File(tmp_path / "packed.h5", "r") as f:
        ids = [v.decode() if isinstance(v, bytes) else str(v) for v in f["video_id_list"][()]]
        dog = ids.index("dog.wav")
        assert f["x"].shape == (4, 10, 128) and f["y"].shape == (4, 527)
        assert np.flatnonzero(f["y"][dog]).tolist() == [74, 75]
        np.testing.assert_array_equal(f["x"][dog][:1], clips["dog.wav"]["embedding"])


@pytest.mark.shared
def test_hdf5_and_npz_outputs(
    clip_tree: Path, synthetic_checkpoint: Path, reference: dict, tmp_path: Path
) -> None:
    import h5py

    out = tmp_path / "h5"
    assert (
        _extract([str(clip_tree), "-o", str(out), "--format", "hdf5", "--raw"], synthetic_checkpoint)
        == EXIT_OK
    )
    with h5py.File(out / "embeddings.h5", "r") as f:
        assert f.attrs["format"] == "audiotag-embeddings-v1"
        assert f.attrs["checkpoint_status"] == "synthetic"
        offsets = f["clip_offsets"][()]
        ids = list(f["video_id"].asstr()[()])
        assert sorted(ids) == sorted(REAL_CLIPS)
        for i, clip_id in enumerate(ids):
            rows = slice(offsets[i], offsets[i + 1])
            _check(clip_id, f["embedding"][rows], reference, f["raw"][rows])
            np.testing.assert_allclose(f["timestamps"][rows], np.arange(offsets[i + 1] - offsets[i]) * 0.96)
    assert not list((out / ".audiotag" / "parts").glob("*"))

    out = tmp_path / "npz"
    args = [str(clip_tree), "-o", str(out), "--format", "npz", "--raw", "--workers", "2", "--batch-size", "4"]
    assert _extract(args, synthetic_checkpoint) == EXIT_OK
    for clip_id in REAL_CLIPS:
        with np.load(out / f"{clip_id}.npz") as data:
            _check(clip_id, data["embedding"], reference, data["raw"])
            assert data["timestamps"].dtype == np.float64
    with np.load(out / "dog.wav.npz") as data:  # 0.97 s: padded to exactly one patch
        assert data["embedding"].shape == (1, 128)


def _write_tone(path: Path, seconds: float, rate: int = 16000, freq: float = 440.0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), rate, subtype="PCM_16")
    return path


def test_bad_files_go_to_the_errors_report(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    _write_tone(root / "good.wav", 2.0)
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("this is not audio\n" * 20)
    good = (root / "good.wav").read_bytes()
    (root / "corrupt.flac").write_bytes(b"fLaC" + good[4:200])
    listing = tmp_path / "more.txt"
    listing.write_text("in/good.wav\nin/missing.wav\n")
    out = tmp_path / "out"
    args = [str(root), str(tmp_path / "more.txt"), "-o", str(out), "--format", "npz"]
    # good.wav is listed twice with different ids ("good.wav" and "in/good.wav"): both are embedded.
    assert _extract(args, synthetic_checkpoint) == EXIT_SOME_FAILED
    errors = (out / "errors.tsv").read_text().splitlines()
    assert errors[0] == "path\tclip_id\treason"
    failed = {line.split("\t")[1]: line.split("\t")[2] for line in errors[1:]}
    assert set(failed) == {"empty.wav", "text.wav", "corrupt.flac", "in/missing.wav"}
    for clip_id, reason in failed.items():
        assert clip_id.split("/")[-1] in reason
    assert "empty" in failed["empty.wav"]
    assert "not found" in failed["in/missing.wav"]
    for clip_id in ("good.wav", "in/good.wav"):
        with np.load(out / f"{clip_id}.npz") as data:
            assert data["embedding"].shape == (2, 128)
    # The failures are final for this folder: a rerun does not retry them and still reports them.
    assert _extract(args, synthetic_checkpoint) == EXIT_SOME_FAILED
    assert len((out / "errors.tsv").read_text().splitlines()) == len(errors)


def test_nonexistent_input_is_a_one_line_error(synthetic_checkpoint: Path, tmp_path: Path, capsys) -> None:
    code = _extract([str(tmp_path / "nope"), "-o", str(tmp_path / "out")], synthetic_checkpoint)
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert err.strip().count("\n") == 0 and "nope: no such file or directory" in err


def _session_members(session: int) -> list[int]:
    """Live processes of a session (Linux /proc; field 6 of /proc/PID/stat), zombies excluded."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("fmt", ["tfrecord", "hdf5"])
def test_resume_after_sigkill(fmt: str, synthetic_checkpoint: Path, tmp_path: Path) -> None:
    """Kill a running extract with SIGKILL once outputs exist; the rerun completes every file exactly once."""
    root = tmp_path / "in"
    root.mkdir()
    for i in range(8):
        _write_tone(root / f"tone{i}.wav", 6.0, freq=200.0 + 150 * i)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "--vggish-checkpoint",
        str(synthetic_checkpoint),
        "extract",
        str(root),
        "-o",
        str(out),
        "--format",
        fmt,
        "--files-per-shard",
        "1",
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    finished = (
        (lambda: list(out.glob("*.tfrecord")))
        if fmt == "tfrecord"
        else (lambda: list((out / ".audiotag" / "parts").glob("part-*.npz")))
    )
    deadline = time.monotonic() + 120
    while len(finished()) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, f"extract ended before it could be killed: {process.stderr.read()}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Its worker processes, forkserver and resource tracker notice and exit by themselves.
    deadline = time.monotonic() + 30
    while _session_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _session_members(process.pid)
    if fmt == "tfrecord":
        done_before = len(finished())
    else:
        done_before = sum(len(np.load(part)["video_id"]) for part in finished())
    assert 2 <= done_before < 8
    if fmt == "hdf5":
        assert not (out / "embeddings.h5").exists()
    rerun = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{8 - done_before} files embedded" in rerun.stderr  # only what was left
    expected = {f"tone{i}.wav" for i in range(8)}
    if fmt == "tfrecord":
        shards = sorted(out.glob("*.tfrecord"))
        assert len(shards) == 8 and all(s.name.endswith("-of-00008.tfrecord") for s in shards)
        clips = read_tfrecords(shards)  # raises if a clip were written twice
        assert set(clips) == expected
        lengths = {len(c["embedding"]) for c in clips.values()}
    else:
        import h5py

        with h5py.File(out / "embeddings.h5", "r") as f:
            ids = list(f["video_id"].asstr()[()])
            assert sorted(ids) == sorted(expected) and len(ids) == 8
            lengths = set(np.diff(f["clip_offsets"][()]).tolist())
    assert lengths == {6}
    assert not list(out.rglob(".*.part"))


def test_ctrl_c_keeps_finished_clips_and_the_rerun_completes(
    synthetic_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Ctrl-C arriving while the third clip is handed to the writer: exit 130, the first two are durable."""
    import h5py

    from pipeline.cli import EXIT_INTERRUPTED
    from pipeline.writers import HDF5Writer

    root = tmp_path / "in"
    root.mkdir()
    for i in range(6):
        _write_tone(root / f"t{i}.wav", 1.5, freq=300.0 + 100 * i)
    out = tmp_path / "out"
    args = [str(root), "-o", str(out), "--format", "hdf5", "--workers", "1"]
    original_add = HDF5Writer.add
    calls = []

    def interrupted_add(self: HDF5Writer, clip) -> None:
        calls.append(clip.clip_id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        original_add(self, clip)

    monkeypatch.setattr(HDF5Writer, "add", interrupted_add)
    assert _extract(args, synthetic_checkpoint) == EXIT_INTERRUPTED
    assert "rerun the same command" in capsys.readouterr().err
    assert not (out / "embeddings.h5").exists()
    kept = HDF5Writer(out, raw=False, hop_seconds=0.96, checkpoint_status="synthetic").finished_ids()
    assert kept == set(calls[:2])
    monkeypatch.setattr(HDF5Writer, "add", original_add)
    assert _extract(args, synthetic_checkpoint) == EXIT_OK
    assert f"{6 - len(kept)} files embedded" in capsys.readouterr().err
    with h5py.File(out / "embeddings.h5", "r") as f:
        assert sorted(f["video_id"].asstr()[()]) == [f"t{i}.wav" for i in range(6)]
        assert np.diff(f["clip_offsets"][()]).tolist() == [1] * 6


def test_patches_waiting_for_the_cnn_stay_bounded(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    """Front end much faster than the CNN: the bounded worker queue, not this process's memory, absorbs it."""
    import vggish
    from pipeline import extract as extract_module

    root = tmp_path / "in"
    root.mkdir()
    for i in range(6):
        _write_tone(root / f"t{i}.wav", 30.0, freq=300.0 + 50 * i)

    class SlowModel:
        def __init__(self, model: vggish.VGGish):
            self.model = model

        def embed(self, examples: np.ndarray, batch_size: int) -> np.ndarray:
            time.sleep(0.05)
            return self.model.embed(examples, batch_size)

        def postprocess(self, raw: np.ndarray) -> np.ndarray:
            return self.model.postprocess(raw)

    waiting = []
    original_handle = extract_module._Extraction._handle

    def watched_handle(self, message: tuple) -> None:
        original_handle(self, message)
        waiting.append(self.pending_patches)

    from pipeline.inputs import collect_inputs

    options = extract_module.ExtractOptions(out_dir=tmp_path / "out", format="npz", batch_size=4,
                                            workers=2, progress=False)
    with vggish.VGGish(synthetic_checkpoint) as model, pytest.MonkeyPatch.context() as mp:
        mp.setattr(extract_module._Extraction, "_handle", watched_handle)
        report = extract_module.extract(collect_inputs([str(root)]), SlowModel(model), options)
    assert report.done == 6
    # 6 x 31 patches in all; what waits stays within a batch plus one block of the front end's stream.
    block_patches = math.ceil(DEFAULT_BLOCK_FRAMES / 16000 / 0.96) + 1
    assert max(waiting) <= options.batch_size + block_patches, max(waiting)


def test_worker_processes_get_one_blas_thread_unless_the_user_chose(monkeypatch) -> None:
    from pipeline.frontend import worker_environment

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with worker_environment():
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "3"
    assert "OPENBLAS_NUM_THREADS" not in os.environ and os.environ["OMP_NUM_THREADS"] == "3"
