"""The building blocks of the `audiotag` parser: the command record, argument types, and the options that
several commands share, each defined here once (a command passes only what the option means for it).

The bottom of the command-line layer: the command modules (`pipeline.cli_*`, `pipeline.beam.cli`) import
it, it imports none of them. Building a parser from it imports neither TensorFlow nor Beam.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from classifier.lite import ENGINES
from vggish.params import DEFAULT_ENGINE as VGGISH_DEFAULT_ENGINE
from vggish.params import ENGINES as VGGISH_ENGINES

Number = TypeVar("Number", int, float)


def at_least(minimum: Number, why: str = "") -> Callable[[str], Number]:
    """An argparse type: a number of minimum's type (int or float) that is at least minimum."""
    convert = type(minimum)
    kind = "an integer" if convert is int else "a number"
    bound = f"{minimum} ({why})" if why else f"{minimum}"

    def parse(text: str) -> Number:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {bound}: {text}")
        return value

    return parse


positive_int = at_least(1)


def global_options() -> argparse.ArgumentParser:
    """--vggish-checkpoint and -v, as a parent parser: accepted before the command and after it.

    Their defaults are SUPPRESS so that a command's parser does not overwrite a value given before the
    command; `pipeline.cli.main` fills in the real defaults."""
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
    return common


BEAM_OPTIONS_HELP = (
    "Options this command does not know are Beam pipeline options (give them after the inputs, as "
    "--name=value); without --runner it runs locally on Beam's multi-process portable runner, one worker "
    "per core."
)


@dataclass(frozen=True)
class Command:
    """One `audiotag` command: its name, the function it runs, its arguments and its help.

    beam_options: options the command does not know are Beam pipeline options (args.beam_args) instead of
    a usage error; its help says so."""

    name: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None
    help: str
    description: str | None = None
    beam_options: bool = False

    def add_to(self, subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
        """Add the command's parser to `audiotag`'s; common: the parent parser of the global options."""
        parser = subparsers.add_parser(
            self.name,
            parents=[common],
            help=self.help,
            description=self.description,
            epilog=BEAM_OPTIONS_HELP if self.beam_options else None,
        )
        if self.add_arguments is not None:
            self.add_arguments(parser)
        parser.set_defaults(func=self.run, takes_beam_options=self.beam_options)


def add_format(parser: argparse.ArgumentParser, choices: tuple[str, ...], help: str | None = None) -> None:
    """--format: one of choices, the first being the default."""
    parser.add_argument("--format", choices=choices, default=choices[0], help=help)


def add_output_folder(parser: argparse.ArgumentParser, help: str, *, metavar: str = "DIR",
                      url: bool = False) -> None:
    """-o/--output, the folder a command writes (url: it may be an object-store URL, kept as text)."""
    parser.add_argument("-o", "--output", type=None if url else Path, required=True, metavar=metavar,
                        help=f"{help} (local or a URL)" if url else help)


def add_extract_io(parser: argparse.ArgumentParser, formats: tuple[str, ...], *, url: bool = False) -> None:
    """INPUTs, -o/--output OUT, --format (the first of formats by default) and --raw: what extract and
    beam-extract read and write (url: OUT may be an object-store URL)."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT")
    add_output_folder(parser, "output folder", metavar="OUT", url=url)
    add_format(parser, formats)
    raw = ", ".join(name for name in formats if name != "tfrecord")  # TFRecords keep only the uint8 ones
    parser.add_argument("--raw", action="store_true", help=f"also keep raw float32 embeddings ({raw})")


def add_labels_csv(parser: argparse.ArgumentParser, help: str) -> None:
    """--labels CSV: a labels file (header `id,labels`)."""
    parser.add_argument("--labels", type=Path, metavar="CSV", help=help)


def add_head(parser: argparse.ArgumentParser) -> None:
    """--head: the classifier head, a shipped name or a head file."""
    parser.add_argument(
        "--head",
        default=None,
        metavar="NAME|PATH",
        help="classifier head: a shipped name or a head.npz from `audiotag train` (default: the shipped one)",
    )


def add_engine(parser: argparse.ArgumentParser) -> None:
    """--engine: how the head predicts (classifier.lite.ENGINES)."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="numpy",
        help="how the head predicts: numpy (exact, the default), lite (TF-Lite float32) or lite-int8 "
        "(TF-Lite with int8 weights, several times faster; compiled once per head and cached)",
    )


def add_vggish_engine(parser: argparse.ArgumentParser, default: str = VGGISH_DEFAULT_ENGINE) -> None:
    """--vggish-engine: what runs the VGGish CNN (vggish.params.ENGINES)."""
    parser.add_argument(
        "--vggish-engine",
        choices=VGGISH_ENGINES,
        default=default,
        help="what runs the VGGish CNN: lite (LiteRT on a conversion of the checkpoint, built once and "
        "cached beside it), tf (TensorFlow) or auto (lite when it can be used, else tf; default %(default)s)",
    )


def add_top_k(parser: argparse.ArgumentParser, per: str) -> None:
    """--top-k: how many labels are given per file, patch or clip."""
    parser.add_argument("--top-k", type=positive_int, default=10,
                        help=f"labels per {per} (default %(default)s)")


def add_window_hop(parser: argparse.ArgumentParser, over: str) -> None:
    """--window-hop: the hop of the 10-patch window over long inputs."""
    parser.add_argument("--window-hop", type=positive_int, default=1, metavar="PATCHES",
                        help=f"hop of the 10-patch window over long {over} (default %(default)s)")


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    """--batch-size: patches per VGGish CNN call."""
    parser.add_argument("--batch-size", type=positive_int, default=128,
                        help="CNN batch in patches (default %(default)s)")


def add_cnn_threads(parser: argparse.ArgumentParser, help: str) -> None:
    """--cnn-threads: TensorFlow's threads for the VGGish CNN (default None: the command decides)."""
    parser.add_argument("--cnn-threads", type=positive_int, default=None, help=help)


def add_wait(parser: argparse.ArgumentParser) -> None:
    """--wait: when another run uses the output folder, wait for it instead of stopping at once."""
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another audiotag run is using the output folder, wait for it to finish (default: stop)",
    )
