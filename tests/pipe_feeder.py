"""A pipe filled by a thread, for the tests that read audio from pipes and standard input."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def pipe_with(data: bytes, chunk: int = 3000) -> Iterator[int]:
    """The read end of a pipe that a thread fills with `data` in writes of `chunk` bytes, then closes."""
    read_end, write_end = os.pipe()

    def write() -> None:
        try:
            for i in range(0, len(data), chunk):
                os.write(write_end, data[i : i + chunk])
        except BrokenPipeError:
            pass
        finally:
            os.close(write_end)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield read_end
    finally:
        os.close(read_end)
        thread.join(timeout=10)
