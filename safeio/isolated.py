"""Run a file-writing job in a child process, so that a library that crashes the process on a write error
(h5py/HDF5 segfaults when the disk fills up while it closes a file) cannot take the caller down with it.

The child sends back None, or the error it raised; a child killed by a signal becomes an OSError naming the
output path. The child ends with os._exit, skipping the clean-up of a library left in a broken state, and
exits by itself when its parent is gone.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

_ERRNO_IN_MESSAGE = re.compile(r"errno = (\d+)")  # how HDF5 reports the system error behind a failed write


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def _child(target: Callable[..., None], args: tuple, parent: int, connection: Any, quiet: bool) -> None:
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if quiet:  # a crashing library's own traceback is noise: the parent reports the failure in one line
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    try:
        target(*args)
        outcome: tuple | None = None
    except BaseException as exc:  # everything goes back to the parent, which decides
        outcome = (type(exc).__name__, getattr(exc, "errno", None), getattr(exc, "filename", None), str(exc))
    try:
        connection.send(outcome)
        connection.close()
    finally:
        os._exit(0)


def run_isolated(
    context: Any, target: Callable[..., None], args: tuple, *, path: str | os.PathLike, quiet: bool = True
) -> None:
    """Call `target(*args)` in a child process of multiprocessing `context` and wait for it.

    Raises OSError (naming `path` when the error names no file) for an OS error in the child, including
    one HDF5 reports inside its message ("errno = 28"), and for a child that died; RuntimeError with the
    child's message for anything else. KeyboardInterrupt stops the child. `quiet` silences the child's
    stderr.
    """
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, args, os.getpid(), send, quiet), daemon=True)
    process.start()
    send.close()
    try:
        outcome = receive.recv()
    except EOFError:  # the child died without a word
        outcome = "died"
    except BaseException:
        process.terminate()
        process.join()
        raise
    finally:
        receive.close()
    process.join()
    if outcome is None:
        return
    if outcome == "died":
        raise OSError(errno.EIO, f"the writing process died (exit code {process.exitcode})", os.fspath(path))
    kind, number, filename, message = outcome
    if number is None:
        found = _ERRNO_IN_MESSAGE.search(message)
        number = int(found.group(1)) if found else None
    if number is not None:
        raise OSError(number, os.strerror(number), filename or os.fspath(path))
    raise RuntimeError(f"{kind}: {message}")
