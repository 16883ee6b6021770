"""What the `audiotag` commands share when they run: exit statuses, user errors and their one-line text, the
VGGish checkpoint, AudioSet labels for records.

The bottom of the command-line layer with `pipeline.cli_options`; heavy modules are imported inside the
functions.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from safeio.oserrors import describe_os_error, is_environment_error

logger = logging.getLogger("audiotag")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix, reported as one line."""


def one_line(exc: BaseException) -> str:
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


def checkpoint_path(args: argparse.Namespace) -> Path:
    """The local VGGish checkpoint: --vggish-checkpoint, AUDIOTAG_VGGISH_CHECKPOINT, the cache, a download."""
    from vggish.download import resolve_checkpoint

    return resolve_checkpoint(args.vggish_checkpoint, progress=sys.stderr.isatty())


def labels_for_tfrecord(path: Path, clip_ids: Sequence[str]) -> dict[str, list[int]]:
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
