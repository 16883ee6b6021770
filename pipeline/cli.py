"""The `audiotag` command line: the parser, made of the command modules' commands, and `main`.

Commands, in `audiotag --help`'s order, and the modules that hold them: tag, listen (pipeline.cli_tag);
extract (pipeline.cli_extract); beam-extract, beam-tag (pipeline.beam.cli); train, evaluate, pack-features
(pipeline.cli_training); export (pipeline.cli_export); download-models, info (pipeline.cli_models). Their
shared options are in pipeline.cli_options, what they share at run time in pipeline.cli_common.

Exit status: 0 success; 1 an error (bad option value, unreadable checkpoint, missing input...), reported as
one line on stderr; 2 a command-line usage error; 3 the run finished but some input files failed (listed
on stderr, or in OUT/errors.tsv for extract); 130 interrupted (Ctrl-C).

Heavy modules (TensorFlow, Beam, the models, the writers) are imported inside the commands: importing this
module and building the parser stay cheap, and extraction worker processes can import it without TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pipeline import cli_export, cli_extract, cli_models, cli_tag, cli_training
from pipeline.beam import cli as beam_cli
from pipeline.cli_common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    UserError,
    logger,
    one_line,
)
from pipeline.cli_options import global_options
from pipeline.info import package_version
from safeio.oserrors import is_environment_error

# The exit statuses are public here, beside main: tests and callers of main() compare against them.
__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "build_parser",
           "main"]

COMMANDS = (*cli_tag.COMMANDS, *cli_extract.COMMANDS, *beam_cli.COMMANDS, *cli_training.COMMANDS,
            *cli_export.COMMANDS, *cli_models.COMMANDS)


class _PrintVersion(argparse.Action):
    """--version: looks the installed version up only when asked (building the parser opens no file)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"audiotag {package_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `audiotag` (global options may come before or after the command)."""
    common = global_options()
    parser = argparse.ArgumentParser(
        prog="audiotag",
        parents=[common],
        description="AudioSet labels and VGGish embeddings for audio files.",
        epilog="Exit status: 0 ok, 1 error, 2 usage error, 3 some input files failed, 130 interrupted.",
    )
    parser.add_argument("--version", action=_PrintVersion, help="print audiotag's version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_to(subparsers, common)
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exception classes whose message is meant for the user (imported here: importing cli stays cheap)."""
    from classifier.head_file import HeadError
    from classifier.labels import LabelsError
    from classifier.readers import ReaderError
    from classifier.train import TrainError
    from pipeline.errors import PipelineError
    from safeio.lock import FolderBusyError
    from vggish import AudioFileError, CheckpointError, PCAParamsError
    from vggish.download import DownloadError

    return (UserError, PipelineError, AudioFileError, CheckpointError, PCAParamsError, DownloadError,
            LabelsError, ReaderError, HeadError, TrainError, FolderBusyError, FileNotFoundError,
            PermissionError, IsADirectoryError, NotADirectoryError)


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
    if unknown and not args.takes_beam_options:
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
            print(f"audiotag: error: {one_line(exc)}", file=sys.stderr)
            return EXIT_ERROR
        if args.verbose >= 2:
            raise
        print(
            f"audiotag: internal error: {type(exc).__name__}: {one_line(exc)} "
            "(rerun with -vv for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
