"""`audiotag extract`: embeddings for many files, pipelined, resumable, robust to bad files.

Worker processes (pipeline.frontend) decode, resample and compute log-mel patches; this process runs the
VGGish CNN on batches of `batch_size` patches that span file boundaries (or on whatever is waiting when the
workers are slower than the CNN, so that it never sits idle), postprocesses, and hands finished files to a
writer (pipeline.writers). The CNN runs in its own thread (TensorFlow and LiteRT release the GIL), one batch
queued behind the running one, so that receiving patches, postprocessing and writing overlap the CNN instead
of taking turns with it. Finished outputs are durable before they count as finished; a rerun of the same
command skips them. Files that cannot be read go to `OUT/errors.tsv` and the run goes on.

HDF5 layout (`OUT/embeddings.h5`): `embedding` uint8 [P,128], optional `raw` float32 [P,128], `timestamps`
float64 [P] (patch start, s), `clip_offsets` int64 [N+1] (clip i = rows offsets[i]:offsets[i+1]), `video_id`
utf-8 str [N], `duration` float64 [N]; attrs `format = "audiotag-embeddings-v1"`, `hop_seconds`,
`checkpoint_status`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pipeline import frontend
from pipeline.errorlog import ErrorLog
from pipeline.errors import PipelineError
from pipeline.inputs import AudioInput
from pipeline.writers import FORMATS, STATE_DIR, ClipEmbeddings, Writer, open_writer, remove_stale_temporaries
from safeio.atomic import atomic_write_text
from safeio.lock import FolderLock
from safeio.names import one_line

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """One front-end worker process per core (decoding and resampling are single-threaded)."""
    return available_cores()


def default_cnn_threads() -> int:
    """Threads for the CNN, one per core: TensorFlow's intra-op pool (with a single inter-op thread), or
    LiteRT's interpreter threads.

    The workers and the CNN then share the cores through the OS scheduler, so whichever stage is the
    bottleneck (resampling for 44.1 kHz input, the CNN for 16 kHz input) can use all of them.
    """
    return available_cores()


@dataclass
class ExtractOptions:
    """Settings of one extraction run.

    batch_size: CNN batch in patches; files_per_shard: clips per TFRecord shard; labels: AudioSet class
    indices per clip id (TFRecord `labels`); hop_seconds: patch hop; wait: when another run holds the
    output folder, wait for it instead of raising safeio.lock.FolderBusyError.
    """

    out_dir: Path
    format: str = "tfrecord"
    raw: bool = False
    workers: int = field(default_factory=default_workers)
    batch_size: int = 128
    files_per_shard: int = 256
    hop_seconds: float = 0.96
    labels: Mapping[str, Sequence[int]] | None = None
    progress: bool = True
    wait: bool = False


@dataclass
class ExtractReport:
    """What a run did. Durations in seconds; `audio_seconds` counts the audio embedded by this run."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    failed_before: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    errors_path: Path | None = None

    @property
    def any_failed(self) -> bool:
        return self.failed + self.failed_before > 0


@dataclass
class _FileState:
    item: AudioInput
    received: int = 0
    embedded: int = 0
    raw: list[np.ndarray] = field(default_factory=list)
    duration: float | None = None


def _check_manifest(options: ExtractOptions, clip_ids: Sequence[str], engine: str) -> None:
    """Refuse to mix runs with different settings, VGGish engines (a manifest without one is of "tf", the only
    engine before) or, for TFRecords, different inputs in one folder."""
    manifest = {"format": options.format, "raw": options.raw, "hop_seconds": options.hop_seconds,
                "vggish_engine": engine}
    if options.format in ("tfrecord", "parquet"):
        manifest["files_per_shard"] = options.files_per_shard
        manifest["clip_ids"] = list(clip_ids)
    path = options.out_dir / STATE_DIR / MANIFEST_NAME
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PipelineError(
                f"{path}: unreadable extraction manifest ({exc}); use a new output folder"
            ) from exc
        previous.setdefault("vggish_engine", "tf")
        for key, value in manifest.items():
            if previous.get(key) != value:
                what = (
                    "input files"
                    if key == "clip_ids"
                    else f"{key} ({previous.get(key)!r} then, {value!r} now)"
                )
                raise PipelineError(
                    f"{options.out_dir}: holds an extraction with different {what}; rerun with the same "
                    "inputs and options to resume it, or choose a new output folder"
                )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(manifest) + "\n")


