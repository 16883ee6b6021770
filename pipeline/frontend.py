"""Worker processes of `audiotag extract`: decode, resample and log-mel, without TensorFlow.

Workers are started with the `forkserver` (or `spawn`) method, never by forking a process that has imported
TensorFlow. Each worker takes `(index, path)` tasks from a queue and streams its results back:
`("start", worker, index)`, then `("block", index, examples float32 [n,96,64])` for each block of the file
(vggish.iter_file_examples, so memory stays flat for long files), then `("end", index, duration_seconds)`
or `("error", index, reason)`; `("exit", worker)` after the last task. A worker whose extraction process
has died (e.g. SIGKILL) exits by itself within a second (a watchdog thread checks the extraction process's
pid: the worker's direct parent is the forkserver), and then the forkserver exits too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from safeio.atomic import process_alive

logger = logging.getLogger(__name__)

_POLL_SECONDS = 1.0


def mp_context() -> Any:
    """`forkserver` where available (Linux, macOS), else `spawn`: both start workers without TensorFlow.

    The forkserver preloads pipeline._warmup (front end imported, resampler tables built) before forking.
    """
    import multiprocessing as mp  # here: `tag` imports this module (audio_duration) but starts no workers

    if sys.platform != "win32" and "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(["pipeline._warmup"])
        return context
    return mp.get_context("spawn")


# Each worker gets one BLAS thread: there is a worker per core already, and BLAS threads of several
# processes competing for the same cores made the resampler's matrix products several times slower.
_WORKER_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def worker_environment() -> Iterator[None]:
    """While active, processes started (the forkserver, spawned workers) get one BLAS thread each, unless
    the user set these variables; this process's environment is restored afterwards."""
    saved = {name: os.environ.get(name) for name in _WORKER_THREAD_VARIABLES}
    for name in _WORKER_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def prestart() -> None:
    """Start the forkserver now, so that its warm-up (imports, resampler tables) overlaps other work such
    as loading the VGGish checkpoint. Workers started later fork from it at once."""
    context = mp_context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        with worker_environment():
            forkserver.ensure_running()


def _watch(parent: int) -> None:
    """Daemon thread: end this worker at once when the extraction process is gone. A worker has no state
    worth saving, and it could otherwise block forever, on a full queue or when flushing its queue at exit."""
    while True:
        time.sleep(_POLL_SECONDS)
        if not process_alive(parent):
            os._exit(0)


def audio_duration(path: str) -> float:
    """Length of an audio file in seconds, from its header (vggish.AudioFileError when unreadable)."""
    from vggish.audio_io import audio_info

    info = audio_info(path)
    return float(info.frames) / float(info.sample_rate)


def failure_reason(path: str, exc: Exception) -> str:
    """The reason reported for a file that could not be processed: an AudioFileError's own message (it
    names the file), else `path: ExceptionType: message`."""
    import vggish

    if isinstance(exc, vggish.AudioFileError):
        return str(exc)
    return f"{path}: {type(exc).__name__}: {exc}"


def _process(path: str, index: int, hop_seconds: float, results: Any) -> None:
    import vggish

    try:
        for block in vggish.iter_file_examples(path, hop_seconds=hop_seconds):
            results.put(("block", index, block))
        duration = audio_duration(path)
    except Exception as exc:  # one odd file must not stop a batch of thousands; the reason is reported
        results.put(("error", index, failure_reason(path, exc)))
        return
    results.put(("end", index, duration))


def frontend_worker(
    worker: int, tasks: Any, results: Any, hop_seconds: float, parent: int, log_level: int
) -> None:
    """Process entry point: run tasks until the `None` sentinel (or until the extraction process is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the extraction process handles it and stops us
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    threading.Thread(target=_watch, args=(parent,), daemon=True, name="watch-extraction").start()
    while True:
        task = tasks.get()
        if task is None:
            break
        index, path = task
        results.put(("start", worker, index))
        _process(path, index, hop_seconds, results)
    results.put(("exit", worker))
