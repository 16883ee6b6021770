"""`audiotag extract`: VGGish embeddings of many files into a resumable output folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli_common import EXIT_OK, EXIT_SOME_FAILED, UserError, checkpoint_path, labels_for_tfrecord
from pipeline.cli_options import (
    Command,
    add_batch_size,
    add_cnn_threads,
    add_extract_io,
    add_labels_csv,
    add_vggish_engine,
    add_wait,
    positive_int,
)


def _extract_arguments(p: argparse.ArgumentParser) -> None:
    """INPUTs, the output folder and format, and the workers."""
    add_extract_io(p, ("tfrecord", "hdf5", "npz", "parquet"))
    p.add_argument("--workers", type=positive_int, default=None,
                   help="decoding processes (default: one per CPU core)")
    add_batch_size(p)
    p.add_argument("--files-per-shard", type=positive_int, default=256,
                   help="TFRecord / Parquet shard size (default %(default)s)")
    add_labels_csv(p, "labels CSV (id,labels) for the TFRecord labels")
    add_cnn_threads(p, "threads for the CNN (default: one per core)")
    add_vggish_engine(p, default="tf")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_wait(p)


def cmd_extract(args: argparse.Namespace) -> int:
    """`audiotag extract`: checks the inputs and the output folder, then embeds under the folder's lock."""
    from pipeline.inputs import collect_inputs
    from safeio.lock import FolderLock

    inputs = collect_inputs(args.inputs)
    if not inputs:
        raise UserError(f"no audio files found in {', '.join(args.inputs)}")
    labels = None
    if args.labels is not None:
        if args.format not in ("tfrecord", "parquet"):
            raise UserError("--labels fills the `labels` field of TFRecords and Parquet; it needs "
                            "--format tfrecord or parquet")
        labels = labels_for_tfrecord(args.labels, [item.clip_id for item in inputs])
    if args.output.exists() and not args.output.is_dir():
        raise UserError(f"{args.output}: exists and is not a folder")
    with FolderLock(args.output, wait=args.wait):  # refused at once, before the model is loaded
        return _run_extract(args, inputs, labels)


def _run_extract(args: argparse.Namespace, inputs: Sequence, labels: dict[str, list[int]] | None) -> int:
    from pipeline import frontend
    from pipeline.extract import ExtractOptions, default_cnn_threads, extract
    from vggish.checkpoint import checkpoint_status
    from vggish.engines import load_embedder

    checkpoint = checkpoint_path(args)
    frontend.prestart()  # the workers' warm-up overlaps loading the model
    options = ExtractOptions(
        out_dir=args.output,
        format=args.format,
        raw=args.raw,
        batch_size=args.batch_size,
        files_per_shard=args.files_per_shard,
        labels=labels,
        progress=not args.no_progress and sys.stderr.isatty(),
        wait=args.wait,
    )
    if args.workers is not None:
        options.workers = args.workers
    threads = args.cnn_threads or default_cnn_threads()
    with load_embedder(checkpoint, args.vggish_engine, intra_op_threads=threads, inter_op_threads=1) as model:
        report = extract(inputs, model, options, checkpoint_status=checkpoint_status(checkpoint))
    rate = report.audio_seconds / max(report.wall_seconds, 1e-9)
    print(
        f"audiotag extract: {report.done} files embedded ({report.audio_seconds / 3600:.3f} h of audio, "
        f"{rate:.1f}x real time), {report.skipped} already done, {report.failed} failed"
        + (f", {report.failed_before} failed in earlier runs" if report.failed_before else "")
        + f" -> {args.output}",
        file=sys.stderr,
    )
    if report.any_failed:
        print(f"audiotag extract: failed files and reasons: {report.errors_path}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


COMMANDS = (
    Command("extract", cmd_extract, _extract_arguments, help="VGGish embeddings for many files (resumable)",
            description="Embed audio files, directories (recursive) and list files (.txt/.lst/.list, one "
            "path per line). Rerun the same command to resume."),
)
