"""`audiotag tag --stream` and `audiotag listen`: tag audio as it arrives, one JSON line per 0.96 s patch.

Each patch is embedded by VGGish as soon as its last sample has arrived (vggish.input.iter_block_examples,
the same front end as for files) and one line is written and flushed:

    {"type": "ready", "source", "hop", "window_patches", "head"}     models loaded, before any input is read
    {"type": "patch", "index", "start", "end", "window_start", "labels": [{"index","mid","name","score"}]}
    {"type": "event_start", "index", "mid", "name", "start", "end", "score"}    (with events)
    {"type": "event_end", ...the same keys...}                                   (with events)
    {"type": "end", "duration", "patches", "interrupted"}

`labels` are the top classes of the current window: the last 10 patches (fewer at the start), scored by the
head as `tag` scores the 10-patch windows of a file, through the tagger's label view (--classes, --rollup,
--min-score...). Times are seconds from the start of the stream.

Events: the rules of `tag --events` (classifier.events.EventTracker, the head's thresholds), fed with the
same calibrated timeline as a file's: a patch's score is its maximum over the 10-patch windows that cover
it (windows one patch apart, as `tag` slides them), so it is final once the window starting at it has been
scored, 9 patches (8.64 s) after the patch itself; the events therefore come 8.64 s after the sound and
equal the file's. `event_start` is written once an open event has lasted the head's `min_duration` (so every
start gets its end; its "end" and "score" are those so far), `event_end` when it is final (after the merge
gap). At the end of input the open events are closed and clipped to the duration, as for a file
(`event_cancel` if clipping leaves one too short). Memory is flat: only the last window, the running maxima
of 10 patches, the tracker's per-class state and the front end's buffers are kept.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import numpy as np
from threadpoolctl import threadpool_limits

from classifier.events import Event, EventTracker
from pipeline.audio_input import AudioStream
from pipeline.tagger import WINDOW_PATCHES, Embeddings, Label, Tagger, TagResult
from safeio.names import printable_name
from vggish import params
from vggish.input import example_start_times, iter_block_examples

logger = logging.getLogger(__name__)

PATCH_SECONDS = params.EXAMPLE_WINDOW_SECONDS  # one patch: 0.96 s
HOP_SECONDS = params.EXAMPLE_HOP_SECONDS  # patches follow each other without overlap
_TIME_DIGITS = 3


class StreamTagger:
    """Scores a stream patch by patch with a loaded Tagger: the current window's top labels, and events.

    push(examples float32 [n, 96, 64]) -> JSON-ready records; finish(duration s) -> the closing records.
    """

    def __init__(self, tagger: Tagger, top_k: int = 10, events: bool = False):
        self.tagger = tagger
        self.top_k = top_k
        self.patches = 0
        view = tagger.view
        self._view = view
        self._indices, self._mids, self._names = view.indices, view.mids, view.names
        self._flags = [tuple(c.flags()) for c in view.classes]
        self._window: collections.deque[np.ndarray] = collections.deque(maxlen=WINDOW_PATCHES)
        self._tracker = None
        if events:
            self._tracker = EventTracker(tagger.event_rules, self._mids, self._names, HOP_SECONDS,
                                         PATCH_SECONDS)
        # Timeline maxima of the patches not yet final, oldest first, float32 [C] each (head classes; the
        # label view is applied when a patch is final).
        self._pending: collections.deque[np.ndarray] = collections.deque()
        self._short_timeline: np.ndarray | None = None  # calibrated frames of the newest partial window
        self._started: set[int] = set()  # view columns whose open event has been reported

    def warm_up(self) -> None:
        """CNN calls on silence (batches of 1 and 2 patches), so that the first real patches are not slowed
        down by the engine's one-off set-up (TensorFlow's graph start-up, LiteRT's tensor allocation and
        weight packing); then one head call (numpy: nothing to trace, it only makes the first patch pay no
        lazy imports)."""
        silence = np.zeros((2, params.NUM_FRAMES, params.NUM_BANDS), np.float32)
        vggish_model = self.tagger.vggish
        embedding = vggish_model.postprocess(vggish_model.embed(silence))
        vggish_model.embed(silence[:1])
        self.tagger.head.predict_timeline([embedding[:1]])

    def push(self, examples: np.ndarray) -> list[dict[str, Any]]:
        """Embed and score the next patches (log-mel examples float32 [n, 96, 64]); their records."""
        if not len(examples):
            return []
        embedding = self.tagger.vggish.postprocess(self.tagger.vggish.embed(examples))
        windows = []
        for row in embedding:
            self._window.append(row)
            windows.append(np.stack(self._window))
        clip_probs, calibrated = self.tagger.head.predict_timeline(windows)
        window_scores = self._view.apply(clip_probs)
        records: list[dict[str, Any]] = []
        for scores, frames in zip(window_scores, calibrated, strict=True):
            index = self.patches
            start = index * HOP_SECONDS
            order = np.argsort(-scores, kind="stable")
            order = order[scores[order] >= self.tagger.min_score][: self.top_k]
            records.append({
                "type": "patch",
                "index": index,
                "start": round(start, _TIME_DIGITS),
                "end": round(start + PATCH_SECONDS, _TIME_DIGITS),
                "window_start": round((index + 1 - len(frames)) * HOP_SECONDS, _TIME_DIGITS),
                "labels": [self._label(k, scores[k]) for k in order],
            })
            self.patches += 1
            if self._tracker is not None:
                records += self._timeline_records(frames)
        return records

    def _label(self, column: int, score: float) -> dict[str, Any]:
        return Label(self._indices[column], self._mids[column], self._names[column], float(score),
                     self._flags[column]).as_dict()

    def _timeline_records(self, frames: np.ndarray) -> list[dict[str, Any]]:
        """Fold the newest window's calibrated frames [T, C] into the timeline; push the patch that became
        final (if any) to the tracker."""
        if len(frames) < WINDOW_PATCHES:  # a partial window counts only if the stream ends within it
            self._short_timeline = frames
            return []
        self._short_timeline = None
        if not self._pending:  # the first full window
            self._pending = collections.deque(frames)
        else:  # the pending patches are the window's first 9
            for j, row in enumerate(frames[:-1]):
                self._pending[j] = np.maximum(self._pending[j], row)
            self._pending.append(frames[-1])
        return self._push_final(self.patches - len(self._pending))

    def _push_final(self, patch: int) -> list[dict[str, Any]]:
        """Push the oldest pending patch (number `patch`) to the tracker; the event records it gives."""
        scores = self._view.apply(self._pending.popleft())
        records = []
        for event in self._tracker.push(scores, patch * HOP_SECONDS):
            if event.index in self._started:
                self._started.discard(event.index)
                records.append(self._event_record("event_end", event))
        rules = self._tracker.rules
        for event in self._tracker.open_events:
            if (event.index not in self._started and event.duration >= rules.min_duration - 1e-9
                    and event.score >= self.tagger.min_score):
                self._started.add(event.index)
                records.append(self._event_record("event_start", event))
        return records

    def _event_record(self, kind: str, event: Event, end: float | None = None) -> dict[str, Any]:
        item = event.to_dict() | {"index": self._indices[event.index]}
        if end is not None:
            item["end"] = round(end, _TIME_DIGITS)
        return {"type": kind, **item} | {flag: True for flag in self._flags[event.index]}

    def finish(self, duration: float, interrupted: bool = False) -> list[dict[str, Any]]:
        """End of input after `duration` seconds: the remaining patches' timeline, the open events closed and
        clipped to the duration (as classifier.events.detect_events does for a file), the `end` record."""
        records: list[dict[str, Any]] = []
        if self._tracker is not None:
            if self._short_timeline is not None:  # under 10 patches: the file's one window is the last one
                self._pending = collections.deque(self._short_timeline)
            while self._pending:
                records += self._push_final(self.patches - len(self._pending))
            min_duration = self._tracker.rules.min_duration
            for event in self._tracker.finish():
                end = min(event.end, max(duration, 1e-3))
                if event.index not in self._started:
                    continue
                kept = end > event.start and end - event.start >= min_duration - 1e-9
                records.append(self._event_record("event_end" if kept else "event_cancel", event, end))
            self._started.clear()
        records.append({"type": "end", "duration": round(duration, 6), "patches": self.patches,
                        "interrupted": interrupted})
        return records


def ready_record(tagger: Tagger, source: str) -> dict[str, Any]:
    """The first line: written once the models are loaded, before the input is read. The source and head
    names are valid UTF-8 (bytes that are not UTF-8 as `\\xNN`, safeio.names.printable_name)."""
    return {"type": "ready", "source": printable_name(source), "hop": HOP_SECONDS,
            "window_patches": WINDOW_PATCHES, "head": printable_name(getattr(tagger.head, "name", "head"))}


def write_records(out: TextIO, records: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, then flush (a reader sees each patch at once)."""
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