class _Extraction:
    """One run: owns the worker processes, the pending patches, the per-file states and the writer."""

    def __init__(
        self,
        todo: Sequence[AudioInput],
        model: Any,
        writer: Writer,
        errors: ErrorLog,
        options: ExtractOptions,
        report: ExtractReport,
    ):
        self.todo = todo
        self.model = model
        self.writer = writer
        self.errors = errors
        self.options = options
        self.report = report
        self.states: dict[int, _FileState] = {}
        self.pending: deque[tuple[int, np.ndarray]] = deque()
        self.pending_patches = 0
        # CNN batches submitted to the CNN thread, oldest first: (file index, patch count) pieces + result.
        self.in_flight: deque[tuple[list[tuple[int, int]], Future]] = deque()
        self.cnn = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audiotag-cnn")
        self.current: dict[int, int | None] = {}
        self.processes: dict[int, Any] = {}
        self.started = time.monotonic()
        self.bar = tqdm(
            total=len(todo), unit="file", disable=not options.progress or None, dynamic_ncols=True
        )

    # --- workers -----------------------------------------------------------------------------------------
    def _start_workers(self) -> None:
        ctx = frontend.mp_context()
        count = max(1, min(self.options.workers, len(self.todo)))
        self.tasks = ctx.Queue()
        # Room for several CNN batches of blocks, so the workers keep decoding while the CNN runs (a block
        # holds a few patches; too small a bound made the two stages take turns instead of overlapping).
        self.results = ctx.Queue(maxsize=4 * count + max(16, self.options.batch_size // 2))
        for index, item in enumerate(self.todo):
            self.tasks.put((index, str(item.path)))
        for _ in range(count):
            self.tasks.put(None)
        for worker in range(count):
            self._spawn(ctx, worker)
        self.ctx = ctx

    def _spawn(self, ctx: Any, worker: int) -> None:
        process = ctx.Process(
            target=frontend.frontend_worker,
            args=(
                worker,
                self.tasks,
                self.results,
                self.options.hop_seconds,
                os.getpid(),
                logging.getLogger().getEffectiveLevel(),
            ),
            daemon=True,
            name=f"audiotag-frontend-{worker}",
        )
        with frontend.worker_environment():
            process.start()
        self.processes[worker] = process
        self.current[worker] = None

    def _check_workers(self) -> None:
        """A worker that died without saying goodbye (e.g. killed for memory): fail its file, replace it."""
        for worker, process in list(self.processes.items()):
            if process.is_alive():
                continue
            del self.processes[worker]
            index = self.current.pop(worker, None)
            if index is not None and index in self.states:
                self._fail(
                    index,
                    f"{self.todo[index].path}: the decoding process died "
                    f"(exit code {process.exitcode}) while reading this file",
                )
                self._spawn(self.ctx, worker)

    def _stop_workers(self) -> None:
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
        for process in self.processes.values():
            process.join(timeout=5)
        self.processes.clear()
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()

    # --- messages ----------------------------------------------------------------------------------------
    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "start":
            _, worker, index = message
            self.current[worker] = index
            self.states[index] = _FileState(self.todo[index])
        elif kind == "block":
            _, index, block = message
            if index in self.states and len(block):
                self.pending.append((index, block))
                self.pending_patches += len(block)
                self.states[index].received += len(block)
        elif kind == "end":
            _, index, duration = message
            self._release(index)
            if index in self.states:
                self.states[index].duration = duration
                self._maybe_finish(index)
        elif kind == "error":
            _, index, reason = message
            self._release(index)
            self._fail(index, reason)
        elif kind == "exit":
            _, worker = message
            process = self.processes.pop(worker, None)
            if process is not None:
                process.join(timeout=5)
            self.current.pop(worker, None)

    def _release(self, index: int) -> None:
        for worker, current in self.current.items():
            if current == index:
                self.current[worker] = None

    def _fail(self, index: int, reason: str) -> None:
        item = self.todo[index]
        self.states.pop(index, None)
        self.errors.add(item.path, item.clip_id, reason)
        self.writer.skip(item.clip_id)
        self.report.failed += 1
        logger.warning("skipped %s", one_line(reason))
        self._advance()

    def _maybe_finish(self, index: int) -> None:
        state = self.states[index]
        if state.duration is None or state.embedded < state.received:
            return
        del self.states[index]
        raw = np.concatenate(state.raw) if state.raw else np.zeros((0, 128), np.float32)
        clip = ClipEmbeddings(
            clip_id=state.item.clip_id,
            embedding=self.model.postprocess(raw) if len(raw) else np.zeros((0, 128), np.uint8),
            raw=raw if self.options.raw else None,
            timestamps=_start_times(len(raw), self.options.hop_seconds),
            duration=state.duration,
        )
        self.writer.add(clip)
        self.report.done += 1
        self.report.audio_seconds += state.duration
        self._advance()

    def _advance(self) -> None:
        self.bar.update(1)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{self.report.audio_seconds / 3600 / elapsed:.3f} audio-h/s", refresh=False)

    # --- the CNN -----------------------------------------------------------------------------------------
    def _cnn_busy(self) -> bool:
        return len(self.in_flight) >= _BATCHES_IN_FLIGHT

    def _submit_batch(self) -> None:
        """Send up to batch_size pending patches (from one or several files) to the CNN thread."""
        pieces: list[tuple[int, np.ndarray]] = []
        taken = 0
        while self.pending and taken < self.options.batch_size:
            index, block = self.pending.popleft()
            if index not in self.states:  # the file failed after sending this block
                self.pending_patches -= len(block)
                continue
            room = self.options.batch_size - taken
            if len(block) > room:
                self.pending.appendleft((index, block[room:]))
                block = block[:room]
            pieces.append((index, block))
            taken += len(block)
            self.pending_patches -= len(block)
        if not pieces:
            return
        batch = np.concatenate([block for _, block in pieces])
        future = self.cnn.submit(self.model.embed, batch, taken)
        self.in_flight.append(([(index, len(block)) for index, block in pieces], future))

    def _collect(self, wait: bool = False) -> None:
        """Hand the embeddings of finished CNN batches (in submission order) to their files; with `wait`,
        block until the oldest batch is done."""
        while self.in_flight and (wait or self.in_flight[0][1].done()):
            pieces, future = self.in_flight.popleft()
            raw = future.result()
            wait = False
            start = 0
            for index, count in pieces:
                state = self.states.get(index)  # None: the file failed while its batch was running
                if state is not None:
                    state.raw.append(raw[start : start + count])
                    state.embedded += count
                start += count
            for index in dict.fromkeys(index for index, _ in pieces):
                if index in self.states:
                    self._maybe_finish(index)
            self.writer.checkpoint()

    def run(self) -> None:
        self._start_workers()
        try:
            while self.processes or self.pending_patches or self.in_flight:
                self._collect()
                if self.pending_patches >= self.options.batch_size:
                    if self._cnn_busy():
                        # A full batch waits already: stop reading the workers' queue until the CNN is
                        # free, so that the bounded queue holds the workers back and memory stays flat.
                        self._collect(wait=True)
                    self._submit_batch()
                    continue
                busy = self.pending_patches or self.in_flight
                try:
                    message = self.results.get(timeout=0.02 if busy else _IDLE_POLL_SECONDS)
                except queue.Empty:
                    if self.pending_patches and not self.in_flight:
                        self._submit_batch()  # the workers are behind: use the idle CNN on what is there
                    elif not self.processes:
                        self._collect(wait=True)
                    elif not busy:
                        self._check_workers()
                    continue
                self._handle(message)
            self._drain()
        finally:
            self.cnn.shutdown(wait=True, cancel_futures=True)
            self._stop_workers()
            self.bar.close()

    def _drain(self) -> None:
        """Messages still queued after the last worker said goodbye."""
        while True:
            try:
                self._handle(self.results.get_nowait())
            except queue.Empty:
                break
            while self.pending_patches:
                self._submit_batch()
                self._collect(wait=self._cnn_busy())
        while self.in_flight:
            self._collect(wait=True)
        for index in list(self.states):
            state = self.states[index]
            self._fail(index, f"{state.item.path}: decoding stopped before the end of the file")


_IDLE_POLL_SECONDS = 0.5
# One batch running in the CNN thread and one queued behind it, so the CNN never waits for this thread.
_BATCHES_IN_FLIGHT = 2


def _start_times(count: int, hop_seconds: float) -> np.ndarray:
    """Patch start times in seconds, float64 [count]."""
    import vggish

    return np.asarray(vggish.example_start_times(count, hop_seconds=hop_seconds), dtype=np.float64)


def extract(
    inputs: Sequence[AudioInput], model: Any, options: ExtractOptions, *, checkpoint_status: str = "unknown"
) -> ExtractReport:
    """Embed every input not yet finished in `options.out_dir`; returns counts (see ExtractReport).

    `model` is a loaded VGGish engine (vggish.load_embedder; `extract` uses "tf" unless told otherwise, the
    release's numbers). Only one run at a time may use an output folder (safeio.lock:
    FolderBusyError, or waiting with `options.wait`). Raises PipelineError for a folder made with other
    settings; a KeyboardInterrupt leaves every finished output durable (rerun to complete the rest). Worker
    processes
    are started with forkserver/spawn, which import the caller's main module: a script calling this must
    guard its entry point with `if __name__ == "__main__":`.
    """
    if options.format not in FORMATS:
        raise PipelineError(f"unknown format {options.format!r}; choose one of {', '.join(FORMATS)}")
    if options.batch_size < 1 or options.workers < 1 or options.files_per_shard < 1:
        raise PipelineError("--batch-size, --workers and --files-per-shard must be at least 1")
    started = time.monotonic()
    out_dir = options.out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"{out_dir}: exists and is not a folder")
    with FolderLock(out_dir, wait=options.wait):
        report = _extract_locked(inputs, model, options, checkpoint_status)
    report.wall_seconds = time.monotonic() - started
    return report


def _extract_locked(
    inputs: Sequence[AudioInput], model: Any, options: ExtractOptions, checkpoint_status: str
) -> ExtractReport:
    """extract() while holding the output folder's lock: no other run writes there meanwhile."""
    out_dir = options.out_dir
    clip_ids = [item.clip_id for item in inputs]
    _check_manifest(options, clip_ids, getattr(model, "engine", "tf"))
    remove_stale_temporaries(out_dir)
    writer = open_writer(
        options.format,
        out_dir,
        clip_ids,
        raw=options.raw,
        hop_seconds=options.hop_seconds,
        checkpoint_status=checkpoint_status,
        files_per_shard=options.files_per_shard,
        labels=options.labels,
    )
    errors = ErrorLog(out_dir, options.format)
    finished = writer.finished_ids()
    report = ExtractReport(total=len(inputs), errors_path=errors.path)
    todo = []
    for item in inputs:
        if item.clip_id in errors.failed:  # first: a TFRecord shard also counts its failed clips as finished
            report.failed_before += 1
            writer.skip(item.clip_id)
        elif item.clip_id in finished:
            report.skipped += 1
        else:
            todo.append(item)
    if report.skipped or report.failed_before:
        logger.info(
            "%s: %d files already finished, %d failed earlier (see %s); %d to do",
            out_dir,
            report.skipped,
            report.failed_before,
            errors.path,
            len(todo),
        )
    try:
        if todo:
            _Extraction(todo, model, writer, errors, options, report).run()
        unresolved = len(todo) - report.done - report.failed
        if unresolved:
            raise PipelineError(
                f"{unresolved} of {len(todo)} files were not processed because the decoding worker processes "
                "stopped (a script calling pipeline.extract must guard its entry point with "
                "`if __name__ == '__main__':`); finished outputs are kept, rerun to complete the rest"
            )
        writer.finalize()
    finally:
        writer.close()
    return report
