"""`audiotag beam-tag`: the classifier head over embeddings or audio as an Apache Beam pipeline.

SOURCES are TFRecords in the AudioSet release format (from `extract`, `beam-extract` or the release
itself), Parquet files of pipeline.parquet's schema, or audio inputs (embedded first by beam-extract's
stages). Output: `OUT/tags-<run>-SSSSS-of-NNNNN.jsonl`, one JSON object per clip with the schema of
`audiotag tag --format json` ({"file", "duration", "labels": [{"index", "mid", "name", "score"}]}), where
"file" is the clip id (`video_id`); clips longer than 10 patches are scored as `tag` does (max over
10-patch windows, hop --window-hop). Clips that cannot be scored go to `OUT/_errors-<run>-*.tsv`. A local
OUT is locked for the run, and temporary folders are cleaned up as beam-extract's are
(pipeline.beam.extract.locked_output, run_pipeline).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np

from pipeline.beam import stages
from pipeline.beam.extract import (
    SHARD_TEMPLATE,
    BeamReport,
    _join,
    _match,
    locked_output,
    make_pipeline_options,
    next_run_name,
    run_and_report,
)
from pipeline.beam.sources import is_url
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
EMBEDDING_SIZE = 128


@dataclass
class BeamTagOptions:
    """Settings of one beam-tag run (see BeamExtractOptions for the audio ones)."""

    out: str
    head: str | None = None
    engine: str = "numpy"
    top_k: int = 10
    window_hop: int = 1
    num_shards: int = 0
    batch_size: int = 128
    segment_seconds: float = 600.0
    cnn_threads: int | None = None
    vggish_engine: str = "auto"
    hop_seconds: float = 0.96
    beam_args: list[str] = field(default_factory=list)
    wait: bool = False


def source_kind(source: str) -> tuple[str, str]:
    """("tfrecord" | "parquet", file pattern) for embeddings, ("audio", source) otherwise. A folder holding
    .tfrecord (or .parquet) files is embeddings; any other folder is searched for audio."""
    lower = source.lower().rstrip("/")
    if lower.endswith(TFRECORD_SUFFIXES):
        return "tfrecord", source
    if lower.endswith(".parquet"):
        return "parquet", source
    folder = os.path.isdir(source) if not is_url(source) else not glob.has_magic(source)
    if folder:
        candidates = (("tfrecord", "*.tfrecord"), ("tfrecord", "*.tfrecords"), ("parquet", "*.parquet"))
        for kind, suffix in candidates:
            pattern = _join(source, suffix)
            if _match(pattern):
                return kind, pattern
    return "audio", source


def clip_of_record(record: bytes) -> tuple[str, np.ndarray, float]:
    """A serialized AudioSet SequenceExample -> (video_id, uint8 [N,128], end - start seconds)."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.SequenceExample.FromString(record)
    context = example.context.feature
    clip_id = context["video_id"].bytes_list.value[0].decode("utf-8")
    start = context["start_time_seconds"].float_list.value
    end = context["end_time_seconds"].float_list.value
    frames = [f.bytes_list.value[0] for f in example.feature_lists.feature_list["audio_embedding"].feature]
    return clip_id, _frames(clip_id, frames), (end[0] if end else 0.0) - (start[0] if start else 0.0)


def clip_of_row(row: dict[str, Any]) -> tuple[str, np.ndarray, float]:
    """A Parquet row (pipeline.parquet schema) -> (video_id, uint8 [N,128], end - start seconds)."""
    clip_id = row["video_id"]
    return clip_id, _frames(clip_id, row["embedding"]), row["end_time_seconds"] - row["start_time_seconds"]


def _frames(clip_id: str, frames: Sequence[bytes]) -> np.ndarray:
    bad = [len(f) for f in frames if len(f) != EMBEDDING_SIZE]
    if bad:
        raise PipelineError(f"clip {clip_id!r}: an audio_embedding frame is {bad[0]} bytes, not 128")
    return np.frombuffer(b"".join(frames), np.uint8).reshape(-1, EMBEDDING_SIZE)


