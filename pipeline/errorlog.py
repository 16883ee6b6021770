r"""The errors report of `audiotag extract`: `OUT/errors.tsv` (`OUT/_errors.tsv` in a Parquet folder), one
line per file that could not be processed.

Columns: `path`, `clip_id`, `reason` (tab-separated, with a header line). Lines are appended and fsynced as
failures happen, so the report survives a crash. A failed file is final for its output folder: a rerun
does not try it again; delete its line (or the whole file) to retry it.

Any file name fits on its line: in `path` and `clip_id` a backslash, tab, CR or newline is written `\\`,
`\t`, `\r`, `\n`, and a byte that is not UTF-8 `\xNN` (safeio.names.escape_field), so every name reads
back exactly and a rerun recognises it.

A Parquet output folder is a dataset that pyarrow, pandas, DuckDB and Spark read whole; they skip names
starting with `_` or `.`, so its report is `_errors.tsv`. A Parquet folder written when the report was still
`errors.tsv` has it renamed on the next run.
"""

from __future__ import annotations

import os
from pathlib import Path

from safeio.atomic import atomic_write_text, fsync_path
from safeio.names import escape_field, one_line, unescape_field
from safeio.oserrors import errors_naming

ERRORS_NAME = "errors.tsv"
DATASET_ERRORS_NAME = "_errors.tsv"  # hidden from the readers of a Parquet dataset
DATASET_FORMATS = ("parquet",)
HEADER = "path\tclip_id\treason\n"


def errors_name(fmt: str = "") -> str:
    """The report's name in an output folder of format `fmt`: `_errors.tsv` for Parquet, else `errors.tsv`."""
    return DATASET_ERRORS_NAME if fmt in DATASET_FORMATS else ERRORS_NAME


def format_error_line(path: str | os.PathLike[str], clip_id: str, reason: str) -> str:
    """One report line (without the newline): path and clip id escaped, the reason on one line."""
    return f"{escape_field(path)}\t{escape_field(clip_id)}\t{one_line(reason)}"


def parse_error_line(line: str) -> tuple[str, str, str] | None:
    """(path, clip_id, reason) of a report line, names unescaped; None for the header or a malformed line."""
    fields = line.rstrip("\n").split("\t")
    if len(fields) != 3 or line.rstrip("\n") == HEADER.rstrip("\n"):
        return None
    return unescape_field(fields[0]), unescape_field(fields[1]), fields[2]


class ErrorLog:
    """Reads the failures of earlier runs and appends new ones durably, in the report of an output folder of
    format `fmt` (errors_name)."""

    def __init__(self, out_dir: Path, fmt: str = ""):
        self.path = out_dir / errors_name(fmt)
        self.failed: dict[str, str] = {}
        legacy = out_dir / ERRORS_NAME
        if self.path != legacy and legacy.is_file() and not self.path.exists():
            os.replace(legacy, self.path)  # written before the report was hidden from dataset readers
            fsync_path(out_dir)
        if self.path.is_file():
            text = self.path.read_text(encoding="utf-8", errors="surrogateescape")
            complete = text[: text.rfind("\n") + 1]  # drop a line cut short by a crash
            lines = complete.splitlines()[1:]
            for line in lines:
                fields = parse_error_line(line)
                if fields is not None:
                    self.failed[fields[1]] = fields[2]
            if complete != text or not text.startswith(HEADER):
                atomic_write_text(self.path, HEADER + "".join(f"{line}\n" for line in lines))

    def add(self, path: str | os.PathLike[str], clip_id: str, reason: str) -> None:
        """Record one failed file (durable when this returns)."""
        new = not self.path.is_file()
        line = format_error_line(path, clip_id, reason) + "\n"
        with errors_naming(self.path), open(self.path, "a", encoding="utf-8", errors="surrogateescape") as f:
            if new:
                f.write(HEADER)
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.failed[clip_id] = reason
