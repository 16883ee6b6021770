"""Turning the INPUT arguments of `audiotag extract` into a list of audio files with their clip ids.

An INPUT is an audio file, a directory (searched recursively for AUDIO_EXTENSIONS) or a list file
(LIST_EXTENSIONS: one path per line, blank lines and `#` comments skipped, relative paths relative to the
list file). Each file's clip id (`video_id` in the outputs) is its path relative to its input root: the
directory for a directory, the file's folder for a single file, the list file's folder for a list entry
(an entry outside that folder keeps its absolute path, without the leading `/`). Clip ids are valid UTF-8
text: a byte of a file name that is not UTF-8 appears in its clip id as `\\xNN` (the file itself is read
under its real name).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.errors import PipelineError
from safeio.names import printable_name

AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
    }
)
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})


@dataclass(frozen=True)
class AudioInput:
    """One file to process: where it is and the clip id it gets in the outputs (a relative POSIX path)."""

    path: Path
    clip_id: str


def is_list_file(path: Path) -> bool:
    """True when `path` names a list of audio paths rather than audio (decided by the extension)."""
    return path.suffix.lower() in LIST_EXTENSIONS


def _relative_id(path: Path, root: Path) -> str:
    """`path` relative to `root` as a POSIX string; absolute (without the leading `/`) when outside root."""
    absolute = Path(os.path.abspath(path))
    try:
        return printable_name(absolute.relative_to(os.path.abspath(root)).as_posix())
    except ValueError:
        return printable_name(PurePosixPath(absolute.as_posix()).relative_to("/").as_posix())


def _walk_directory(root: Path) -> list[AudioInput]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
                path = Path(folder) / name
                found.append(AudioInput(path, _relative_id(path, root)))
    return found


def _read_list(list_file: Path) -> list[AudioInput]:
    try:
        lines = list_file.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError as exc:
        raise PipelineError(f"{list_file}: cannot read the list of audio files: {exc}") from exc
    root = list_file.parent
    found = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        found.append(AudioInput(path, _relative_id(path, root)))
    return found


def _missing_reason(path: Path) -> str:
    """Why `path`, which does not exist as far as Path.exists() can tell, cannot be used."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (too many levels of symbolic links)"
        if path.is_symlink():
            return "broken symbolic link (its target does not exist)"
        if exc.errno != errno.ENOENT:
            return exc.strerror or str(exc)
    return "no such file or directory"


def collect_inputs(arguments: Iterable[str | os.PathLike[str]]) -> list[AudioInput]:
    """Expand INPUT arguments into audio files in a stable order (arguments in order, each sorted).

    Raises PipelineError for an argument that does not exist, and when two files would get the same clip
    id (their outputs would collide). Files listed in a list file are not checked here: a missing one is
    reported as a failed file by the extractor, like any unreadable audio.
    """
    inputs: list[AudioInput] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            inputs.extend(_walk_directory(path))
        elif path.is_file() and is_list_file(path):
            inputs.extend(_read_list(path))
        elif path.exists():
            inputs.append(AudioInput(path, printable_name(path.name)))
        else:
            raise PipelineError(f"{printable_name(path)}: {_missing_reason(path)}")
    unique: list[AudioInput] = []
    seen: dict[str, Path] = {}
    for item in inputs:
        other = seen.get(item.clip_id)
        if other is None:
            seen[item.clip_id] = item.path
            unique.append(item)
        elif Path(os.path.abspath(other)) != Path(os.path.abspath(item.path)):
            raise PipelineError(
                f"two inputs get the same clip id {item.clip_id!r}: {other} and {item.path} "
                "(pass their common parent directory instead, or extract them into separate outputs)"
            )
    return unique
