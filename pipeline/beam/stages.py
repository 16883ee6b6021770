"""The stages of beam-extract, each reusing the single-machine implementation: segment planning (vggish
header reading), decoding (vggish.iter_file_examples / iter_segment_examples), the VGGish RunInference
model handler, joining segments into clips with PCA postprocessing (vggish.Postprocessor), and records
(classifier.writers.sequence_example, pipeline.parquet.clip_row).

Elements between stages:
- inputs: (path, clip_id) strings.
- Segment: one part of a file, `num_patches` patches from `first_patch` (None: to the end of the file).
- patches: ((clip_id, segment index, patch index in the segment), float32 [96, 64]) for RunInference.
- parts of a clip, keyed by clip_id, gathered by a GroupByKey: ("patch", segment, index, raw float32 [128]),
  ("segment", segment, patch count, segment count, duration s, path) or ("error", path, reason).
- clips: pipeline.writers.ClipEmbeddings; failures: (path, clip_id, reason).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from pipeline.beam.sources import local_file
from pipeline.frontend import audio_duration, failure_reason
from pipeline.writers import ClipEmbeddings

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "audiotag"
PARTS = "parts"  # tag of the per-clip status parts of planning and decoding (to the join)
FAILURES = "failures"  # tag of the join's dead-letter output: (path, clip_id, reason)


@dataclass(frozen=True)
class Segment:
    """Patches [first_patch, first_patch + num_patches) of one file (num_patches None: to its end)."""

    path: str
    clip_id: str
    index: int
    count: int
    first_patch: int
    num_patches: int | None


def counter(name: str) -> Any:
    """A counter of this package's metrics namespace."""
    return Metrics.counter(METRICS_NAMESPACE, name)


def _failure(path: str, clip_id: str, reason: str, local: str | None = None) -> beam.pvalue.TaggedOutput:
    if local is not None and local != path:
        reason = reason.replace(local, path)  # name the input, not its temporary local copy
    return beam.pvalue.TaggedOutput(PARTS, (clip_id, ("error", path, reason)))


class PlanSegments(beam.DoFn):
    """(path, clip_id) -> Segments of at most `segment_patches` patches (one segment for most files), from
    the file's header; unreadable files go to the PARTS output as ("error", path, reason) parts."""

    def __init__(self, segment_patches: int, hop_seconds: float):
        self.segment_patches = segment_patches
        self.hop_seconds = hop_seconds

    def setup(self) -> None:
        self.files = counter("files_planned")
        self.segments = counter("segments")

    def process(self, element: tuple[str, str]) -> Iterator[Any]:
        from vggish.audio_io import audio_info
        from vggish.input import count_examples

        path, clip_id = element
        local = None
        try:
            with local_file(path) as local:
                info = audio_info(local)
        except Exception as exc:
            yield _failure(path, clip_id, failure_reason(path, exc), local)
            return
        patches = count_examples(info.frames, info.sample_rate, hop_seconds=self.hop_seconds)
        count = max(1, math.ceil(patches / self.segment_patches))
        self.files.inc()
        self.segments.inc(count)
        for index in range(count):
            last = index == count - 1
            yield Segment(path, clip_id, index, count, index * self.segment_patches,
                          None if last else self.segment_patches)


