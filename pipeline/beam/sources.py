"""Where beam-extract's audio comes from: local INPUT arguments exactly as `audiotag extract` expands them,
and Beam filesystem URLs (gs://, s3://, hdfs://, ...) matched through Beam's FileSystems.

A URL is a file, a folder (`gs://bucket/clips/`, searched recursively for audio extensions) or a glob
(`gs://bucket/clips/*/*.wav`). Clip ids of URL inputs are paths relative to the folder (for a glob: to
the folder before its first wildcard); a single file's id is its name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pipeline.errors import PipelineError
from pipeline.inputs import AUDIO_EXTENSIONS, collect_inputs

_COPY_CHUNK_BYTES = 1 << 22


def is_url(path: str) -> bool:
    """True for a Beam filesystem URL (`scheme://...`) rather than a local path."""
    return "://" in path


@dataclass(frozen=True)
class UrlInput:
    """A URL INPUT argument to match at run time: `pattern` for Beam's MatchFiles, `base` the folder that
    clip ids are relative to (empty: the clip id is the file's name)."""

    pattern: str
    base: str


def is_audio_name(path: str) -> bool:
    """Whether a file name has one of `extract`'s audio extensions (hidden files excluded, as in extract)."""
    name = posixpath.basename(path)
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS and not name.startswith(".")


def clip_id_for(path: str, base: str) -> str:
    """The clip id of a matched URL: its path under `base`, or its name when base is empty."""
    if base and path.startswith(base):
        return path[len(base):].lstrip("/")
    return posixpath.basename(path)


def _url_input(argument: str) -> UrlInput:
    from apache_beam.io.filesystems import FileSystems

    if glob.has_magic(argument):
        prefix = argument[: min(argument.index(c) for c in "*?[" if c in argument)]
        return UrlInput(argument, prefix[: prefix.rfind("/") + 1])
    if not argument.endswith("/"):
        try:
            if FileSystems.exists(argument) and not FileSystems.match([argument + "/*"])[0].metadata_list:
                return UrlInput(argument, "")
        except Exception:  # a filesystem that cannot answer here: let the workers report it
            return UrlInput(argument, "")
    folder = argument.rstrip("/") + "/"
    return UrlInput(folder + "**", folder)


def split_inputs(arguments: Sequence[str]) -> tuple[list[tuple[str, str]], list[UrlInput]]:
    """INPUT arguments -> local (path, clip id) pairs, in extract's order with extract's clip ids (local
    globs the shell did not expand are expanded like the shell would), and URL inputs to match at run time.
    Raises PipelineError as collect_inputs does (missing input, two files with one clip id)."""
    local_arguments: list[str] = []
    urls: list[UrlInput] = []
    for argument in arguments:
        if is_url(argument):
            urls.append(_url_input(argument))
        elif glob.has_magic(argument) and not os.path.exists(argument):
            matches = sorted(glob.glob(argument))
            if not matches:
                raise PipelineError(f"{argument}: the pattern matches no file")
            local_arguments.extend(matches)
        else:
            local_arguments.append(argument)
    local = [(str(item.path), item.clip_id) for item in collect_inputs(local_arguments)]
    return local, urls


@contextlib.contextmanager
def local_file(path: str) -> Iterator[str]:
    """A local path for `path`: the path itself, or for a URL a temporary copy (deleted afterwards)."""
    if not is_url(path):
        yield path
        return
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    suffix = os.path.splitext(posixpath.basename(path))[1]
    with tempfile.TemporaryDirectory(prefix="audiotag-") as folder:
        local = os.path.join(folder, "input" + suffix)
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as source, \
                open(local, "wb") as target:
            shutil.copyfileobj(source, target, _COPY_CHUNK_BYTES)
        yield local
