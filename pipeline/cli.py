"""The `audiotag` command line: tag, extract, beam-extract, beam-tag, train, evaluate, pack-features,
export, download-models, info.

Exit status: 0 success; 1 an error (bad option value, unreadable checkpoint, missing input...), reported as
one line on stderr; 2 a command-line usage error; 3 the run finished but some input files failed (listed
on stderr, or in OUT/errors.tsv for extract); 130 interrupted (Ctrl-C).

Heavy modules (TensorFlow, vggish, classifier) are imported inside the commands: importing this module is
cheap, and extraction worker processes can import it without TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.info import package_version
from safeio.oserrors import describe_os_error, is_environment_error

logger = logging.getLogger("audiotag")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix, reported as one line."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exception classes whose message is meant for the user (imported here: importing cli stays cheap)."""
    from classifier.labels import LabelsError
    from classifier.pretrained import HeadError
    from classifier.readers import ReaderError
    from classifier.train import TrainError
    from pipeline.errors import PipelineError
    from safeio.lock import FolderBusyError
    from vggish import AudioFileError, CheckpointError, PCAParamsError
    from vggish.download import DownloadError

    return (UserError, PipelineError, AudioFileError, CheckpointError, PCAParamsError, DownloadError,
            LabelsError, ReaderError, HeadError, TrainError, FolderBusyError, FileNotFoundError,
            PermissionError, IsADirectoryError, NotADirectoryError)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (DownloadError: the problem, the URL and the manual route)."""
    problem = getattr(exc, "problem", None)
    url = getattr(exc, "url", None)
    if type(exc).__name__ == "DownloadError" and problem and url:
        return (
            f"{problem} (URL {url}; download it by hand and pass --vggish-checkpoint PATH or set "
            "AUDIOTAG_VGGISH_CHECKPOINT)"
        )
    if isinstance(exc, OSError) and (exc.filename is not None or is_environment_error(exc)):
        return describe_os_error(exc)
    return " ".join(str(exc).split()) or type(exc).__name__


def _checkpoint(args: argparse.Namespace, *, download: bool = True) -> Path:
    from vggish.download import resolve_checkpoint

    return resolve_checkpoint(args.vggish_checkpoint, download=download, progress=sys.stderr.isatty())


# --- tag ------------------------------------------------------------------------------------------
def _plot_path(base: Path, source: str, count: int) -> Path:
    """`--plot OUT.png` for one file; `OUT-<file stem>.png` beside it for each of several files."""
    if count == 1:
        return base
    return base.with_name(f"{base.stem}-{Path(source).stem}{base.suffix or '.png'}")


def _raw_format(args: argparse.Namespace):
    """--raw-format/--rate/--channels as a RawFormat (None without --raw-format), checked against FILEs."""
    from pipeline.audio_input import RawFormat

    if args.raw_format is None:
        if args.rate is not None or args.channels is not None:
            raise UserError("--rate and --channels describe raw PCM: give --raw-format too")
        return None
    if "-" not in args.files:
        raise UserError("--raw-format describes standard input: give - as the FILE")
    if args.rate is None:
        raise UserError("--raw-format needs --rate (samples per second)")
    return RawFormat(args.raw_format, args.rate, args.channels or 1)


def _tagger(args: argparse.Namespace):
    """The Tagger of `tag` (head, window hop, label view)."""
    from pipeline.tagger import Tagger

    return Tagger(_checkpoint(args), head=args.head, window_hop=args.window_hop, rollup=args.rollup,
                  classes=args.classes, exclude=args.exclude or (), min_score=args.min_score,
                  engine=args.engine)


def cmd_tag(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    import vggish
    from pipeline.audio_input import open_input
    from pipeline.formatting import RENDERERS, to_audacity
    from pipeline.tagger import file_examples
    from safeio.atomic import atomic_output

    if args.top_k < 1:
        raise UserError("--top-k must be at least 1")
    if args.files.count("-") > 1:
        raise UserError("standard input (-) can be read only once")
    raw = _raw_format(args)
    if args.stream:
        return _tag_stream(args, raw)
    audacity = args.format == "audacity"
    if args.output is not None and not audacity:
        raise UserError("--output is for --format audacity (other formats go to stdout)")
    if audacity and args.output is None and len(args.files) > 1:
        raise UserError("--format audacity with several files needs --output OUT.txt (writes OUT-<file>.txt)")
    keep_examples = args.plot is not None or args.html is not None
    # The first file's front end (decode, resample, log-mel) runs while TensorFlow imports and loads VGGish
    # (not standard input: it is read once, by the loop below).
    with ThreadPoolExecutor(1, thread_name_prefix="first-file") as pool:
        first = pool.submit(file_examples, args.files[0]) if args.files[0] != "-" else None
        tagger = _tagger(args)
    results, failed = [], 0
    try:
        for i, path in enumerate(args.files):
            try:
                if path == "-":
                    from pipeline.stream import tag_whole

                    result = tag_whole(tagger, open_input(path, raw), keep_examples=keep_examples)
                elif i == 0 and first is not None:
                    emb = tagger.embed_examples(*first.result(), keep_examples=keep_examples)
                    result = tagger.score(emb, source=path)
                else:
                    result = tagger.tag(path, keep_examples=keep_examples)
            except (vggish.AudioFileError, OSError) as exc:
                failed += 1
                print(f"audiotag: {_one_line(exc)}", file=sys.stderr)
                continue
            results.append(result)
            if args.plot is not None:
                from pipeline.plot import plot_result

                plot_result(result, _plot_path(args.plot, path, len(args.files)), top_k=args.top_k)
            if audacity and args.output is not None:
                with atomic_output(_plot_path(args.output, path, len(args.files))) as tmp:
                    Path(tmp).write_text(to_audacity(result), encoding="utf-8")
        if args.html is not None:
            from pipeline.html_report import write_report

            write_report(results, args.html, top_k=args.top_k)
    finally:
        tagger.close()
    if audacity:
        if args.output is None:
            sys.stdout.write("".join(to_audacity(r) for r in results))
    else:
        sys.stdout.write(RENDERERS[args.format](results, args.top_k, frames=args.frames, events=args.events))
    sys.stdout.flush()
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _tag_stream(args: argparse.Namespace, raw) -> int:
    """`tag --stream`: JSON lines per patch; the models load (and warm up) before the input is opened."""
    from pipeline.audio_input import STDIN_LABEL, open_input
    from pipeline.stream import StreamTagger, ready_record, run_stream, write_records

    if len(args.files) != 1:
        raise UserError("--stream tags one input (a FILE or -)")
    for option, given in (("--plot", args.plot), ("--html", args.html), ("--frames", args.frames)):
        if given:
            raise UserError(f"{option} cannot be combined with --stream (it writes JSON lines)")
    with _tagger(args) as tagger:
        stream_tagger = StreamTagger(tagger, top_k=args.top_k, events=args.events)
        stream_tagger.warm_up()
        source = STDIN_LABEL if args.files[0] == "-" else args.files[0]
        write_records(sys.stdout, [ready_record(tagger, source)])
        audio = open_input(args.files[0], raw)
        interrupted = run_stream(stream_tagger, audio, sys.stdout)
    if interrupted:
        print("audiotag: interrupted; the stream's last lines are written", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_listen(args: argparse.Namespace) -> int:
    """`audiotag listen`: tag the sound card's input live, as `tag --stream` does a pipe."""
    from pipeline.listen import listen, sounddevice_input_stream
    from pipeline.tagger import Tagger

    factory = sounddevice_input_stream()  # before loading the models: a missing extra is reported at once
    with Tagger(_checkpoint(args), head=args.head) as tagger:
        interrupted = listen(tagger, sys.stdout, factory, device=args.device, sample_rate=args.rate,
                             channels=args.channels, top_k=args.top_k, events=args.events)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


