"""Durable, atomic file output: write a temporary file beside the target, fsync it, then os.replace it.

The one implementation used by classifier (reports, checkpoints, packed features) and pipeline (extract
outputs, plots, error reports).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def temp_path_for(path: Path) -> Path:
    """The temporary name used while `path` is being written (hidden, same folder, fixed per target)."""
    return path.with_name(f".{path.name}.part")


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's contents to disk (directories: best effort, not on Windows)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes `path` durably and atomically.

    After a crash at any moment `path` is either absent (or its previous version) or complete; a stale
    temporary file is simply overwritten by the next attempt.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a UTF-8 text file atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
