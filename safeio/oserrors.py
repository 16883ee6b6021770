"""Errors of the environment (full disk, read-only or forbidden folder, too many open files) in one line.

These are not bugs of audiotag but problems the user can fix; `describe_os_error` says which path, what
happened and what to do, and `is_environment_error` tells them apart from other OSErrors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator

from safeio.names import printable_name

_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space, then rerun the same command (finished "
    "work is kept)",
    errno.EDQUOT: "disk quota exceeded; free some space, then rerun the same command (finished work is kept)",
    errno.EACCES: "permission denied; choose a folder you may write to, or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you may write to, or fix its permissions",
    errno.EROFS: "read-only file system; choose an output folder on a writable file system",
    errno.EMFILE: "too many open files in this process; raise the limit (`ulimit -n`) and rerun",
    errno.ENFILE: "too many open files on this system; close some programs and rerun",
    errno.EIO: "input/output error (a failing device, or a writing process that crashed); finished work "
    "is kept, rerun the same command",
    errno.ELOOP: "too many levels of symbolic links (a symbolic link loop)",
    errno.ENAMETOOLONG: "file name too long",
}
ENVIRONMENT_ERRNOS = frozenset(_ADVICE)


def is_environment_error(exc: BaseException) -> bool:
    """Whether `exc` is an OSError caused by the environment (ENVIRONMENT_ERRNOS), not by a bug."""
    return isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS


def describe_os_error(exc: OSError, path: str | os.PathLike | None = None) -> str:
    """`PATH: problem; what to do` for an OSError (`path` when the error does not name one itself)."""
    where = exc.filename if exc.filename is not None else path
    problem = _ADVICE.get(exc.errno) or exc.strerror or str(exc)
    if exc.errno in _ADVICE and exc.strerror and exc.errno and exc.strerror != os.strerror(exc.errno):
        problem = f"{exc.strerror}; {problem}"  # a detail of ours (check_free_space) before the advice
    return f"{printable_name(where)}: {problem}" if where is not None else problem


def with_path(exc: OSError, path: str | os.PathLike) -> OSError:
    """`exc` itself when it names a file, else a copy of the same kind naming `path`."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(path))


@contextlib.contextmanager
def errors_naming(path: str | os.PathLike) -> Iterator[None]:
    """Raise an OSError of the block that names no file (a failed write: full disk...) again naming `path`."""
    try:
        yield
    except OSError as exc:
        named = with_path(exc, path)
        if named is exc:
            raise
        raise named from exc


def check_free_space(folder: str | os.PathLike, needed_bytes: int, what: str) -> None:
    """OSError(ENOSPC) naming `folder` when its file system has less than `needed_bytes` free for `what`."""
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise OSError(
            errno.ENOSPC,
            f"{what} needs about {needed_bytes / 1e6:.1f} MB, {free / 1e6:.1f} MB free",
            os.fspath(folder),
        )
