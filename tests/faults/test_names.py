"""Any file name: bytes that are not UTF-8, newlines and tabs, in all three formats and in `tag`'s outputs;
FIFOs and symbolic link loops among the inputs."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from pipeline.cli import EXIT_ERROR, EXIT_SOME_FAILED
from pipeline.errorlog import ErrorLog
from safeio.names import escape_field, printable_name, unescape_field

from .helpers import one_line_error, run_cli

pytestmark = pytest.mark.faults

NAMES = ["a\udcff.wav", "new\nline.wav", "tab\there.wav", "back\\slash.wav"]  # \udcff: the byte 0xff


def test_escaped_fields_round_trip() -> None:
    for name in [*NAMES, "é\udcfe\r.wav", "\\xff.wav", "plain.wav"]:
        field = escape_field(name)
        assert "\t" not in field and "\n" not in field and "\r" not in field
        field.encode("utf-8")  # valid text
        assert unescape_field(field) == name
    assert printable_name("a\udcff.wav") == "a\\xff.wav"


def test_errors_tsv_keeps_every_name_on_its_line(tmp_path: Path) -> None:
    log = ErrorLog(tmp_path)
    for name in NAMES:
        log.add(tmp_path / name, name, f"{tmp_path / name}: broken\nbadly")
    lines = (tmp_path / "errors.tsv").read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 1 + len(NAMES) and all(line.count("\t") == 2 for line in lines)
    assert set(ErrorLog(tmp_path).failed) == set(NAMES)  # a rerun recognises every one


def _write_tone(path: Path) -> None:
    """One second of a 300 Hz tone at 16 kHz (through a file object: soundfile cannot open a name that is not
    UTF-8)."""
    t = np.arange(16000) / 16000
    with open(path, "wb") as f:
        sf.write(f, 0.3 * np.sin(2 * np.pi * 300 * t), 16000, format="WAV")


def _stdout_bytes(monkeypatch: pytest.MonkeyPatch, checkpoint: Path, *args: str) -> bytes:
    """What `audiotag ARGS` writes to standard output, as bytes, with the standard output of a C locale (which
    writes a name's undecodable bytes back raw, as surrogateescape does)."""
    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape", write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert run_cli(checkpoint, *args) == 0
    stdout.flush()
    return buffer.getvalue()


@pytest.mark.slow
def test_tag_outputs_are_valid_utf8_whatever_the_name(synthetic_checkpoint: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`tag --format json`, its HTML page and `tag --stream` write a name's byte 0xff as `\\xff`, as clip ids
    do: strict UTF-8 and JSON."""
    clip = tmp_path / "a\udcff.wav"
    _write_tone(clip)
    page = tmp_path / "page.html"
    out = _stdout_bytes(monkeypatch, synthetic_checkpoint, "tag", "--format", "json", "--html", str(page),
                        str(clip))
    [item] = json.loads(out.decode("utf-8"))
    assert item["file"] == str(tmp_path / "a\\xff.wav")
    text = page.read_bytes().decode("utf-8")
    assert "a\\xff.wav</h2>" in text
    out = _stdout_bytes(monkeypatch, synthetic_checkpoint, "tag", "--stream", str(clip))
    records = [json.loads(line) for line in out.decode("utf-8").splitlines()]
    assert records[0]["type"] == "ready" and records[0]["source"] == str(tmp_path / "a\\xff.wav")
    assert records[-1]["type"] == "end"


def _tree(root: Path) -> None:
    """Good clips under odd names, a broken one under an odd name, a FIFO and a symbolic link loop."""
    root.mkdir()
    for name in NAMES:
        _write_tone(root / name)
    (root / "bad\udcfe\nclip.wav").write_bytes(b"not audio" * 20)
    os.mkfifo(root / "fifo.wav")
    os.symlink("loop.wav", root / "loop.wav")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["npz", "hdf5", "tfrecord"])
def test_odd_names_are_embedded_reported_and_recognised_by_a_rerun(
    fmt: str, synthetic_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """A non-UTF-8 name does not stop the run (errors.tsv is written with escapes), and a failed name with a
    newline stays one errors.tsv record, so that reruns recognise it instead of appending duplicates."""
    root = tmp_path / "in"
    _tree(root)
    out = tmp_path / "out"
    args = ["extract", str(root), "-o", str(out), "--format", fmt, "--no-progress"]
    assert run_cli(synthetic_checkpoint, *args) == EXIT_SOME_FAILED
    err = capsys.readouterr().err
    assert f"{len(NAMES)} files embedded" in err and "3 failed" in err
    ids = {printable_name(name) for name in NAMES}
    if fmt == "npz":
        assert {str(p.relative_to(out))[: -len(".npz")] for p in out.glob("*.npz")} == ids
    elif fmt == "hdf5":
        with h5py.File(out / "embeddings.h5", "r") as f:
            assert set(f["video_id"].asstr()[()]) == ids
    else:
        from classifier.readers import load_clipset

        labels = tmp_path / "labels.csv"
        labels.write_text("id,labels\n" + "".join(f'"{clip_id}",x\n' for clip_id in sorted(ids)))
        assert set(load_clipset(out, labels_csv=labels, class_names=["x"]).ids) == ids
    report = (out / "errors.tsv").read_text(encoding="utf-8")
    lines = report.splitlines()
    assert len(lines) == 4, report
    reasons = {unescape_field(line.split("\t")[1]): line.split("\t")[2] for line in lines[1:]}
    assert set(reasons) == {"bad\\xfe\nclip.wav", "fifo.wav", "loop.wav"}
    assert "not a regular file" in reasons["fifo.wav"]
    assert "symbolic link loop" in reasons["loop.wav"]
    assert "not a readable audio file" in reasons["bad\\xfe\nclip.wav"]
    # The rerun recognises every finished and every failed file: nothing retried, nothing appended.
    assert run_cli(synthetic_checkpoint, *args) == EXIT_SOME_FAILED
    err = capsys.readouterr().err
    assert "0 files embedded" in err and f"{len(NAMES)} already done" in err and "3 failed in earlier" in err
    assert (out / "errors.tsv").read_text(encoding="utf-8") == report


def test_symlink_loop_given_as_input_is_named_as_such(synthetic_checkpoint: Path, tmp_path: Path,
                                                      capsys) -> None:
    os.symlink("loop.wav", tmp_path / "loop.wav")
    os.symlink("nowhere.wav", tmp_path / "dangling.wav")
    for name, problem in (("loop.wav", "symbolic link loop"), ("dangling.wav", "broken symbolic link")):
        code = run_cli(synthetic_checkpoint, "extract", str(tmp_path / name), "-o", str(tmp_path / "out"))
        assert code == EXIT_ERROR
        assert problem in one_line_error(capsys.readouterr().err)
