"""`audiotag tag --stream` and `audiotag listen`: tag audio as it arrives, one JSON line per 0.96 s patch.

Each patch is embedded by VGGish as soon as its last sample has arrived (vggish.input.iter_block_examples,
the same front end as for files) and one line is written and flushed:

    {"type": "ready", "source", "hop", "window_patches", "head"}     model loaded, before any input is read
    {"type": "patch", "index", "start", "end", "window_start", "labels": [{"index","mid","name","score"}]}
    {"type": "event_start", "index", "mid", "name", "start", "end", "score"}    (with events)
    {"type": "event_end", ...the same keys...}                                   (with events)
    {"type": "end", "duration", "patches", "interrupted"}

`labels` are the top classes of the current window: the last 10 patches (fewer at the start), scored by the
head as `tag` scores the 10-patch windows of a file. Events follow classifier.events.EventTracker fed with
the head's frame scores, the rules of `tag --events`: `event_start` is written once an open event has lasted
`min_duration` (so every start gets its end; its "end" and "score" are those so far), `event_end` when it is
final (after the merge gap). At the end of input, open events are closed and clipped to the duration, as
for a file (`event_cancel` if clipping leaves one too short). Memory is flat: only the last window, the
tracker's per-class state and the front end's buffers are kept.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Iterable
from typing import Any, TextIO

import numpy as np

from classifier.events import EventRules, EventTracker
from pipeline.audio_input import AudioStream
from pipeline.tagger import WINDOW_PATCHES, Embeddings, Tagger, TagResult, _frame_scores
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
        self._window: collections.deque[np.ndarray] = collections.deque(maxlen=WINDOW_PATCHES)
        self._tracker = None
        self._started: set[int] = set()  # classes whose open event has been reported
        if events:
            rules = EventRules.from_head(tagger.head)
            self._tracker = EventTracker(rules, tagger.mids, tagger.names, HOP_SECONDS, PATCH_SECONDS)

    def warm_up(self) -> None:
        """CNN and head calls on silence, so that the first real patches are not slowed down by TensorFlow's
        one-off set-up: two batch shapes each, after which the head's functions are traced for any shape
        (tf.function's reduce_retracing), and the CNN has met batches of 1 and 2 patches."""
        silence = np.zeros((WINDOW_PATCHES + 1, params.NUM_FRAMES, params.NUM_BANDS), np.float32)
        vggish_model, head = self.tagger.vggish, self.tagger.head
        embedding = vggish_model.postprocess(vggish_model.embed(silence[:2]))
        vggish_model.embed(silence[:1])
        head.predict_clips([embedding[:1]])
        head.predict_clips([embedding, embedding[:1]])
        _frame_scores(head, embedding[:1])
        _frame_scores(head, np.repeat(embedding[:1], WINDOW_PATCHES + 1, axis=0))  # two chunks: 10 + 1

    def push(self, examples: np.ndarray) -> list[dict[str, Any]]:
        """Embed and score the next patches (log-mel examples float32 [n, 96, 64]); their records."""
        if not len(examples):
            return []
        embedding = self.tagger.vggish.postprocess(self.tagger.vggish.embed(examples))
        windows = []
        for row in embedding:
            self._window.append(row)
            windows.append(np.stack(self._window))
        window_scores = np.asarray(self.tagger.head.predict_clips(windows), np.float32)
        frame_scores = _frame_scores(self.tagger.head, embedding) if self._tracker else None
        records: list[dict[str, Any]] = []
        for i, scores in enumerate(window_scores):
            index = self.patches
            start = index * HOP_SECONDS
            order = np.argsort(-scores, kind="stable")[: self.top_k]
            records.append({
                "type": "patch",
                "index": index,
                "start": round(start, _TIME_DIGITS),
                "end": round(start + PATCH_SECONDS, _TIME_DIGITS),
                "window_start": round(max(0, index + 1 - WINDOW_PATCHES) * HOP_SECONDS, _TIME_DIGITS),
                "labels": [self._label(int(c), scores[c]) for c in order],
            })
            if frame_scores is not None:
                records += self._event_records(frame_scores[i], start)
            self.patches += 1
        return records

    def _label(self, index: int, score: float) -> dict[str, Any]:
        return {"index": index, "mid": self.tagger.mids[index], "name": self.tagger.names[index],
                "score": round(float(score), 6)}

    def _event_records(self, scores: np.ndarray, start: float) -> list[dict[str, Any]]:
        tracker = self._tracker
        records = []
        for event in tracker.push(scores, start):
            self._started.discard(event.index)
            records.append({"type": "event_end", **event.to_dict()})
        for event in tracker.open_events:
            if event.index not in self._started and event.duration >= tracker.rules.min_duration - 1e-9:
                self._started.add(event.index)
                records.append({"type": "event_start", **event.to_dict()})
        return records

    def finish(self, duration: float, interrupted: bool = False) -> list[dict[str, Any]]:
        """End of input after `duration` seconds: close the open events (clipped to the duration, as
        classifier.events.detect_events does for a file) and the `end` record."""
        records: list[dict[str, Any]] = []
        if self._tracker is not None:
            min_duration = self._tracker.rules.min_duration
            for event in self._tracker.finish():
                end = min(event.end, duration)
                clipped = {**event.to_dict(), "end": round(end, _TIME_DIGITS)}
                kept = end > event.start and end - event.start >= min_duration - 1e-9
                records.append({"type": "event_end" if kept else "event_cancel", **clipped})
            self._started.clear()
        records.append({"type": "end", "duration": round(duration, 6), "patches": self.patches,
                        "interrupted": interrupted})
        return records


def ready_record(tagger: Tagger, source: str) -> dict[str, Any]:
    """The first line: written once the models are loaded, before the input is read."""
    return {"type": "ready", "source": source, "hop": HOP_SECONDS, "window_patches": WINDOW_PATCHES,
            "head": getattr(tagger.head, "name", "head")}


def write_records(out: TextIO, records: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, then flush (a reader sees each patch at once)."""
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


def run_stream(stream_tagger: StreamTagger, audio: AudioStream, out: TextIO) -> bool:
    """Tag `audio` to the end, writing records as they come; returns True when interrupted (Ctrl-C), after
    closing the events and writing the `end` line."""
    interrupted = False
    try:
        for examples in iter_block_examples(audio, audio.sample_rate, audio.label):
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
