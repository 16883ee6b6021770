"""One run per output folder: an exclusive `flock` on `FOLDER/.audiotag.lock`.

The kernel releases a `flock` when its holder exits, however it exits (SIGKILL included), so a lock left
by a killed run is simply free: the next run takes it over and rewrites the holder's PID. The PID in the
file only serves the message of a refused run; the lock itself is never decided by it. The lock file is
never deleted (deleting it would let two runs lock two different files of the same name).

A process holding a folder's lock may take it again (nested `FolderLock`s are counted), so a command can
lock its output folder early, before loading a model, and the library function it calls locks it again.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

LOCK_NAME = ".audiotag.lock"
_held: dict[str, tuple[int, int]] = {}  # real folder path -> (file descriptor, nesting depth)


class FolderBusyError(Exception):
    """Another live process holds the folder's lock; the message names the folder and its PID."""

    def __init__(self, folder: Path, holder: str):
        self.folder = folder
        self.holder = holder
        super().__init__(
            f"{folder}: in use by another audiotag run ({holder}); wait for it to finish, pass --wait to "
            "start when it does, or choose another output folder"
        )


def _holder(fd: int) -> str:
    """What the lock file says about its holder: `PID 1234` (or `PID unknown`)."""
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    except OSError:
        text = []
    return f"PID {text[0]}" if text and text[0].isdigit() else "PID unknown"


class FolderLock:
    """Context manager: hold `folder`'s lock (created with the folder) for the duration of the block.

    wait=False raises FolderBusyError at once when another process holds it; wait=True logs who holds it
    and blocks until it is free. Works on local file systems; NFS support depends on the server.
    """

    def __init__(self, folder: str | os.PathLike[str], *, wait: bool = False):
        self.folder = Path(folder)
        self.wait = wait
        self._key = ""

    def __enter__(self) -> FolderLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(self.folder)) from None
        self._key = os.path.realpath(self.folder)
        if self._key in _held:
            fd, depth = _held[self._key]
            _held[self._key] = (fd, depth + 1)
            return self
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._acquire(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        _held[self._key] = (fd, 1)
        return self

    def _acquire(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
        holder = _holder(fd)
        if not self.wait:
            raise FolderBusyError(self.folder, holder)
        logger.warning("%s: in use by another audiotag run (%s); waiting for it to finish", self.folder,
                       holder)
        started = time.monotonic()
        fcntl.flock(fd, fcntl.LOCK_EX)
        logger.info("%s: free after %.1f s", self.folder, time.monotonic() - started)

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        fd, depth = _held[self._key]
        if depth > 1:
            _held[self._key] = (fd, depth - 1)
            return
        del _held[self._key]
        os.close(fd)  # closing the only descriptor releases the flock