class DecodeSegment(beam.DoFn):
    """Segment -> its log-mel patches, one element per patch keyed (clip_id, segment, index), and one
    ("segment", ...) part saying how many there were (or an ("error", ...) part), on the PARTS output.
    A file of one segment is decoded exactly as `audiotag extract` does (vggish.iter_file_examples)."""

    def __init__(self, hop_seconds: float):
        self.hop_seconds = hop_seconds

    def setup(self) -> None:
        self.decode_msec = counter("decode_msec")
        self.patches = counter("patches")
        self.audio_seconds = Metrics.distribution(METRICS_NAMESPACE, "file_seconds")

    def process(self, segment: Segment) -> Iterator[Any]:
        import vggish
        from vggish.input import iter_segment_examples

        count = 0
        local = None
        try:
            with local_file(segment.path) as local:
                if segment.count == 1:
                    blocks = vggish.iter_file_examples(local, hop_seconds=self.hop_seconds)
                else:
                    blocks = iter_segment_examples(local, segment.first_patch, segment.num_patches,
                                                   hop_seconds=self.hop_seconds)
                for block in self._timed(blocks):
                    for example in block:
                        yield (segment.clip_id, segment.index, count), example
                        count += 1
                duration = audio_duration(local)
        except Exception as exc:
            yield _failure(segment.path, segment.clip_id, failure_reason(segment.path, exc), local)
            return
        self.patches.inc(count)
        if segment.index == 0:
            self.audio_seconds.update(int(duration))
        yield beam.pvalue.TaggedOutput(
            PARTS, (segment.clip_id, ("segment", segment.index, count, segment.count, duration, segment.path))
        )


    def _timed(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """The blocks, counting this thread's CPU time spent making them (not the downstream stages that
        run, fused, while this generator is suspended)."""
        iterator = iter(blocks)
        while True:
            started = time.thread_time()
            try:
                block = next(iterator)
            except StopIteration:
                return
            finally:
                self.decode_msec.inc(int(1000 * (time.thread_time() - started)))
            yield block


class VGGishModelHandler(ModelHandler):
    """RunInference model handler: VGGish loaded once per worker process (in load_model, never pickled),
    batches of `batch_size` log-mel patches float32 [96, 64] (from any files) -> raw embeddings float32
    [128]. `cnn_threads`: the CNN's threads in each worker process (TensorFlow: intra-op, one inter-op).
    `vggish_engine`: vggish.load_embedder's engine ("tf", as `extract`; "auto" or "lite": LiteRT on the
    checkpoint's cached conversion, except for a checkpoint copied from a URL, which has no cache: "tf")."""

    def __init__(self, checkpoint: str, *, batch_size: int, cnn_threads: int, vggish_engine: str = "tf"):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.cnn_threads = cnn_threads
        self.vggish_engine = vggish_engine

    def load_model(self) -> Any:
        from vggish.engines import load_embedder

        with local_file(self.checkpoint) as path:
            engine = self.vggish_engine if path == self.checkpoint else "tf"
            return load_embedder(path, engine, intra_op_threads=self.cnn_threads, inter_op_threads=1)

    def run_inference(self, batch: Sequence[np.ndarray], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[np.ndarray]:
        raw = model.embed(np.stack(batch), batch_size=max(len(batch), 1))
        return list(raw)

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(example.nbytes for example in batch)

    def get_metrics_namespace(self) -> str:
        return "VGGish"


def patch_part(keyed: tuple[tuple[str, int, int], np.ndarray]) -> tuple[str, tuple]:
    """RunInference output ((clip_id, segment, index), raw [128]) -> (clip_id, ("patch", segment, index,
    raw))."""
    (clip_id, segment, index), raw = keyed
    return clip_id, ("patch", segment, index, np.asarray(raw, np.float32))


class JoinClip(beam.DoFn):
    """(clip_id, parts) -> ClipEmbeddings (segments joined in order, PCA-postprocessed once for the whole
    clip), or (path, clip_id, reason) on the FAILURES output when any part failed."""

    def __init__(self, hop_seconds: float, keep_raw: bool):
        self.hop_seconds = hop_seconds
        self.keep_raw = keep_raw

    def setup(self) -> None:
        import vggish

        self.postprocessor = vggish.Postprocessor()
        self.done = counter("clips_done")
        self.failed = counter("clips_failed")
        self.audio_seconds = counter("audio_seconds")

    def process(self, element: tuple[str, Iterable[tuple]]) -> Iterator[Any]:
        import vggish

        clip_id, parts = element
        patches: list[tuple[int, int, np.ndarray]] = []
        segments: dict[int, tuple] = {}
        errors: list[tuple[str, str]] = []
        for part in parts:
            if part[0] == "patch":
                patches.append(part[1:])
            elif part[0] == "segment":
                segments[part[1]] = part[2:]
            else:
                errors.append(part[1:])
        paths = sorted({info[3] for info in segments.values()} | {path for path, _ in errors})
        if len(paths) > 1:
            errors = [(path, f"two inputs get the same clip id {clip_id!r}: {' and '.join(paths)}")
                      for path in paths]
        if not errors:
            counts = {index: info[0] for index, info in segments.items()}
            expected = next(iter(segments.values()))[1] if segments else 0
            received = {index: 0 for index in counts}
            for segment, _, _ in patches:
                received[segment] = received.get(segment, 0) + 1
            if not segments or len(segments) != expected or received != counts:
                errors = [(paths[0] if paths else "", f"{paths[0] if paths else clip_id}: incomplete "
                           f"result ({len(segments)} of {expected} segments)")]
        if errors:
            self.failed.inc()
            for path, reason in dict.fromkeys(errors):
                yield beam.pvalue.TaggedOutput(FAILURES, (path, clip_id, reason))
            return
        patches.sort(key=lambda item: (item[0], item[1]))
        raw = (np.stack([item[2] for item in patches]) if patches else np.zeros((0, 128), np.float32))
        duration = float(segments[0][2])
        self.done.inc()
        self.audio_seconds.inc(round(duration))
        yield ClipEmbeddings(
            clip_id=clip_id,
            embedding=self.postprocessor.postprocess(raw) if len(raw) else np.zeros((0, 128), np.uint8),
            raw=raw if self.keep_raw else None,
            timestamps=np.asarray(vggish.example_start_times(len(raw), self.hop_seconds), np.float64),
            duration=duration,
        )


class TFRecordRecord(beam.DoFn):
    """ClipEmbeddings -> serialized SequenceExample (the AudioSet release format `extract` writes)."""

    def __init__(self, labels: Mapping[str, Sequence[int]] | None):
        self.labels = dict(labels or {})

    def process(self, clip: ClipEmbeddings) -> Iterator[bytes]:
        from classifier.writers import sequence_example

        yield sequence_example(clip.clip_id, np.ascontiguousarray(clip.embedding, np.uint8),
                               self.labels.get(clip.clip_id, ()), 0.0, clip.duration)


class ParquetRow(beam.DoFn):
    """ClipEmbeddings -> one row of pipeline.parquet's schema."""

    def __init__(self, labels: Mapping[str, Sequence[int]] | None, keep_raw: bool):
        self.labels = dict(labels or {})
        self.keep_raw = keep_raw

    def process(self, clip: ClipEmbeddings) -> Iterator[dict[str, Any]]:
        from pipeline.parquet import clip_row

        yield clip_row(clip.clip_id, clip.embedding, clip.timestamps, clip.duration,
                       self.labels.get(clip.clip_id, ()), clip.raw if self.keep_raw else None)


def error_line(failure: tuple[str, str, str]) -> str:
    """(path, clip_id, reason) -> a line of the _errors-*.tsv files, as `extract`'s report writes it."""
    from pipeline.errorlog import format_error_line

    return format_error_line(*failure)
