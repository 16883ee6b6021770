"""SHA-256 of files, read in chunks; and records of a digest that spare hashing unchanged files again.

A record is a small JSON file holding each file's name, size and mtime_ns beside the digest: while they are
unchanged the digest is taken from it (hashing the 291 MB checkpoint takes about a second).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from safeio.atomic import atomic_write_text

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def files_sha256(files: Sequence[Path]) -> str:
    """One file's sha256_file; for several (a V2 checkpoint's index and data files), the sha256 of their
    names and digests, one `name digest` line each."""
    if len(files) == 1:
        return sha256_file(files[0])
    lines = "".join(f"{path.name} {sha256_file(path)}\n" for path in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def file_stats(files: Sequence[Path]) -> list[list[object]]:
    """[name, size in bytes, mtime_ns] of each file: what a record is checked against."""
    return [[path.name, (info := path.stat()).st_size, info.st_mtime_ns] for path in files]


def recorded_sha256(files: Sequence[Path], record: Path) -> str | None:
    """The digest stored in `record` when it was written for these files as they are now (same names,
    sizes and mtime_ns); None when it is absent, unreadable or out of date."""
    try:
        content = json.loads(record.read_text(encoding="utf-8"))
        if content["files"] == file_stats(files) and isinstance(content["sha256"], str):
            return content["sha256"]
        logger.info("%s: the checkpoint changed since it was hashed", record)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.info("ignoring the hash record %s (%s)", record, exc)
    return None


def write_sha256_record(record: Path, stats: list[list[object]], digest: str) -> None:
    """Store `digest` of the files whose file_stats (taken before hashing them) are `stats` in `record`,
    atomically."""
    atomic_write_text(record, json.dumps({"files": stats, "sha256": digest}, indent=1) + "\n")
