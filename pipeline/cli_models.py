"""`audiotag download-models` and `audiotag info`: the VGGish checkpoint and its LiteRT conversion, versions
and paths."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli_common import EXIT_OK, logger
from pipeline.cli_options import Command


def _download_arguments(p: argparse.ArgumentParser) -> None:
    """Where the checkpoint goes."""
    p.add_argument("--dest", type=Path, default=None, metavar="PATH",
                   help="where to put it (default: the cache)")


def cmd_download_models(args: argparse.Namespace) -> int:
    """`audiotag download-models`: downloads the checkpoint, builds its LiteRT conversion (unless cached),
    prints the checkpoint's path."""
    from vggish import lite_cache
    from vggish.download import download_checkpoint
    from vggish.engines import litert_missing

    path = download_checkpoint(args.dest, progress=sys.stderr.isatty())
    if why := litert_missing():
        logger.warning("no LiteRT conversion built: %s", why)
    else:
        conversion = lite_cache.ensure(path)
        print(f"audiotag: LiteRT conversion of the checkpoint: {conversion.path or '(not cached)'}",
              file=sys.stderr)
    print(path)
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """`audiotag info`: versions, data and model paths, the checkpoint's status."""
    from pipeline.info import collect_info, format_info

    sys.stdout.write(format_info(collect_info(args.vggish_checkpoint)))
    return EXIT_OK


COMMANDS = (
    Command("download-models", cmd_download_models, _download_arguments,
            help="download the released VGGish checkpoint and convert it to LiteRT",
            description="Download, verify (size, sha256) and cache the released VGGish checkpoint, then "
            "build and cache its LiteRT conversion (what tag runs by default)."),
    Command("info", cmd_info, None,
            help="versions, data and model paths, checkpoint status, the VGGish engine"),
)
