"""The cached LiteRT conversion of a checkpoint (vggish.lite_cache): where it goes, when it is rebuilt and
why, the checkpoint's hash record. A stand-in converter makes these tests fast: no TensorFlow, no real CNN."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from safeio import cache
from vggish import engines, lite_cache, params, synthetic
from vggish.errors import CheckpointError, LiteEngineError
from vggish.hashing import sha256_file

FLATBUFFER = b"\x1c\x00\x00\x00" + params.TFLITE_IDENTIFIER + bytes(range(256)) * 4


@pytest.fixture
def converter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """A stand-in vggish.lite_convert whose conversion is FLATBUFFER; the checkpoints it converted. The cache
    folder is a fresh one under tmp_path."""
    converted: list[Path] = []

    def convert_checkpoint(path: Path) -> bytes:
        converted.append(Path(path))
        return FLATBUFFER

    monkeypatch.setitem(sys.modules, "vggish.lite_convert",
                        types.SimpleNamespace(convert_checkpoint=convert_checkpoint))
    monkeypatch.setenv(cache.ENV_HOME, str(tmp_path / "cache"))
    return converted


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "vggish_model.ckpt"
    path.parent.mkdir()
    path.write_bytes(b"checkpoint bytes " * 100)
    return path


def _hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the checkpoint hashings done by lite_cache."""
    calls: list[int] = []
    real = lite_cache.files_sha256

    def counting(files):
        calls.append(1)
        return real(files)

    monkeypatch.setattr(lite_cache, "files_sha256", counting)
    return calls


