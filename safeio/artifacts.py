"""Reading `.npz` artifacts (heads, training checkpoints, parts) safely: every way such a file can be broken
(empty, truncated, corrupt, not an archive at all, holding pickled objects) is one BrokenFileError that
names the file and says what it is instead. Pickled objects are never loaded.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an archive with members; an empty archive
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_MAGIC = b"\x80"


class BrokenFileError(ValueError):
    """A file that cannot be what it should be; `path` and `problem` say which and why."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _what_it_is(head: bytes) -> str:
    """A guess at what a file starting with `head` holds, for a message."""
    if head.startswith(_NPY_MAGIC):
        return "a single .npy array, not an .npz archive"
    if head.startswith(_PICKLE_MAGIC):
        return "a pickled Python object, not an .npz archive (never loaded)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "not an .npz archive"
    return "a text file, not an .npz archive"


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an `.npz` file (loaded with allow_pickle=False), or BrokenFileError.

    OSErrors of opening it (missing, permission) pass through unchanged.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise BrokenFileError(path, "empty file (0 bytes)")
    if not head.startswith(_ZIP_MAGIC):
        raise BrokenFileError(path, _what_it_is(head))
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise BrokenFileError(path, "holds pickled Python objects (never loaded)") from exc
        raise BrokenFileError(path, f"corrupt .npz archive ({exc})") from exc
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise BrokenFileError(path, f"truncated or corrupt .npz archive ({exc})") from exc