class _DeferredInterrupt:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt at once while the input is awaited, but waits while a block's
    patches are scored and written (`busy`): every patch counted in the `end` line then has its line. Active
    only in the main thread with Python's default SIGINT handler in place (signals go to the main thread)."""

    def __init__(self) -> None:
        self._busy = False
        self._pending = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self._busy:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        self._busy = True
        try:
            yield
        finally:
            self._busy = False
        if self._pending:
            raise KeyboardInterrupt


def run_stream(stream_tagger: StreamTagger, audio: AudioStream, out: TextIO) -> bool:
    """Tag `audio` to the end, writing records as they come; returns True when interrupted (Ctrl-C), after
    closing the events and writing the `end` line (a Ctrl-C during a block's scoring waits for its lines)."""
    interrupted = False
    guard = _DeferredInterrupt()
    try:
        # The numpy head scores one window at a time: tiny products that BLAS threads only slow down, and
        # they would spin against the CNN's threads (on a busy machine the stream fell seconds behind).
        with guard.installed(), threadpool_limits(limits=1, user_api="blas"):
            for examples in iter_block_examples(audio, audio.sample_rate, audio.label):
                with guard.busy():
                    write_records(out, stream_tagger.push(examples))
    except KeyboardInterrupt:
        interrupted = True
    write_records(out, stream_tagger.finish(audio.seconds, interrupted))
    return interrupted


def tag_whole(tagger: Tagger, audio: AudioStream, top_k: int = 10, *, keep_examples: bool = False,
              batch_size: int = 64) -> TagResult:
    """Tag a stream read to its end, as Tagger.tag tags a file (the same front end and CNN batches, so the
    same numbers as for the same audio in a file); the result's source is the stream's label."""
    examples = iter_block_examples(audio, audio.sample_rate, audio.label)
    kept = None
    if keep_examples:
        blocks = list(examples)
        kept = np.concatenate(blocks) if blocks else np.zeros((0, params.NUM_FRAMES, params.NUM_BANDS))
        raw = tagger.vggish.embed(kept, batch_size)
    else:
        raw = tagger.vggish.embed_stream(examples, batch_size)
    emb = Embeddings(raw=raw, embedding=tagger.vggish.postprocess(raw),
                     starts=np.asarray(example_start_times(len(raw)), np.float64), duration=audio.seconds,
                     examples=kept)
    return tagger.score(emb, source=audio.label, top_k=top_k)
