"""`pipeline.Tagger`: AudioSet labels for a file or a waveform, loading VGGish and the classifier head once.

Clips of up to 10 patches (9.6 s) go through the head as one clip. Longer clips are scored by sliding a
10-patch window with a hop of `window_hop` patches (default 1, so every 10-patch stretch is seen; the last
window always ends at the last patch); the clip's score for a class is the maximum over windows (for a
multiclass head, the mean of the windows' distributions: classifier.head_file.combine_windows), and the
per-window scores are returned too. Frame (per-patch) scores come from the head's frame-level output.
Clips shorter than one patch are zero-padded to one patch by vggish, which logs a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vggish.params import EMBEDDING_SIZE

if TYPE_CHECKING:
    from classifier.events import Event, EventRules
    from classifier.labelview import LabelView

logger = logging.getLogger(__name__)

WINDOW_PATCHES = 10  # the head was trained on 10-patch (10 s) AudioSet clips


@dataclass(frozen=True)
class Label:
    """One scored class: index in the head's output (-1: an ontology parent added by roll-up), AudioSet mid
    (or the user label), name, probability, and its flags ("rolled_up", "abstract", "blacklisted")."""

    index: int
    mid: str
    name: str
    score: float
    flags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        item = {"index": self.index, "mid": self.mid, "name": self.name, "score": round(float(self.score), 6)}
        return item | {flag: True for flag in self.flags}


@dataclass
class Embeddings:
    """VGGish output for one clip: raw float32 [N,128], postprocessed uint8 [N,128], patch starts float64 [N]
    (seconds), the clip's duration (seconds) and, when asked for, its log-mel patches float32 [N,96,64]."""

    raw: np.ndarray
    embedding: np.ndarray
    starts: np.ndarray
    duration: float
    examples: np.ndarray | None = None


@dataclass
class TagResult:
    """Scores for one clip, over the classes of the tagger's label view (all head classes by default).

    `scores` float32 [K] (max over windows; multiclass heads: their mean); `window_scores` float32 [W,K]
    with `window_starts` float64 [W] (s, each window spans 10 patches); `frame_scores` float32 [N,K] with
    `frame_starts` float64 [N] (s, each frame spans 0.96 s; calibrated: comparable across clips and files);
    `events` the sound events (seconds of the file, sorted by start); `indices`/`mids`/`names` [K] the
    column classes (index: in the head's output, -1 for ontology parents added by roll-up); labels below
    `min_score` are left out of the lists; `task` the head's (classifier.head_file.TASKS: "multiclass"
    scores are one distribution, the top label is the clip's class)."""

    source: str
    duration: float
    scores: np.ndarray
    window_scores: np.ndarray
    window_starts: np.ndarray
    frame_scores: np.ndarray
    frame_starts: np.ndarray
    mids: list[str]
    names: list[str]
    embeddings: Embeddings = field(repr=False)
    top_k: int = 10
    events: list[Event] = field(default_factory=list)
    indices: list[int] | None = None
    flags: list[tuple[str, ...]] | None = None
    min_score: float = 0.0
    task: str = "multilabel"

    @property
    def labels(self) -> list[Label]:
        """The clip's `top_k` best classes, sorted by score."""
        return self.top(self.top_k)

    def top_columns(self, scores: np.ndarray, top_k: int | None) -> np.ndarray:
        """Columns of `scores` [K] sorted by score, at least `min_score`, the first `top_k` (all: None)."""
        order = np.argsort(-scores, kind="stable")
        order = order[scores[order] >= self.min_score]
        return order[: top_k if top_k else None]

    def _labels(self, scores: np.ndarray, top_k: int | None) -> list[Label]:
        indices = self.indices if self.indices is not None else range(len(self.mids))
        flags = self.flags or [()] * len(self.mids)
        return [Label(int(indices[k]), self.mids[k], self.names[k], float(scores[k]), flags[k])
                for k in self.top_columns(scores, top_k)]

    def top(self, top_k: int | None = 10) -> list[Label]:
        """The clip's classes sorted by score (all of them when top_k is None)."""
        return self._labels(self.scores, top_k)

    def frame_top(self, frame: int, top_k: int | None = 10) -> list[Label]:
        """The classes of one patch sorted by score."""
        return self._labels(self.frame_scores[frame], top_k)


def top_labels(scores: np.ndarray, mids: list[str], names: list[str], top_k: int | None) -> list[Label]:
    """The `top_k` best classes of scores float [C] (all when top_k is None), best first, ties by index."""
    order = np.argsort(-scores, kind="stable")[: top_k if top_k else None]
    return [Label(int(i), mids[i], names[i], float(scores[i])) for i in order]


def window_starts(num_patches: int, hop: int = 1, window: int = WINDOW_PATCHES) -> np.ndarray:
    """First patch of each sliding window, int [W]; one window at 0 for clips of up to `window` patches."""
    if num_patches <= window:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, num_patches - window + 1, hop))
    if starts[-1] != num_patches - window:
        starts.append(num_patches - window)
    return np.asarray(starts, dtype=np.int64)


