"""File names as text, whatever bytes they hold.

POSIX file names are bytes; Python decodes the bytes that are not UTF-8 as lone surrogates
(`surrogateescape`), which cannot be written as UTF-8 text. `printable_name` shows each such byte as `\\xNN`
(valid UTF-8, readable); `escape_field` / `unescape_field` make any name one line of a tab-separated file
and give it back exactly.
"""

from __future__ import annotations

import os
import re

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPE = re.compile(r"\\(\\|t|n|r|x[0-9a-fA-F]{2})")


def printable_name(name: str | bytes | os.PathLike) -> str:
    """`name` as valid UTF-8 text: each byte that is not part of UTF-8 text becomes `\\xNN`."""
    text = os.fsdecode(name) if isinstance(name, bytes | os.PathLike) else str(name)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def escape_field(name: str | os.PathLike) -> str:
    """One TSV field for `name`: backslash, tab, CR and newline escaped (`\\\\ \\t \\r \\n`), bytes that
    are not UTF-8 as `\\xNN`. unescape_field gives `name` back exactly."""
    text = "".join(_ESCAPES.get(ch, ch) for ch in os.fspath(name))
    return printable_name(text)


def unescape_field(field: str) -> str:
    """The inverse of escape_field (`\\xNN` back to the original byte, as a surrogate when not UTF-8)."""

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] == "x":
            return bytes([int(code[1:], 16)]).decode("utf-8", "surrogateescape")
        return {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}[code]

    return _UNESCAPE.sub(replace, field)


def one_line(text: str) -> str:
    """`text` as one line of valid UTF-8 (whitespace runs, newlines included, become one space)."""
    return " ".join(printable_name(str(text)).split())
