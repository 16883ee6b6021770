"""The cached LiteRT conversion of a VGGish checkpoint: where it lives, whether it is usable, building it.

For a checkpoint C, three files, beside C:

    C.litert.tflite   the flatbuffer (vggish.lite_convert), memory-mapped by LiteRT
    C.litert.json     its record: format, the checkpoint's sha256, the flatbuffer's size, synthetic, converter
    C.sha256.json     C's files with their sizes and mtime_ns, and its sha256 (vggish.hashing): C is hashed
                      again only when it changes

When C's folder is not writable they go to safeio.cache.cache_dir()/vggish-litert/, named
`<C's name>-<16 hex digits of the sha256 of C's absolute path>` plus the same suffixes; a conversion found
beside C is used first either way.

A conversion is usable when its record has this version's params.LITE_FORMAT and the checkpoint's sha256, and
the flatbuffer has the recorded size and TF-Lite's identifier. Otherwise it is built again, saying why
(missing, truncated, not a flatbuffer, another format, the checkpoint changed), by one process at a time
(`C.litert.tflite.lock`; the others wait and use its conversion). Checking and reading a
conversion never imports TensorFlow; building one does. A file that exists but cannot be read raises its
OSError, which names it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from safeio.atomic import atomic_output, atomic_write_text
from safeio.cache import cache_dir
from vggish import params, synthetic
from vggish.checkpoint import check_present, checkpoint_files
from vggish.hashing import file_stats, files_sha256, recorded_sha256, write_sha256_record

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, concurrent builds are not coordinated
    fcntl = None

logger = logging.getLogger(__name__)

NOT_BUILT = "not built yet"


@dataclass(frozen=True)
class Location:
    """Where a checkpoint's conversion lives: the flatbuffer, its record, the checkpoint's hash record."""

    model: Path
    record: Path
    hashes: Path

    @classmethod
    def at(cls, base: str) -> Location:
        return cls(Path(base + params.LITE_SUFFIX), Path(base + params.LITE_RECORD_SUFFIX),
                   Path(base + params.HASH_RECORD_SUFFIX))

    @property
    def writable(self) -> bool:
        """Whether its folder (or, while missing, the nearest existing folder above it) can be written."""
        folder = self.model.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return os.access(folder, os.W_OK)


def locations(checkpoint: str | Path) -> list[Location]:
    """Beside the checkpoint, then in the audiotag cache folder (see the module's docstring)."""
    path = Path(checkpoint).expanduser().absolute()
    key = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    fallback = cache_dir() / params.LITE_CACHE_SUBDIR / f"{path.name}-{key}"
    return [Location.at(str(path)), Location.at(str(fallback))]


@dataclass(frozen=True)
class CacheState:
    """The conversion of a checkpoint as found: at `location` (the usable one, else where it would be built),
    usable or not and why not (`reason`: NOT_BUILT or a sentence naming the file), and whether it is (or
    would be) of a SYNTHETIC checkpoint."""

    location: Location
    usable: bool
    reason: str
    synthetic: bool


@dataclass(frozen=True)
class Conversion:
    """A usable conversion: its flatbuffer's path, or its bytes when it could not be cached (path None)."""

    path: Path | None
    synthetic: bool
    content: bytes | None = None


def _checkpoint_sha256(checkpoint: Path, places: list[Location]) -> str:
    """The checkpoint's sha256 from a hash record that still matches it, else hashed and recorded."""
    check_present(checkpoint)
    files = checkpoint_files(checkpoint)
    for place in places:
        if (digest := recorded_sha256(files, place.hashes)) is not None:
            return digest
    stats = file_stats(files)
    logger.info("hashing %s (once: the digest is recorded)", checkpoint)
    digest = files_sha256(files)
    for place in (p for p in places if p.writable):
        try:
            write_sha256_record(place.hashes, stats, digest)
            break
        except OSError as exc:
            logger.info("cannot record the checkpoint's sha256 in %s (%s)", place.hashes, exc)
    return digest


def _problem(place: Location, checkpoint_sha256: Callable[[], str]) -> tuple[str, dict | None]:
    """Why the conversion at `place` cannot be used ("" when it can) and its record. `checkpoint_sha256` is
    called only when everything else is right (hashing the checkpoint may take a second)."""
    try:
        text = place.record.read_text(encoding="utf-8")
    except FileNotFoundError:
        return (f"{place.record} (its record) is missing" if place.model.exists() else NOT_BUILT), None
    try:
        record = json.loads(text)
        expected_size = int(record["size"])
        converted_from = str(record["checkpoint_sha256"])
    except (ValueError, KeyError, TypeError):
        return f"{place.record} (its record) is corrupt", None
    if record.get("format") != params.LITE_FORMAT:
        return (f"{place.model} is stale: conversion format {record.get('format')}, this version uses "
                f"{params.LITE_FORMAT}"), record
    try:
        size = place.model.stat().st_size
    except FileNotFoundError:
        return f"{place.model} is missing", record
    if size != expected_size:
        shape = "truncated" if size < expected_size else "corrupt"
        return f"{place.model} is {shape} ({size:,} bytes, its record says {expected_size:,})", record
    with open(place.model, "rb") as handle:
        header = handle.read(8)
    if header[4:8] != params.TFLITE_IDENTIFIER:
        return f"{place.model} is corrupt (not a TF-Lite flatbuffer)", record
    if converted_from != checkpoint_sha256():
        return f"{place.model} is stale: the checkpoint changed since it was converted", record
    return "", record


def inspect(checkpoint: str | Path) -> CacheState:
    """The state of the checkpoint's conversion, without building anything (nor importing TensorFlow).
    Raises CheckpointError when the checkpoint is missing, OSError when a file cannot be read."""
    checkpoint = Path(checkpoint)
    places = locations(checkpoint)
    digest = functools.cache(lambda: _checkpoint_sha256(checkpoint, places))
    found = []
    for place in places:
        reason, record = _problem(place, digest)
        if not reason:
            return CacheState(place, True, "", bool(record.get("synthetic")))
        found.append((place, reason))
    place, reason = next(((p, r) for p, r in found if p.writable), found[0])
    if reason == NOT_BUILT:  # a stale conversion elsewhere says more than "not built" where it would go
        reason = next((r for _, r in found if r != NOT_BUILT), NOT_BUILT)
    return CacheState(place, False, reason, synthetic.marker_path(checkpoint).is_file())


def ensure(checkpoint: str | Path, *, progress: bool = True) -> Conversion:
    """The checkpoint's usable conversion, built first when there is none (see build). Processes that need
    the same conversion at once build it once: the others wait for it (an flock on `<flatbuffer>.lock`)."""
    state = inspect(checkpoint)
    if not state.usable:
        with _building(state.location, progress):
            state = inspect(checkpoint)
            if not state.usable:
                return build(checkpoint, state.reason, progress=progress)
    logger.info("using the LiteRT conversion %s", state.location.model)
    return Conversion(state.location.model, state.synthetic)


@contextlib.contextmanager
def _building(place: Location, progress: bool) -> Iterator[None]:
    """Hold an exclusive flock on `<place.model>.lock` (left in place: removing it would race), waiting for a
    process that holds it; without flock, or where the lock file cannot be made, build unguarded."""
    lock_path = Path(f"{place.model}.lock")
    try:
        place.model.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")  # noqa: SIM115 - closed below, after the lock is released
    except OSError:
        handle = None
    if fcntl is None or handle is None:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            line = f"waiting for another process that converts the VGGish checkpoint to LiteRT ({lock_path})"
            if progress:
                print(f"audiotag: {line}...", file=sys.stderr, flush=True)
            logger.info(line)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _announce(reason: str, progress: bool) -> None:
    """The one line that says a conversion is being built, and why when it is built again."""
    if reason == NOT_BUILT:
        line = f"converting the VGGish checkpoint to LiteRT (once, ~{params.LITE_CONVERT_SECONDS} s)..."
    else:
        line = (f"converting the VGGish checkpoint to LiteRT again (~{params.LITE_CONVERT_SECONDS} s): "
                f"{reason}...")
    if progress:
        print(f"audiotag: {line}", file=sys.stderr, flush=True)
        logger.info(line)
    elif reason == NOT_BUILT:
        logger.info(line)
    else:
        logger.warning(line)


def _converter_version() -> str:
    """The installed TensorFlow's distribution and version, read without importing it."""
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def build(checkpoint: str | Path, reason: str = NOT_BUILT, *, progress: bool = True) -> Conversion:
    """Convert the checkpoint (imports TensorFlow) and cache the flatbuffer and its record, atomically, in
    the first writable location; `reason` says why (NOT_BUILT or what was wrong with the cached one). When
    no location can be written the conversion is returned in memory, with a warning. `progress`: one line
    on stderr while it builds. Raises CheckpointError for a bad checkpoint."""
    checkpoint = Path(checkpoint)
    places = locations(checkpoint)
    checkpoint_sha256 = _checkpoint_sha256(checkpoint, places)
    _announce(reason, progress)
    from vggish.lite_convert import convert_checkpoint

    started = time.monotonic()
    content = convert_checkpoint(checkpoint)
    is_synthetic = synthetic.marker_path(checkpoint).is_file()
    record = {"format": params.LITE_FORMAT, "checkpoint": checkpoint.name,
              "checkpoint_sha256": checkpoint_sha256, "size": len(content), "synthetic": is_synthetic,
              "converter": _converter_version(), "seconds": round(time.monotonic() - started, 1)}
    for place in (p for p in places if p.writable):
        try:
            place.record.unlink(missing_ok=True)  # a crash below leaves no record: the next run rebuilds
            with atomic_output(place.model) as tmp:
                tmp.write_bytes(content)
            atomic_write_text(place.record, json.dumps(record, indent=1) + "\n")
        except OSError as exc:
            logger.warning("cannot cache the LiteRT conversion in %s (%s)", place.model.parent, exc)
            continue
        logger.info("LiteRT conversion of %s written to %s in %.0f s", checkpoint, place.model,
                    record["seconds"])
        return Conversion(place.model, is_synthetic)
    logger.warning("the LiteRT conversion of %s could not be cached: it will be converted again next time",
                   checkpoint)
    return Conversion(None, is_synthetic, content)