def class_table(head: Any) -> tuple[list[str], list[str]]:
    """(mids, names) of the head's outputs: AudioSet mids when its classes are AudioSet's, else the names."""
    names = list(head.class_names)
    from classifier.labels import load_class_labels

    audioset = load_class_labels()
    if names == list(audioset.names):
        return list(audioset.mids), names
    return names, names


class Tagger:
    """Loads VGGish and a classifier head once; tags, embeds and scores frames of files or waveforms.

    checkpoint: a VGGish checkpoint path (None: vggish.download.resolve_checkpoint — the option, the env
    variable, the cache, else a download). head: a shipped head's name, a path to a user-trained head, or
    a loaded head object (None: the default shipped head). window_hop: patches between sliding windows.
    engine: how the head predicts (classifier.lite.ENGINES; "lite-int8" is the fastest, "numpy" exact).
    vggish_engine: what runs the VGGish CNN (vggish.params.ENGINES): "auto" (LiteRT on the checkpoint's
    cached conversion, built on first use; TensorFlow when LiteRT cannot be used), "lite" or "tf".
    intra_op_threads: the CNN's threads (TensorFlow's intra-op pool, or LiteRT's interpreter threads).

    Label control (applies to clip labels, windows, frames and events alike; see classifier.labelview):
    rollup adds ontology parents (a parent scores the max of its own and its descendants' scores);
    classes keeps only the given names / MIDs / "@file" lists; exclude removes some; min_score leaves
    labels and events scoring below it out of the lists. Events use the head's stored thresholds
    (classifier.events.EventRules.from_head; 0.5 with a warning when it has none).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        head: Any = None,
        *,
        window_hop: int = 1,
        download: bool = True,
        intra_op_threads: int | None = None,
        rollup: bool = False,
        classes: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        min_score: float = 0.0,
        engine: str = "numpy",
        vggish_engine: str = "auto",
    ):
        from classifier.events import EventRules
        from classifier.labelview import LabelView
        from vggish.download import resolve_checkpoint
        from vggish.engines import check_engine, load_embedder

        check_engine(vggish_engine)
        if window_hop < 1:
            raise ValueError("window_hop must be at least 1 patch")
        self.window_hop = window_hop
        self.min_score = float(min_score)
        self.checkpoint = resolve_checkpoint(checkpoint, download=download)
        # The head (numpy) loads in a thread while VGGish loads (TensorFlow: imports and restores).
        with ThreadPoolExecutor(1, thread_name_prefix="load-head") as pool:
            loading = pool.submit(_load_head_and_classes, head, engine)
            self.vggish = load_embedder(self.checkpoint, vggish_engine, intra_op_threads=intra_op_threads)
            try:
                self.head, (self.mids, self.names) = loading.result()
                self.view = LabelView(self.mids, self.names, rollup=rollup, classes=classes, exclude=exclude)
                self.event_rules = view_rules(EventRules.from_head(self.head), self.view)
            except BaseException:
                self.vggish.close()
                raise

    @property
    def task(self) -> str:
        """The head's task (classifier.head_file.TASKS)."""
        return getattr(self.head, "task", "multilabel")

    def close(self) -> None:
        """Release VGGish (its TensorFlow session or LiteRT interpreter)."""
        self.vggish.close()

    def __enter__(self) -> Tagger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def embed(
        self,
        source: str | os.PathLike[str] | np.ndarray,
        sample_rate: int | None = None,
        *,
        keep_examples: bool = False,
        batch_size: int = 64,
    ) -> Embeddings:
        """VGGish embeddings of a file path, or of a waveform ([n] or [n, channels]) at `sample_rate` Hz."""
        import vggish
        from pipeline.frontend import audio_duration

        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise ValueError("a waveform needs its sample_rate")
            examples = vggish.waveform_to_examples(source, sample_rate)
            return self.embed_examples(examples, source.shape[0] / float(sample_rate),
                                       keep_examples=keep_examples, batch_size=batch_size)
        if keep_examples:
            return self.embed_examples(*file_examples(source), keep_examples=True, batch_size=batch_size)
        raw, starts = self.vggish.embed_file(source, batch_size=batch_size)
        return Embeddings(raw=raw, embedding=self.vggish.postprocess(raw),
                          starts=np.asarray(starts, np.float64), duration=audio_duration(os.fspath(source)))

    def embed_examples(
        self, examples: np.ndarray, duration: float, *, keep_examples: bool = False, batch_size: int = 64
    ) -> Embeddings:
        """VGGish embeddings of log-mel examples float32 [N, 96, 64] (e.g. from :func:`file_examples`) of a
        clip lasting `duration` seconds."""
        import vggish

        raw = self.vggish.embed(examples, batch_size=batch_size)
        return Embeddings(
            raw=raw,
            embedding=self.vggish.postprocess(raw),
            starts=np.asarray(vggish.example_start_times(len(raw)), np.float64),
            duration=float(duration),
            examples=examples if keep_examples else None,
        )

    def frame_scores(
        self, source: str | os.PathLike[str] | np.ndarray, sample_rate: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-patch class probabilities float32 [N,C] and patch start times float64 [N] (seconds)."""
        result = self.tag(source, sample_rate)
        return result.frame_scores, result.frame_starts

    def tag(
        self,
        source: str | os.PathLike[str] | np.ndarray,
        sample_rate: int | None = None,
        top_k: int = 10,
        *,
        keep_examples: bool = False,
    ) -> TagResult:
        """Score a clip (a path, or a waveform [n] / [n, channels] at `sample_rate` Hz): `result.labels` are
        its `top_k` best classes, `result.top(k)` any other number of them. `keep_examples` keeps the log-mel
        patches in `result.embeddings.examples` (for plotting)."""
        emb = self.embed(source, sample_rate, keep_examples=keep_examples)
        name = "<waveform>" if isinstance(source, np.ndarray) else os.fspath(source)
        return self.score(emb, source=name, top_k=top_k)

    def score(self, emb: Embeddings, source: str = "<embeddings>", top_k: int = 10) -> TagResult:
        """Head scores (clip, windows, frames) for embeddings already computed."""
        from classifier.head_file import combine_windows
        from classifier.timeline import merge_windows

        x = emb.embedding
        n = len(x)
        starts = window_starts(n, self.window_hop)
        # The timeline uses windows at most 10 patches apart, so that every patch is covered.
        frame_windows = starts if self.window_hop <= WINDOW_PATCHES else window_starts(n, WINDOW_PATCHES)
        windows = [x[s : s + WINDOW_PATCHES] for s in frame_windows]
        clip_probs, calibrated = self.head.predict_timeline(windows)
        frame_scores = merge_windows(calibrated, frame_windows, n)
        if frame_windows is starts:
            window_scores = np.asarray(clip_probs, np.float32)
        else:
            window_scores = np.asarray(self.head.predict_clips([x[s : s + WINDOW_PATCHES] for s in starts]),
                                       dtype=np.float32)
        from classifier.events import Event, detect_events

        view = self.view
        frame_scores = view.apply(frame_scores)
        events = [
            Event(view.indices[e.index], e.mid, e.name, e.start, e.end, e.score)
            for e in detect_events(frame_scores, emb.starts, self.event_rules, view.mids, view.names,
                                   duration=max(emb.duration, 1e-3))
            if e.score >= self.min_score
        ]
        return TagResult(
            source=source,
            duration=emb.duration,
            scores=view.apply(combine_windows(window_scores, self.task)),
            window_scores=view.apply(window_scores),
            window_starts=emb.starts[starts],
            frame_scores=frame_scores,
            frame_starts=emb.starts,
            mids=view.mids,
            names=view.names,
            embeddings=emb,
            top_k=top_k,
            events=events,
            indices=view.indices,
            flags=[tuple(c.flags()) for c in view.classes],
            min_score=self.min_score,
            task=self.task,
        )


def view_rules(rules: EventRules, view: LabelView) -> EventRules:
    """The head's event rules for the columns of a label view: a head class keeps its thresholds; a parent
    added by roll-up takes the median of its descendants' thresholds."""
    from classifier.events import EventRules

    onset, offset = [], []
    for k, info in enumerate(view.classes):
        if info.index >= 0:  # a head class: its own (np.median of one value would cost a numpy.ma import)
            onset.append(float(rules.onset[info.index]))
            offset.append(float(rules.offset[info.index]))
            continue
        cols = view.sources(k)
        onset.append(float(np.median(rules.onset[cols])))
        offset.append(float(np.median(rules.offset[cols])))
    return EventRules(np.asarray(onset, np.float32), np.minimum(offset, onset).astype(np.float32),
                      rules.min_duration, rules.merge_gap)


def file_examples(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """The front end alone (no model needed): log-mel examples float32 [N, 96, 64] of an audio file, streamed
    block by block as VGGish.embed_file does, and its duration in seconds. Raises vggish.AudioFileError."""
    import vggish
    from pipeline.frontend import audio_duration

    blocks = list(vggish.iter_file_examples(path))
    examples = np.concatenate(blocks) if blocks else np.zeros((0, 96, 64), np.float32)
    return examples, audio_duration(os.fspath(path))


def _load_head_and_classes(head: Any, engine: str = "numpy") -> tuple[Any, tuple[list[str], list[str]]]:
    """The head, warmed up (one dummy prediction of clip and frame scores, so that the first file's does not
    pay for BLAS start-up and first use of the weights, nor for compiling a TF-Lite engine), and its class
    table."""
    loaded = load_head(head, engine)
    loaded.predict_timeline([np.full((WINDOW_PATCHES, EMBEDDING_SIZE), 128, np.uint8)])
    return loaded, class_table(loaded)


def load_head(head: Any = None, engine: str = "numpy") -> Any:
    """A classifier head predicting with `engine` (classifier.lite.ENGINES): None (the default shipped
    head), a shipped head's name, a saved head's path, or a head object (returned as is for "numpy")."""
    from classifier import load_head as load_head_file
    from classifier import load_pretrained

    if head is None:
        return load_pretrained(engine=engine)
    if isinstance(head, (str, os.PathLike)):
        if Path(head).exists():
            return load_head_file(head, engine)
        return load_pretrained(os.fspath(head), engine)
    return head if engine == "numpy" else head.with_engine(engine)