def _read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make `folder` look unwritable (as root, chmod would not stop the writes)."""
    real = os.access
    monkeypatch.setattr(lite_cache.os, "access", lambda path, mode: Path(path) != folder and real(path, mode))


def test_built_once_beside_the_checkpoint_with_a_progress_line(converter, checkpoint, monkeypatch, capsys):
    hashed = _hashes(monkeypatch)
    state = lite_cache.inspect(checkpoint)
    assert not state.usable and state.reason == lite_cache.NOT_BUILT
    conversion = lite_cache.ensure(checkpoint)
    err = capsys.readouterr().err
    seconds = params.LITE_CONVERT_SECONDS
    assert err == f"audiotag: converting the VGGish checkpoint to LiteRT (once, ~{seconds} s)...\n"
    assert conversion.path == Path(f"{checkpoint}{params.LITE_SUFFIX}") and not conversion.synthetic
    assert conversion.path.read_bytes() == FLATBUFFER and converter == [checkpoint]
    record = json.loads(Path(f"{checkpoint}{params.LITE_RECORD_SUFFIX}").read_text())
    assert record["format"] == params.LITE_FORMAT and record["size"] == len(FLATBUFFER)
    assert record["checkpoint_sha256"] == sha256_file(checkpoint) and record["synthetic"] is False
    hash_record = json.loads(Path(f"{checkpoint}{params.HASH_RECORD_SUFFIX}").read_text())
    assert hash_record["sha256"] == sha256_file(checkpoint)
    assert hashed == [1]
    again = lite_cache.ensure(checkpoint)  # cached: no conversion, no hashing, no line
    assert again.path == conversion.path and converter == [checkpoint] and hashed == [1]
    assert capsys.readouterr().err == ""
    assert not [p for p in checkpoint.parent.iterdir() if p.name.endswith(".part")]


def test_the_checkpoint_is_hashed_again_only_when_it_changes(converter, checkpoint, monkeypatch):
    hashed = _hashes(monkeypatch)
    lite_cache.ensure(checkpoint, progress=False)
    assert lite_cache.inspect(checkpoint).usable and hashed == [1]
    info = checkpoint.stat()
    os.utime(checkpoint, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))  # touched: same bytes
    assert lite_cache.inspect(checkpoint).usable and hashed == [1, 1]
    assert lite_cache.inspect(checkpoint).usable and hashed == [1, 1]
    assert converter == [checkpoint]


def _truncate(place: lite_cache.Location) -> None:
    place.model.write_bytes(FLATBUFFER[:100])


def _not_a_flatbuffer(place: lite_cache.Location) -> None:
    place.model.write_bytes(b"\x00" * len(FLATBUFFER))


def _old_format(place: lite_cache.Location) -> None:
    record = json.loads(place.record.read_text())
    place.record.write_text(json.dumps(record | {"format": params.LITE_FORMAT - 1}))


def _corrupt_record(place: lite_cache.Location) -> None:
    place.record.write_text("{not json")


def _no_record(place: lite_cache.Location) -> None:
    place.record.unlink()


def _no_model(place: lite_cache.Location) -> None:
    place.model.unlink()


def _new_checkpoint(place: lite_cache.Location) -> None:
    checkpoint = Path(str(place.model)[: -len(params.LITE_SUFFIX)])
    checkpoint.write_bytes(b"other weights " * 100)


@pytest.mark.parametrize(("damage", "words"), [
    (_truncate, "is truncated (100 bytes, its record says 1,032)"),
    (_not_a_flatbuffer, "is corrupt (not a TF-Lite flatbuffer)"),
    (_old_format, f"is stale: conversion format {params.LITE_FORMAT - 1}, this version uses"),
    (_corrupt_record, "(its record) is corrupt"),
    (_no_record, "(its record) is missing"),
    (_no_model, ".litert.tflite is missing"),
    (_new_checkpoint, "is stale: the checkpoint changed since it was converted"),
])
def test_rebuilt_saying_why(converter, checkpoint, capsys, damage, words):
    place = lite_cache.locations(checkpoint)[0]
    lite_cache.ensure(checkpoint, progress=False)
    damage(place)
    state = lite_cache.inspect(checkpoint)
    assert not state.usable and words in state.reason, state.reason
    conversion = lite_cache.ensure(checkpoint)
    line = capsys.readouterr().err
    assert line.startswith("audiotag: converting the VGGish checkpoint to LiteRT again") and words in line
    assert line.count("\n") == 1, line
    assert conversion.path == place.model and len(converter) == 2
    assert lite_cache.inspect(checkpoint).usable


def test_rebuild_reason_is_a_warning_without_progress(converter, checkpoint, caplog):
    lite_cache.ensure(checkpoint, progress=False)
    _truncate(lite_cache.locations(checkpoint)[0])
    with caplog.at_level("WARNING", logger="vggish.lite_cache"):
        lite_cache.ensure(checkpoint, progress=False)
    assert any("truncated" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_read_only_folder_falls_back_to_the_cache_folder(converter, checkpoint, monkeypatch, tmp_path):
    _read_only(monkeypatch, checkpoint.parent)
    conversion = lite_cache.ensure(checkpoint, progress=False)
    folder = tmp_path / "cache" / params.LITE_CACHE_SUBDIR
    assert conversion.path is not None and conversion.path.parent == folder
    assert conversion.path.name.startswith(f"{checkpoint.name}-") and conversion.path.name.endswith(
        params.LITE_SUFFIX)
    names = sorted(p.name for p in folder.iterdir())
    stem = conversion.path.name[: -len(params.LITE_SUFFIX)]
    assert names == sorted(stem + suffix for suffix in (params.HASH_RECORD_SUFFIX, params.LITE_RECORD_SUFFIX,
                                                          params.LITE_SUFFIX, f"{params.LITE_SUFFIX}.lock"))
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == [checkpoint.name]
    assert lite_cache.inspect(checkpoint).location.model == conversion.path


def test_a_conversion_beside_a_read_only_checkpoint_is_used(converter, checkpoint, monkeypatch, tmp_path):
    built = lite_cache.ensure(checkpoint, progress=False)
    _read_only(monkeypatch, checkpoint.parent)
    state = lite_cache.inspect(checkpoint)
    assert state.usable and state.location.model == built.path
    assert not (tmp_path / "cache").exists()


def test_nothing_writable_gives_the_conversion_in_memory(converter, checkpoint, monkeypatch, caplog):
    monkeypatch.setattr(lite_cache.os, "access", lambda path, mode: False)
    conversion = lite_cache.ensure(checkpoint, progress=False)
    assert conversion.path is None and conversion.content == FLATBUFFER
    assert "could not be cached" in caplog.text


def test_a_synthetic_checkpoint_s_conversion_is_marked(converter, checkpoint):
    synthetic.marker_path(checkpoint).write_text("{}")
    assert lite_cache.inspect(checkpoint).synthetic
    assert lite_cache.ensure(checkpoint, progress=False).synthetic
    record = json.loads(Path(f"{checkpoint}{params.LITE_RECORD_SUFFIX}").read_text())
    assert record["synthetic"] is True and lite_cache.inspect(checkpoint).synthetic


def test_an_unreadable_record_is_an_error_naming_it(converter, checkpoint):
    record = lite_cache.locations(checkpoint)[0].record
    record.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        lite_cache.ensure(checkpoint, progress=False)
    assert info.value.filename == str(record)


@pytest.mark.parametrize("name", ["missing.ckpt", "empty.ckpt"])
def test_a_missing_or_empty_checkpoint_is_a_checkpoint_error(converter, tmp_path, name):
    path = tmp_path / name
    if name == "empty.ckpt":
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=name):
        lite_cache.ensure(path, progress=False)
    assert converter == []


def test_engine_choice_without_litert(monkeypatch, checkpoint):
    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: None)
    engine, why = engines.auto_engine()
    assert engine == "tf" and "LiteRT is not installed" in why
    with pytest.raises(LiteEngineError, match="LiteRT is not installed"):
        engines.load_embedder(checkpoint, "lite")
    with pytest.raises(ValueError, match="vggish_engine must be one of"):
        engines.load_embedder(checkpoint, "onnx")
    monkeypatch.undo()
    assert engines.auto_engine() == ("lite", "")


def test_importing_vggish_and_its_engine_choice_loads_neither_tensorflow_nor_litert() -> None:
    from import_probe import modules_imported_by

    code = "import vggish, vggish.engines, vggish.lite_cache, vggish.lite_model, vggish.embedder"
    assert modules_imported_by(code, ["tensorflow", "ai_edge_litert", "tf_slim"]) == []


def test_processes_that_need_it_at_once_build_it_once(converter, checkpoint, monkeypatch):
    """A second caller (another open file description, as another process has) waits on the lock while the
    first converts, then takes its conversion."""
    started, release = threading.Event(), threading.Event()
    real = sys.modules["vggish.lite_convert"].convert_checkpoint

    def slow(path):
        started.set()
        assert release.wait(10)
        return real(path)

    monkeypatch.setattr(sys.modules["vggish.lite_convert"], "convert_checkpoint", slow)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(lite_cache.ensure, checkpoint, progress=False)
        assert started.wait(10)
        second = pool.submit(lite_cache.ensure, checkpoint, progress=False)
        time.sleep(0.2)
        assert not second.done()  # waiting for the lock
        release.set()
        assert first.result().path == second.result().path
    assert converter == [checkpoint]
