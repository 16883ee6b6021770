"""Beam runs that fail or are killed. A run whose runner fails (a writer raising in the middle of the run, on
the in-process runner) removes the temporary folders its writers made in OUT and keeps every file of earlier
runs; a local run removes the temporary folders of dead runs at its start (it holds OUT's lock, so no other
run is live there). A beam-extract SIGKILLed with its worker processes while its records sit in Beam's
temporary files is completed by a rerun with --skip-existing: every clip once, nothing lost."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from parquet_folder import read_dataset

from pipeline.cli import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, main

from .helpers import cli_process, run_cli, write_tones

pytest.importorskip("apache_beam")
pytestmark = [pytest.mark.faults, pytest.mark.slow]

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]  # so that a monkeypatch holds
STALE_TEMPORARY = "beam-temp-{prefix}-r002-0123456789abcdef0123456789abcdef"  # a killed attempt at run r002


def _files(out: Path) -> dict[str, bytes]:
    """The outputs in OUT (not the lock file, which each run rewrites)."""
    return {path.name: path.read_bytes() for path in out.iterdir()
            if path.is_file() and not path.name.startswith(".")}


def _fail_writes(monkeypatch: pytest.MonkeyPatch, sink: type, out: Path) -> list[str]:
    """Make `sink` raise at its first record; returns the beam-temp-* folders in OUT at that moment."""
    seen: list[str] = []

    def fail(self: object, handle: object, value: object) -> None:
        seen.extend(path.name for path in out.glob("beam-temp-*"))
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sink, "write_encoded_record", fail)
    return seen


def _check_failed_run(code: int, err: str, seen: list[str], out: Path, earlier: dict[str, bytes],
                      stale: Path, prefix: str) -> None:
    assert code == EXIT_ERROR and "the Beam pipeline failed" in err and "disk on fire" in err
    assert stale.name not in seen  # the dead run's folder went at the start
    assert any(name.startswith(f"beam-temp-{prefix}-r002-") for name in seen), seen
    assert not list(out.glob("beam-temp-*"))
    assert _files(out) == earlier  # byte for byte, nothing added


def test_failed_beam_tag_removes_its_temporary_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys) -> None:
    from apache_beam.io import textio

    from pipeline.parquet import clip_row, write_rows

    rng = np.random.default_rng(0)
    rows = [clip_row(f"c{i}.wav", rng.integers(0, 255, (3, 128), dtype=np.uint8), np.arange(3) * 0.96, 2.88)
            for i in range(4)]
    rows.append(clip_row("empty.wav", np.zeros((0, 128), np.uint8), np.zeros(0), 0.0))  # fails: no frames
    (tmp_path / "emb").mkdir()
    write_rows(tmp_path / "emb" / "embeddings-00000-of-00001.parquet", rows, raw=False)
    out = tmp_path / "out"
    args = ["beam-tag", str(tmp_path / "emb"), "-o", str(out), *IN_PROCESS]
    assert main(args) == EXIT_SOME_FAILED  # run r001: tags and an errors file
    earlier = _files(out)
    assert sorted(earlier) == ["_errors-r001-00000-of-00001.tsv", "tags-r001-00000-of-00001.jsonl"]
    stale = out / STALE_TEMPORARY.format(prefix="tags")
    stale.mkdir()
    (stale / "shard").write_bytes(b"partial")
    capsys.readouterr()
    seen = _fail_writes(monkeypatch, textio._TextSink, out)
    code = main(args)
    _check_failed_run(code, capsys.readouterr().err, seen, out, earlier, stale, "tags")


def test_failed_beam_extract_removes_its_temporary_folders(synthetic_checkpoint: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from apache_beam.io import tfrecordio

    write_tones(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = ["beam-extract", str(tmp_path / "in"), "-o", str(out), "--skip-existing", *IN_PROCESS]
    assert run_cli(synthetic_checkpoint, *args) == 0  # run r001
    earlier = _files(out)
    assert "embeddings-r001-00000-of-00001.tfrecord" in earlier
    write_tones(tmp_path / "in", 3)  # one more file for the next run
    stale = out / STALE_TEMPORARY.format(prefix="embeddings")
    stale.mkdir()
    (stale / "shard").write_bytes(b"partial")
    capsys.readouterr()
    seen = _fail_writes(monkeypatch, tfrecordio._TFRecordSink, out)
    code = run_cli(synthetic_checkpoint, *args)
    _check_failed_run(code, capsys.readouterr().err, seen, out, earlier, stale, "embeddings")


def test_killed_beam_extract_is_completed_by_a_rerun(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    write_tones(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = ["beam-extract", str(tmp_path / "in"), "-o", str(out), "--format", "parquet", "--skip-existing"]
    assert run_cli(synthetic_checkpoint, *args, *IN_PROCESS) == EXIT_OK  # run r001
    earlier = _files(out)
    clip_ids = write_tones(tmp_path / "in", 6)  # 4 more for run r002
    killed = [*args, "--direct_num_workers=2"]
    process = cli_process("--vggish-checkpoint", str(synthetic_checkpoint), *killed,
                          kill_at=f"beam-records:{out}", start_new_session=True)
    _, err = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, err
    written = [path for path in out.glob("beam-temp-embeddings-r002-*/*") if path.stat().st_size]
    assert written and _files(out) == earlier  # records in Beam's temporary files only
    assert run_cli(synthetic_checkpoint, *killed) == EXIT_OK
    assert {name: data for name, data in _files(out).items() if name in earlier} == earlier
    assert sorted(read_dataset(out)) == clip_ids  # each clip once (read_dataset asserts it)
    assert not list(out.glob("beam-temp-*")) and not list(out.rglob("*.part"))
