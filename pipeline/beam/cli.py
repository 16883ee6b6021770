"""Arguments and commands of `audiotag beam-extract` and `audiotag beam-tag` (pipeline.cli calls these).

Importing this module does not import Beam or TensorFlow; the commands do.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_SOME_FAILED = 3


def _positive_int(text: str) -> int:
    from pipeline.cli import _positive_int as parse

    return parse(text)


def _segment_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1.92:
        raise argparse.ArgumentTypeError(f"must be at least 1.92 (two patches): {text}")
    return value


def add_beam_extract_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.training import add_wait_argument

    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (local or a URL)")
    p.add_argument("--format", choices=("tfrecord", "parquet"), default="tfrecord")
    p.add_argument("--raw", action="store_true", help="also keep raw float32 embeddings (parquet)")
    p.add_argument("--labels", type=Path, metavar="CSV",
                   help="labels CSV (id,labels) for the records' labels")
    p.add_argument("--segment-seconds", type=_segment_seconds, default=600.0, metavar="S",
                   help="files longer than S seconds are split into segments of about S seconds that run on "
                   "different workers and are joined again (default 600)")
    p.add_argument("--num-shards", type=int, default=0, metavar="N",
                   help="output shards (default 0: the runner decides)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="CNN batch in patches (default 128)")
    p.add_argument("--cnn-threads", type=_positive_int, default=None,
                   help="TensorFlow threads per worker process (default: cores / local workers; 1 on a "
                   "cluster runner, which starts one worker process per core)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave out clips already in OUT (records or errors of earlier runs); new shards get "
                   "a new run prefix")
    add_wait_argument(p)


def add_beam_tag_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.training import add_engine_argument

    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="TFRecord / Parquet embeddings (file, folder, glob or URL) or audio inputs")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (local or a URL)")
    p.add_argument("--head", default=None, metavar="NAME|PATH",
                   help="classifier head (default: the shipped one)")
    add_engine_argument(p)
    p.add_argument("--top-k", type=_positive_int, default=10, help="labels per clip (default 10)")
    p.add_argument("--window-hop", type=_positive_int, default=1, metavar="PATCHES",
                   help="hop of the 10-patch window over long clips (default 1)")
    p.add_argument("--num-shards", type=int, default=0, metavar="N",
                   help="output shards (default 0: the runner decides)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="CNN batch in patches (default 128)")
    p.add_argument("--segment-seconds", type=_segment_seconds, default=600.0, metavar="S",
                   help="audio sources: segment length for long files (default 600)")
    p.add_argument("--cnn-threads", type=_positive_int, default=None,
                   help="audio sources: TensorFlow threads per worker process")


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


def beam_extract_command(args: argparse.Namespace, checkpoint: str,
                         labels_for: Callable[[Path, Sequence[str]], dict[str, list[int]]]) -> int:
    from pipeline.beam.extract import BeamExtractOptions, beam_extract
    from pipeline.beam.sources import is_url, split_inputs
    from pipeline.errors import PipelineError
    from safeio.lock import FolderLock

    local, urls = split_inputs(args.inputs)
    if not local and not urls:
        raise PipelineError(f"no audio files found in {', '.join(args.inputs)}")
    labels = labels_for(args.labels, [clip_id for _, clip_id in local]) if args.labels else None
    options = BeamExtractOptions(
        out=args.output, format=args.format, raw=args.raw, labels=labels,
        segment_seconds=args.segment_seconds, num_shards=args.num_shards, batch_size=args.batch_size,
        skip_existing=args.skip_existing, cnn_threads=args.cnn_threads, beam_args=list(args.beam_args),
    )
    # A local output folder takes one run at a time, as for extract: two runs would pick the same run prefix.
    # Object stores have no flock; there the user keeps runs apart.
    with contextlib.nullcontext() if is_url(str(args.output)) else FolderLock(args.output, wait=args.wait):
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
              f"{args.output}/errors-*.tsv", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def beam_tag_command(args: argparse.Namespace, checkpoint: Callable[[], str]) -> int:
    from pipeline.beam.tag import BeamTagOptions, beam_tag

    options = BeamTagOptions(
        out=args.output, head=args.head, engine=args.engine, top_k=args.top_k, window_hop=args.window_hop,
        num_shards=args.num_shards, batch_size=args.batch_size, segment_seconds=args.segment_seconds,
        cnn_threads=args.cnn_threads, beam_args=list(args.beam_args),
    )
    report = beam_tag(args.sources, checkpoint, options)
    _print_metrics("audiotag beam-tag", report.metrics)
    print(f"audiotag beam-tag: run {report.run}: {report.clips_done} clips tagged, {report.clips_failed} "
          f"failed ({report.wall_seconds:.1f} s) -> {args.output}", file=sys.stderr)
    if report.failures_in_out:
        return EXIT_SOME_FAILED
    return EXIT_OK