class ScoreClips(beam.DoFn):
    """Batches of (clip_id, uint8 [N,128], duration s) -> JSON lines, scored as `audiotag tag` scores a clip
    (pipeline.tagger: the head over 10-patch windows, max over windows, top-k labels); the head is loaded
    once per worker in setup(), predicting with `engine` on `threads` threads (TF-Lite engines). Clips
    without embeddings go to the FAILURES output."""

    def __init__(self, head: str | None, top_k: int, window_hop: int, engine: str = "numpy",
                 threads: int | None = None):
        self.head_spec = head
        self.engine = engine
        self.threads = threads
        self.top_k = top_k
        self.window_hop = window_hop

    def setup(self) -> None:
        from pipeline.beam.sources import local_file
        from pipeline.tagger import class_table, load_head

        if self.head_spec is not None and is_url(self.head_spec):
            with local_file(self.head_spec) as path:
                self.head = load_head(path)
        else:
            self.head = load_head(self.head_spec)
        if self.engine != "numpy":
            self.head = self.head.with_engine(self.engine, threads=self.threads)
        self.mids, self.names = class_table(self.head)
        self.tagged = stages.counter("clips_tagged")
        self.failed = stages.counter("clips_failed")

    def process(self, batch: Sequence[tuple[str, np.ndarray, float]]) -> Iterator[Any]:
        from classifier.head_file import combine_windows
        from pipeline.formatting import clip_item
        from pipeline.tagger import WINDOW_PATCHES, top_labels, window_starts

        windows, owners = [], []
        for index, (_, embedding, _) in enumerate(batch):
            if len(embedding):
                starts = window_starts(len(embedding), self.window_hop)
                windows += [embedding[s : s + WINDOW_PATCHES] for s in starts]
                owners += [index] * len(starts)
        scores = self.head.predict_clips(windows) if windows else np.zeros((0, len(self.names)), np.float32)
        owner = np.asarray(owners, dtype=np.int64)
        for index, (clip_id, embedding, duration) in enumerate(batch):
            if not len(embedding):
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(
                    stages.FAILURES, ("", clip_id, f"clip {clip_id!r} has no embeddings to score"))
                continue
            clip_scores = combine_windows(scores[owner == index], getattr(self.head, "task", "multilabel"))
            labels = top_labels(clip_scores, self.mids, self.names, self.top_k)
            self.tagged.inc()
            yield json.dumps(clip_item(clip_id, float(duration), labels), ensure_ascii=False)


def _embedding_clips(p: Any, kind: str, pattern: str, index: int) -> Any:
    if kind == "tfrecord":
        return (p | f"Read TFRecords {index}" >> beam.io.ReadFromTFRecord(pattern)
                | f"Parse {index}" >> beam.Map(clip_of_record))
    columns = ["video_id", "start_time_seconds", "end_time_seconds", "embedding"]
    return (p | f"Read Parquet {index}" >> beam.io.ReadFromParquet(pattern, columns=columns)
            | f"Rows {index}" >> beam.Map(clip_of_row))


def beam_tag(sources: Sequence[str], checkpoint: Callable[[], str], options: BeamTagOptions) -> BeamReport:
    """Build and run the beam-tag pipeline; `checkpoint()` gives the VGGish checkpoint (for audio sources).
    A local output folder is locked for the run (FolderBusyError unless options.wait)."""
    with locked_output(options.out, options.wait):
        return _beam_tag_locked(sources, checkpoint, options)


def _beam_tag_locked(sources: Sequence[str], checkpoint: Callable[[], str],
                     options: BeamTagOptions) -> BeamReport:
    """beam_tag() while no other local run writes into the output folder."""
    from pipeline.beam.extract import audio_inputs, embed_clips, write_failures
    from pipeline.beam.sources import split_inputs

    started = time.monotonic()
    from pipeline.beam.extract import cnn_threads_for

    kinds = [source_kind(source) for source in sources]
    audio = [source for kind, source in kinds if kind == "audio"]
    run = next_run_name(options.out)
    pipeline_options, runner, workers = make_pipeline_options(options.beam_args)
    pipeline = beam.Pipeline(runner=runner, options=pipeline_options)
    clips = [_embedding_clips(pipeline, kind, pattern, i)
             for i, (kind, pattern) in enumerate(kinds) if kind != "audio"]
    failures = []
    if audio:
        local, urls = split_inputs(audio)
        if not local and not urls:
            raise PipelineError(f"no audio files found in {', '.join(audio)}")
        embedded = embed_clips(audio_inputs(pipeline, local, urls), checkpoint(),
                               hop_seconds=options.hop_seconds, segment_seconds=options.segment_seconds,
                               batch_size=options.batch_size,
                               cnn_threads=cnn_threads_for(options.cnn_threads, workers), keep_raw=False,
                               vggish_engine=options.vggish_engine)
        clips.append(embedded.clips | "Clips" >> beam.Map(lambda c: (c.clip_id, c.embedding, c.duration)))
        failures.append(embedded[stages.FAILURES])
    all_clips = clips | "All clips" >> beam.Flatten() if len(clips) > 1 else clips[0]
    score = ScoreClips(options.head, options.top_k, options.window_hop, options.engine,
                       cnn_threads_for(options.cnn_threads, workers))
    scored = (all_clips | "Spread clips" >> beam.Reshuffle()
              | "Batch clips" >> beam.BatchElements(min_batch_size=64, max_batch_size=512)
              | "Head" >> beam.ParDo(score)
              .with_outputs(stages.FAILURES, main="lines"))
    failures.append(scored[stages.FAILURES])
    (scored.lines | "Write JSON Lines" >> beam.io.WriteToText(
        _join(options.out, f"tags-{run}"), file_name_suffix=".jsonl", num_shards=options.num_shards,
        shard_name_template=SHARD_TEMPLATE))
    write_failures(failures | "All failures" >> beam.Flatten(), options.out, run)
    return run_and_report(pipeline, options.out, run, started, done_counter="clips_tagged",
                          failures_of_run_only=True)

