"""`audiotag beam-extract` and `audiotag beam-tag`: their options and commands (pipeline.cli adds COMMANDS).

Options these commands do not know are Beam pipeline options (args.beam_args). Importing this module does not
import Beam or TensorFlow; the commands do.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.cli_common import EXIT_OK, EXIT_SOME_FAILED, checkpoint_path, labels_for_tfrecord
from pipeline.cli_options import (
    Command,
    add_batch_size,
    add_cnn_threads,
    add_engine,
    add_extract_io,
    add_head,
    add_labels_csv,
    add_output_folder,
    add_top_k,
    add_vggish_engine,
    add_wait,
    add_window_hop,
    at_least,
)


def _extract_arguments(p: argparse.ArgumentParser) -> None:
    """INPUTs, the output folder and format, segments, shards and the CNN."""
    add_extract_io(p, ("tfrecord", "parquet"), url=True)
    add_labels_csv(p, "labels CSV (id,labels) for the records' labels")
    _add_segment_seconds(p, "files longer than S seconds are split into segments of about S seconds that run "
                         "on different workers and are joined again")
    _add_num_shards(p)
    add_batch_size(p)
    add_cnn_threads(p, "TensorFlow threads per worker process (default: cores / local workers; 1 on a "
                    "cluster runner, which starts one worker process per core)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave out clips already in OUT (records or errors of earlier runs); new shards get "
                   "a new run prefix")
    add_wait(p)


def _tag_arguments(p: argparse.ArgumentParser) -> None:
    """SOURCEs, the output folder, the head and its output, segments, shards and the CNN."""
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="TFRecord / Parquet embeddings (file, folder, glob or URL) or audio inputs")
    add_output_folder(p, "output folder", metavar="OUT", url=True)
    add_head(p)
    add_engine(p)
    add_top_k(p, per="clip")
    add_window_hop(p, over="clips")
    _add_num_shards(p)
    add_batch_size(p)
    _add_segment_seconds(p, "audio sources: segment length for long files")
    add_cnn_threads(p, "audio sources: CNN threads per worker process")
    add_vggish_engine(p)
    add_wait(p)


def _add_segment_seconds(parser: argparse.ArgumentParser, help: str) -> None:
    """--segment-seconds S: how long files are split across workers (at least two patches)."""
    parser.add_argument("--segment-seconds", type=at_least(1.92, "two patches"), default=600.0, metavar="S",
                        help=f"{help} (default 600)")


def _add_num_shards(parser: argparse.ArgumentParser) -> None:
    """--num-shards N: output shards (0: the runner decides)."""
    parser.add_argument("--num-shards", type=int, default=0, metavar="N",
                        help="output shards (default 0: the runner decides)")


_COLLAPSED_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/([^/].*)$")


def checkpoint_location(args: argparse.Namespace, resolve: Callable[[argparse.Namespace], Path]) -> str:
    """The VGGish checkpoint for the workers: a URL (gs://..., given with --vggish-checkpoint or
    AUDIOTAG_VGGISH_CHECKPOINT) as it is, each worker copies it; else the locally resolved path."""
    for value in (getattr(args, "vggish_checkpoint", None), os.environ.get("AUDIOTAG_VGGISH_CHECKPOINT")):
        if value is None:
            continue
        text = str(value)
        collapsed = _COLLAPSED_URL.match(text)  # pathlib turned "gs://b/x" into "gs:/b/x"
        if "://" in text:
            return text
        if collapsed and not os.path.exists(text):
            return f"{collapsed.group(1)}://{collapsed.group(2)}"
        break
    return str(resolve(args))


def _print_metrics(command: str, metrics: dict[str, int]) -> None:
    if metrics:
        shown = ", ".join(f"{name}={value}" for name, value in sorted(metrics.items()))
        print(f"{command}: counters: {shown}", file=sys.stderr)


def beam_extract_command(args: argparse.Namespace) -> int:
    """`audiotag beam-extract`: runs the pipeline, then reports the run's counts and failures."""
    from pipeline.beam.extract import BeamExtractOptions, beam_extract
    from pipeline.beam.sources import split_inputs
    from pipeline.errors import PipelineError

    checkpoint = checkpoint_location(args, checkpoint_path)
    local, urls = split_inputs(args.inputs)
    if not local and not urls:
        raise PipelineError(f"no audio files found in {', '.join(args.inputs)}")
    labels = labels_for_tfrecord(args.labels, [clip_id for _, clip_id in local]) if args.labels else None
    options = BeamExtractOptions(
        out=args.output, format=args.format, raw=args.raw, labels=labels,
        segment_seconds=args.segment_seconds, num_shards=args.num_shards, batch_size=args.batch_size,
        skip_existing=args.skip_existing, cnn_threads=args.cnn_threads, beam_args=list(args.beam_args),
        wait=args.wait,
    )
    report = beam_extract(local, urls, checkpoint, options)
    _print_metrics("audiotag beam-extract", report.metrics)
    done = "?" if report.clips_done is None else report.clips_done
    failed = "?" if report.clips_failed is None else report.clips_failed
    workers = f"{report.workers} local workers" if report.workers else "cluster workers"
    print(f"audiotag beam-extract: run {report.run}: {done} files embedded, {failed} failed "
          f"({report.wall_seconds:.1f} s; {workers}, {report.cnn_threads} CNN threads each) -> {args.output}",
          file=sys.stderr)
    if report.failures_in_out:
        print(f"audiotag beam-extract: {report.failures_in_out} failed files are listed in "
              f"{args.output}/_errors*.tsv", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def beam_tag_command(args: argparse.Namespace) -> int:
    """`audiotag beam-tag`: runs the pipeline (the checkpoint is found only for audio sources)."""
    from pipeline.beam.tag import BeamTagOptions, beam_tag

    options = BeamTagOptions(
        out=args.output, head=args.head, engine=args.engine, top_k=args.top_k, window_hop=args.window_hop,
        num_shards=args.num_shards, batch_size=args.batch_size, segment_seconds=args.segment_seconds,
        cnn_threads=args.cnn_threads, vggish_engine=args.vggish_engine, beam_args=list(args.beam_args),
        wait=args.wait,
    )
    report = beam_tag(args.sources, lambda: checkpoint_location(args, checkpoint_path), options)
    _print_metrics("audiotag beam-tag", report.metrics)
    print(f"audiotag beam-tag: run {report.run}: {report.clips_done} clips tagged, {report.clips_failed} "
          f"failed ({report.wall_seconds:.1f} s) -> {args.output}", file=sys.stderr)
    if report.failures_in_out:
        return EXIT_SOME_FAILED
    return EXIT_OK


COMMANDS = (
    Command("beam-extract", beam_extract_command, _extract_arguments, beam_options=True,
            help="VGGish embeddings on Apache Beam (locally or on a cluster)",
            description="extract as an Apache Beam pipeline: local files, directories, globs, list files and "
            "gs:// s3:// hdfs:// URLs -> sharded TFRecords or Parquet."),
    Command("beam-tag", beam_tag_command, _tag_arguments, beam_options=True,
            help="AudioSet tags of embeddings or audio on Apache Beam -> JSON Lines",
            description="The classifier head over embeddings (TFRecords or Parquet from extract / "
            "beam-extract, or the AudioSet release) or over audio, as an Apache Beam pipeline -> sharded "
            "JSON Lines, one object per clip as `tag --format json`."),
)
