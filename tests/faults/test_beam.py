"""A Beam run whose runner fails (a writer raising in the middle of the run, on the in-process runner):
it removes the temporary folders its writers made in OUT and keeps every file of earlier runs, and the
temporary folders it did not make."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import EXIT_ERROR, EXIT_SOME_FAILED, main

from .helpers import run_cli, write_tones

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
    assert any(name.startswith(f"beam-temp-{prefix}-r002-") and name != stale.name for name in seen), seen
    assert [path.name for path in out.glob("beam-temp-*")] == [stale.name]
    assert (stale / "shard").read_bytes() == b"partial"
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
    assert sorted(earlier) == ["errors-r001-00000-of-00001.tsv", "tags-r001-00000-of-00001.jsonl"]
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
