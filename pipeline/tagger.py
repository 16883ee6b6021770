"""`pipeline.Tagger`: AudioSet labels for a file or a waveform, loading VGGish and the classifier head once.

Clips of up to 10 patches (9.6 s) go through the head as one clip. Longer clips are scored by sliding a
10-patch window with a hop of `window_hop` patches (default 1, so every 10-patch stretch is seen; the last
window always ends at the last patch); the clip's score for a class is the maximum over windows, and the
per-window scores are returned too. Frame (per-patch) scores come from the head's frame-level output.
Clips shorter than one patch are zero-padded to one patch by vggish, which logs a warning.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

WINDOW_PATCHES = 10  # the head was trained on 10-patch (10 s) AudioSet clips


@dataclass(frozen=True)
class Label:
    """One scored class: index in the head's output, AudioSet mid (or the user label), name, probability."""

    index: int
    mid: str
    name: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "mid": self.mid, "name": self.name, "score": round(float(self.score), 6)}


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
    """Scores for one clip. `scores` float32 [C] (max over windows); `window_scores` float32 [W,C] with
    `window_starts` float64 [W] (s, each window spans 10 patches); `frame_scores` float32 [N,C] with
    `frame_starts` float64 [N] (s, each frame spans 0.96 s)."""

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

    @property
    def labels(self) -> list[Label]:
        """The clip's `top_k` best classes, sorted by score."""
        return self.top(self.top_k)

    def _labels(self, scores: np.ndarray, top_k: int | None) -> list[Label]:
        return top_labels(scores, self.mids, self.names, top_k)

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
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        head: Any = None,
        *,
        window_hop: int = 1,
        download: bool = True,
        intra_op_threads: int | None = None,
    ):
        import vggish
        from vggish.download import resolve_checkpoint

        if window_hop < 1:
            raise ValueError("window_hop must be at least 1 patch")
        self.window_hop = window_hop
        self.checkpoint = resolve_checkpoint(checkpoint, download=download)
        # The head (numpy) loads in a thread while TensorFlow imports and restores VGGish.
        with ThreadPoolExecutor(1, thread_name_prefix="load-head") as pool:
            loading = pool.submit(_load_head_and_classes, head)
            self.vggish = vggish.VGGish(self.checkpoint, intra_op_threads=intra_op_threads)
            try:
                self.head, (self.mids, self.names) = loading.result()
            except BaseException:
                self.vggish.close()
                raise

    def close(self) -> None:
        """Release the VGGish session."""
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
        x = emb.embedding
        n = len(x)
        starts = window_starts(n, self.window_hop)
        windows = [x[s : s + WINDOW_PATCHES] for s in starts]
        window_scores = np.asarray(self.head.predict_clips(windows), dtype=np.float32)
        frame_scores = _frame_scores(self.head, x)
        return TagResult(
            source=source,
            duration=emb.duration,
            scores=window_scores.max(axis=0),
            window_scores=window_scores,
            window_starts=emb.starts[starts] if n else np.zeros(1),
            frame_scores=frame_scores,
            frame_starts=emb.starts,
            mids=self.mids,
            names=self.names,
            embeddings=emb,
            top_k=top_k,
        )


def _frame_scores(head: Any, x: np.ndarray) -> np.ndarray:
    """Per-patch probabilities float32 [N,C]: the head's frame-level output, or (for heads without one,
    such as feature-level attention) the head applied to each patch as a one-patch clip."""
    if not len(x):
        return np.zeros((0, len(head.class_names)), np.float32)
    chunks = [x[s : s + WINDOW_PATCHES] for s in range(0, len(x), WINDOW_PATCHES)]
    try:
        per_chunk = head.predict_frames(chunks)
    except ValueError:
        return np.asarray(head.predict_clips([row[None] for row in x]), dtype=np.float32)
    return np.concatenate([np.asarray(f, np.float32) for f in per_chunk])


def file_examples(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """The front end alone (no model needed): log-mel examples float32 [N, 96, 64] of an audio file, streamed
    block by block as VGGish.embed_file does, and its duration in seconds. Raises vggish.AudioFileError."""
    import vggish
    from pipeline.frontend import audio_duration

    blocks = list(vggish.iter_file_examples(path))
    examples = np.concatenate(blocks) if blocks else np.zeros((0, 96, 64), np.float32)
    return examples, audio_duration(os.fspath(path))


def _load_head_and_classes(head: Any) -> tuple[Any, tuple[list[str], list[str]]]:
    loaded = load_head(head)
    return loaded, class_table(loaded)


def load_head(head: Any = None) -> Any:
    """A classifier head: None (the default shipped head), a shipped head's name, a saved head's path, or a
    head object (returned as is)."""
    from classifier import load_head as load_head_file
    from classifier import load_pretrained

    if head is None:
        return load_pretrained()
    if isinstance(head, (str, os.PathLike)):
        if Path(head).exists():
            return load_head_file(head)
        return load_pretrained(os.fspath(head))
    return head
