"""Durable, atomic file output: write a temporary file beside the target, fsync it, then os.replace it.

The one implementation used by classifier (reports, checkpoints, packed features) and pipeline (extract
outputs, plots, error reports).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from safeio.oserrors import errors_naming

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".part"


def temp_path_for(path: Path) -> Path:
    """The temporary name used while `path` is being written: hidden, same folder, unique to this process
    (`.NAME.PID.part`), so that two processes writing the same target never share a temporary file."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


def _writer_pid(temporary: Path) -> int | None:
    """The PID in a `.NAME.PID.part` name (None for a name without one, as older versions wrote)."""
    stem = temporary.name[: -len(TEMP_SUFFIX)]
    pid = stem.rsplit(".", 1)[-1]
    return int(pid) if pid.isdigit() else None


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path, *, recursive: bool = False) -> int:
    """Delete the temporary files (`.*.part`) in `folder` (and below it, with `recursive`) whose writer is
    gone; returns how many. A temporary of a live process (another run, or this one) is never touched.
    """
    removed = 0
    if not folder.is_dir():
        return 0
    for tmp in (folder.rglob if recursive else folder.glob)(f".*{TEMP_SUFFIX}"):
        pid = _writer_pid(tmp)
        if pid is not None and (pid == os.getpid() or process_alive(pid)):
            continue
        if tmp.is_dir():
            continue
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


_swept_folders: set[str] = set()


def sweep_folder_once(folder: str | os.PathLike[str]) -> int:
    """remove_stale_temporaries(folder) the first time this process writes into `folder`, 0 afterwards (so a
    run that writes many files into one folder lists it once); returns how many were deleted.

    For writers without a start-up of their own (plots, HTML pages, evaluation reports): a killed run's
    `.NAME.PID.part` files go at the next run's first write there, those of live processes never."""
    key = os.path.realpath(folder)
    if key in _swept_folders:
        return 0
    _swept_folders.add(key)
    try:
        return remove_stale_temporaries(Path(key))
    except OSError as exc:  # the output itself may still be writable: leave the leftovers
        logger.warning("cannot remove the temporary files of a killed run in %s: %s", key, exc)
        return 0


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
    temporary file is left for remove_stale_temporaries. An OSError that names no file (a failed write:
    full disk...) is raised again naming `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        with errors_naming(path):
            raise exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a UTF-8 text file atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
