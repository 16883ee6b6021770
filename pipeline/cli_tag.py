"""`audiotag tag` and `audiotag listen`: AudioSet labels of audio files, of a pipe and of the sound card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli_common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    UserError,
    checkpoint_path,
    one_line,
)
from pipeline.cli_options import (
    Command,
    add_engine,
    add_format,
    add_head,
    add_top_k,
    add_vggish_engine,
    add_window_hop,
    positive_int,
)


def _tag_arguments(p: argparse.ArgumentParser) -> None:
    """FILEs, the output format and views, the label filters, and raw PCM on standard input."""
    p.add_argument("files", nargs="+", metavar="FILE")
    add_top_k(p, per="file")
    add_format(p, ("text", "json", "csv", "audacity"),
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
    p.add_argument("--plot", type=Path, metavar="OUT.png",
                   help="write a PNG: log-mel spectrogram above the top classes over time "
                   "(several files: OUT-<file>.png)")
    p.add_argument("--html", type=Path, metavar="OUT.html",
                   help="write a self-contained page: audio player, spectrogram, timeline and events of each "
                   "file")
    p.add_argument("--stream", action="store_true",
                   help="JSON lines as the input is read: each 0.96 s patch and its window's top labels "
                   "(one input)")
    p.add_argument(
        "--raw-format",
        choices=("s16le", "f32le"),  # pipeline.audio_input.RAW_ENCODINGS (not imported: the parser is cheap)
        default=None,
        help="standard input (-) is headerless PCM of this sample type (default: WAV, FLAC or Ogg)",
    )
    p.add_argument("--rate", type=positive_int, default=None, help="sample rate of --raw-format input (Hz)")
    p.add_argument("--channels", type=positive_int, default=None, help="channels of --raw-format input")
    add_head(p)
    add_engine(p)
    add_vggish_engine(p)
    add_window_hop(p, over="files")


def _listen_arguments(p: argparse.ArgumentParser) -> None:
    """The input device and what is written per patch."""
    p.add_argument("--device", default=None, help="input device name or number (default: the system's)")
    p.add_argument("--rate", type=positive_int, default=None, help="sample rate (default: the device's)")
    p.add_argument("--channels", type=positive_int, default=1, help="channels to record (default 1)")
    add_top_k(p, per="patch")
    p.add_argument("--events", action="store_true", help="sound events as they open and close")
    add_head(p)
    add_vggish_engine(p)


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

    return Tagger(checkpoint_path(args), head=args.head, window_hop=args.window_hop, rollup=args.rollup,
                  classes=args.classes, exclude=args.exclude or (), min_score=args.min_score,
                  engine=args.engine, vggish_engine=args.vggish_engine)


def cmd_tag(args: argparse.Namespace) -> int:
    """`audiotag tag`: the top labels of each FILE (or `--stream`: JSON lines as the input is read).

    numpy's BLAS gets one thread: the head's, the PCA's and the resampler's products are small, and a second
    BLAS thread only spins against the CNN's threads (docs: Performance, "Start-up").
    """
    from threadpoolctl import threadpool_limits

    if args.files.count("-") > 1:
        raise UserError("standard input (-) can be read only once")
    raw = _raw_format(args)
    with threadpool_limits(limits=1, user_api="blas"):
        return _tag_stream(args, raw) if args.stream else _tag_files(args, raw)


def _tag_files(args: argparse.Namespace, raw) -> int:
    """`tag` without --stream: every FILE tagged, then written in the chosen format."""
    from concurrent.futures import ThreadPoolExecutor

    import vggish
    from pipeline.audio_input import open_input
    from pipeline.formatting import RENDERERS, to_audacity
    from pipeline.tagger import file_examples
    from safeio.atomic import atomic_output, sweep_folder_once

    audacity = args.format == "audacity"
    if args.output is not None and not audacity:
        raise UserError("--output is for --format audacity (other formats go to stdout)")
    if audacity and args.output is None and len(args.files) > 1:
        raise UserError("--format audacity with several files needs --output OUT.txt (writes OUT-<file>.txt)")
    keep_examples = args.plot is not None or args.html is not None
    # The first file's front end (decode, resample, log-mel) runs while the models load (not standard input:
    # it is read once, by the loop below).
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
                print(f"audiotag: {one_line(exc)}", file=sys.stderr)
                continue
            results.append(result)
            if args.plot is not None:
                from pipeline.plot import plot_result

                plot_result(result, _plot_path(args.plot, path, len(args.files)), top_k=args.top_k)
            if audacity and args.output is not None:
                track = _plot_path(args.output, path, len(args.files))
                sweep_folder_once(track.parent)
                with atomic_output(track) as tmp:
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
    with Tagger(checkpoint_path(args), head=args.head, vggish_engine=args.vggish_engine) as tagger:
        interrupted = listen(tagger, sys.stdout, factory, device=args.device, sample_rate=args.rate,
                             channels=args.channels, top_k=args.top_k, events=args.events)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


COMMANDS = (
    Command("tag", cmd_tag, _tag_arguments, help="print the top AudioSet labels of audio files",
            description="Print the top labels of each file (clips over 10 s: max over 10 s windows)."),
    Command("listen", cmd_listen, _listen_arguments,
            help="tag the sound card's input live (optional extra: live)",
            description="Tag audio from an input device as it plays: JSON lines as `tag --stream` writes. "
            "Needs `pip install audiotag[live]` and the PortAudio library. Ctrl-C ends it."),
)