# --- extract --------------------------------------------------------------------------------------
def _labels_for_tfrecord(path: Path, clip_ids: Sequence[str]) -> dict[str, list[int]]:
    """AudioSet class indices per clip id from a labels CSV (labels must be AudioSet names or mids)."""
    from classifier.labels import LabelsError, load_class_labels
    from classifier.readers import label_table

    try:
        indices = label_table(path, load_class_labels())
    except LabelsError as exc:
        raise UserError(
            f"{exc}; TFRecord labels are AudioSet indices — for your own label set, pass the CSV to "
            "`audiotag train --labels` instead"
        ) from None
    unknown = sorted(set(indices) - set(clip_ids))
    if unknown:
        logger.warning("%s: %d ids match no input file (e.g. %s)", path, len(unknown), unknown[0])
    return indices


def cmd_extract(args: argparse.Namespace) -> int:
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
        labels = _labels_for_tfrecord(args.labels, [item.clip_id for item in inputs])
    if args.output.exists() and not args.output.is_dir():
        raise UserError(f"{args.output}: exists and is not a folder")
    with FolderLock(args.output, wait=args.wait):  # refused at once, before the model is loaded
        return _run_extract(args, inputs, labels)


def _run_extract(args: argparse.Namespace, inputs: Sequence, labels: dict[str, list[int]] | None) -> int:
    import vggish
    from pipeline import frontend
    from pipeline.extract import ExtractOptions, default_cnn_threads, extract
    from vggish.checkpoint import checkpoint_status

    checkpoint = _checkpoint(args)
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
    with vggish.VGGish(checkpoint, intra_op_threads=threads, inter_op_threads=1) as model:
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


# --- beam-extract / beam-tag ---------------------------------------------------------------------
BEAM_COMMANDS = ("beam-extract", "beam-tag")


def cmd_beam_extract(args: argparse.Namespace) -> int:
    from pipeline.beam.cli import beam_extract_command, checkpoint_location

    return beam_extract_command(args, checkpoint_location(args, _checkpoint), _labels_for_tfrecord)


def cmd_beam_tag(args: argparse.Namespace) -> int:
    from pipeline.beam.cli import beam_tag_command, checkpoint_location

    return beam_tag_command(args, lambda: checkpoint_location(args, _checkpoint))


# --- train / evaluate / pack-features -------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from pipeline import training

    return training.train_command(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline import training

    return training.evaluate_command(args)


def cmd_pack_features(args: argparse.Namespace) -> int:
    from classifier.writers import pack_features
    from pipeline.training import features_source

    pack_features(features_source(args.source), args.dest, labels_csv=args.labels)
    print(f"audiotag pack-features: wrote {args.dest}", file=sys.stderr)
    return EXIT_OK


# --- export ---------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from pipeline import export

    out = args.out_dir
    targets = {"savedmodel": [export.SAVEDMODEL_DIRNAME], "tflite": [export.TFLITE_DIRNAME],
               "all": [export.SAVEDMODEL_DIRNAME, export.TFLITE_DIRNAME]}[args.format]
    for name in targets:  # before the slow part: refuse a used folder at once
        export.check_destination(out / name)
    module = export.build_module(_checkpoint(args), args.head, window_hop=args.window_hop,
                                 allow_synthetic=args.allow_synthetic)
    if export.SAVEDMODEL_DIRNAME in targets:
        path = export.export_savedmodel(out / export.SAVEDMODEL_DIRNAME, module)
        print(f"audiotag export: SavedModel -> {path}", file=sys.stderr)
    if export.TFLITE_DIRNAME in targets:
        path = export.export_tflite(out / export.TFLITE_DIRNAME, module, int8=args.tflite_int8)
        print(f"audiotag export: TF-Lite -> {path.parent}", file=sys.stderr)
    if module.info.synthetic:
        print("audiotag export: the export is from a SYNTHETIC checkpoint and is marked synthetic",
              file=sys.stderr)
    return EXIT_OK


# --- download-models / info -----------------------------------------------------------------------
def cmd_download_models(args: argparse.Namespace) -> int:
    from vggish.download import download_checkpoint

    path = download_checkpoint(args.dest, progress=sys.stderr.isatty())
    print(path)
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from pipeline.info import collect_info, format_info

    sys.stdout.write(format_info(collect_info(args.vggish_checkpoint)))
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _add_raw_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--raw-format",
        choices=("s16le", "f32le"),  # pipeline.audio_input.RAW_ENCODINGS (not imported: the parser is cheap)
        default=None,
        help="standard input (-) is headerless PCM of this sample type (default: WAV, FLAC or Ogg)",
    )
    p.add_argument("--rate", type=_positive_int, default=None, help="sample rate of --raw-format input (Hz)")
    p.add_argument("--channels", type=_positive_int, default=None, help="channels of --raw-format input")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `audiotag` (global options may come before or after the command)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--vggish-checkpoint",
        type=Path,
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="VGGish checkpoint (default: env AUDIOTAG_VGGISH_CHECKPOINT, then the download cache)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more logging (-vv: debug, and tracebacks for internal errors)",
    )

    parser = argparse.ArgumentParser(
        prog="audiotag",
        parents=[common],
        description="AudioSet labels and VGGish embeddings for audio files.",
        epilog="Exit status: 0 ok, 1 error, 2 usage error, 3 some input files failed, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"audiotag {package_version()}")
    from pipeline.training import (
        add_engine_argument,
        add_evaluate_arguments,
        add_train_arguments,
        add_wait_argument,
    )

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "tag",
        parents=[common],
        help="print the top AudioSet labels of audio files",
        description="Print the top labels of each file (clips over 10 s: max over 10 s windows).",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--top-k", type=_positive_int, default=10, help="labels per file (default 10)")
    p.add_argument("--format", choices=("text", "json", "csv", "audacity"), default="text",
                   help="audacity: a label track of the events (start<TAB>end<TAB>name)")
    p.add_argument("--frames", action="store_true",
                   help="also per-patch (0.96 s) calibrated scores with start times")
    p.add_argument("--events", action="store_true",
                   help="also sound events (start, end in seconds) from the head's thresholds "
                   "(with --stream: as they open and close)")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.txt",
                   help="--format audacity: write the track here (several files: OUT-<file>.txt)")
    p.add_argument("--rollup", action="store_true",
                   help="add ontology parents (score = max of own and descendants'), marked rolled_up")
    p.add_argument("--classes", action="append", metavar="CLASS",
                   help="keep only this class (name, MID or @file with one per line); repeatable")
    p.add_argument("--exclude", action="append", metavar="CLASS",
                   help="drop this class (name, MID or @file); repeatable")
    p.add_argument("--min-score", type=float, default=0.0, metavar="P",
                   help="leave out labels and events scoring below P (default 0)")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="write a PNG: log-mel spectrogram above the top classes over time "
        "(several files: OUT-<file>.png)",
    )
    p.add_argument(
        "--html",
        type=Path,
        metavar="OUT.html",
        help="write a self-contained page: audio player, spectrogram, timeline and events of each file",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="JSON lines as the input is read: each 0.96 s patch and its window's top labels (one input)",
    )
    _add_raw_arguments(p)
    p.add_argument(
        "--head", default=None, metavar="NAME|PATH", help="classifier head (default: the shipped one)"
    )
    add_engine_argument(p)
    p.add_argument(
        "--window-hop",
        type=_positive_int,
        default=1,
        metavar="PATCHES",
        help="hop of the 10-patch window over long files (default 1)",
    )
    p.set_defaults(func=cmd_tag)


    p = sub.add_parser(
        "listen",
        parents=[common],
        help="tag the sound card's input live (optional extra: live)",
        description="Tag audio from an input device as it plays: JSON lines as `tag --stream` writes. "
        "Needs `pip install audiotag[live]` and the PortAudio library. Ctrl-C ends it.",
    )
    p.add_argument("--device", default=None, help="input device name or number (default: the system's)")
    p.add_argument("--rate", type=_positive_int, default=None, help="sample rate (default: the device's)")
    p.add_argument("--channels", type=_positive_int, default=1, help="channels to record (default 1)")
    p.add_argument("--top-k", type=_positive_int, default=10, help="labels per patch (default 10)")
    p.add_argument("--events", action="store_true", help="sound events as they open and close")
    p.add_argument(
        "--head", default=None, metavar="NAME|PATH", help="classifier head (default: the shipped one)"
    )
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser(
        "extract",
        parents=[common],
        help="VGGish embeddings for many files (resumable)",
        description="Embed audio files, directories (recursive) and list files (.txt/.lst/.list, "
        "one path per line). Rerun the same command to resume.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    p.add_argument("--format", choices=("tfrecord", "hdf5", "npz", "parquet"), default="tfrecord")
    p.add_argument("--raw", action="store_true", help="also keep raw float32 embeddings (hdf5, npz, parquet)")
    p.add_argument(
        "--workers", type=_positive_int, default=None, help="decoding processes (default: one per CPU core)"
    )
    p.add_argument("--batch-size", type=_positive_int, default=128, help="CNN batch in patches (default 128)")
    p.add_argument(
        "--files-per-shard", type=_positive_int, default=256,
        help="TFRecord / Parquet shard size (default 256)"
    )
    p.add_argument(
        "--labels", type=Path, metavar="CSV", help="labels CSV (id,labels) for the TFRecord labels"
    )
    p.add_argument(
        "--cnn-threads",
        type=_positive_int,
        default=None,
        help="TensorFlow threads for the CNN (default: one per core)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_wait_argument(p)
    p.set_defaults(func=cmd_extract)

    from pipeline.beam.cli import add_beam_extract_arguments, add_beam_tag_arguments

    p = sub.add_parser(
        "beam-extract",
        parents=[common],
        help="VGGish embeddings on Apache Beam (locally or on a cluster)",
        description="extract as an Apache Beam pipeline: local files, directories, globs, list files and "
        "gs:// s3:// hdfs:// URLs -> sharded TFRecords or Parquet. Options this command does not know "
        "are Beam pipeline options (give them after the inputs, as --name=value); without --runner it "
        "runs locally on Beam's multi-process portable runner, one worker per core.",
    )
    add_beam_extract_arguments(p)
    p.set_defaults(func=cmd_beam_extract)

    p = sub.add_parser(
        "beam-tag",
        parents=[common],
        help="AudioSet tags of embeddings or audio on Apache Beam -> JSON Lines",
        description="The classifier head over embeddings (TFRecords or Parquet from extract / beam-extract, "
        "or the AudioSet release) or over audio, as an Apache Beam pipeline -> sharded JSON Lines, one "
        "object per clip as `tag --format json`. Unknown options are Beam pipeline options.",
    )
    add_beam_tag_arguments(p)
    p.set_defaults(func=cmd_beam_tag)

    p = sub.add_parser(
        "train",
        parents=[common],
        help="train a classifier head",
        description="Train a head on the AudioSet release or on extract outputs plus a labels CSV.",
    )
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="evaluate a classifier head",
        description="mAP, AUC and d' of a head on labelled features; per-class report files.",
    )
    add_evaluate_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "pack-features",
        parents=[common],
        help="convert features TFRecord <-> HDF5",
        description="Convert AudioSet-format TFRecords or extract outputs to Kong's HDF5 layout "
        "and back (direction by the extension of DEST).",
    )
    p.add_argument("source", type=Path, metavar="SOURCE")
    p.add_argument("dest", type=Path, metavar="DEST")
    p.add_argument("--labels", type=Path, metavar="CSV", help="labels CSV for sources without labels")
    p.set_defaults(func=cmd_pack_features)

    p = sub.add_parser(
        "export",
        parents=[common],
        help="export the tagger as a SavedModel (TF Serving) and/or TF-Lite model",
        description="Write the whole tagger (16 kHz waveform -> log-mel -> VGGish -> head -> scores) as one "
        "TensorFlow graph: OUT_DIR/savedmodel and/or OUT_DIR/tflite (each must be new or empty).",
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument(
        "--head", default=None, metavar="NAME|PATH", help="classifier head (default: the shipped one)"
    )
    p.add_argument("--format", choices=("savedmodel", "tflite", "all"), default="savedmodel")
    p.add_argument(
        "--window-hop",
        type=_positive_int,
        default=1,
        metavar="PATCHES",
        help="hop of the 10-patch window over long inputs, as in `tag` (default 1)",
    )
    p.add_argument(
        "--allow-synthetic",
        action="store_true",
        help="export even a SYNTHETIC checkpoint (tests only); the export is then marked synthetic",
    )
    p.add_argument("--tflite-int8", action="store_true", help="also a dynamic-range int8 TF-Lite model")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "download-models",
        parents=[common],
        help="download the released VGGish checkpoint",
        description="Download, verify (size, sha256) and cache the released VGGish checkpoint.",
    )
    p.add_argument(
        "--dest", type=Path, default=None, metavar="PATH", help="where to put it (default: the cache)"
    )
    p.set_defaults(func=cmd_download_models)

    p = sub.add_parser("info", parents=[common], help="versions, data and model paths, checkpoint status")
    p.set_defaults(func=cmd_info)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="audiotag: %(levelname)s: %(name)s: %(message)s", stream=sys.stderr
    )
    if verbosity < 2:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
        logging.getLogger("apache_beam").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `audiotag` console script; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "command", None) not in BEAM_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.beam_args = unknown
    for name, default in (("vggish_checkpoint", None), ("verbose", 0)):
        if not hasattr(args, name):
            setattr(args, name, default)
    _configure_logging(args.verbose)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(
            "audiotag: interrupted; finished outputs are kept (rerun the same command to resume)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as exc:
        if isinstance(exc, _user_error_types()) or is_environment_error(exc):
            logger.debug("details", exc_info=True)
            print(f"audiotag: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_ERROR
        if args.verbose >= 2:
            raise
        print(
            f"audiotag: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(rerun with -vv for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
