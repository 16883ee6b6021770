"""Finding and downloading the released VGGish checkpoint.

The checkpoint (params.CHECKPOINT_URL, about 291 MB) is cached in `cache_dir()`. Downloads stream into
`<dest>.part`, resume an interrupted `.part` with an HTTP Range request, verify size and sha256, and are
moved into place with an atomic `os.replace`. A lock file `<dest>.lock` (fcntl.flock, Linux/macOS) keeps two
processes that download into the same place from corrupting each other. Network failures raise
`DownloadError` within `timeout` seconds, keeping the `.part` file for the next attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from safeio.cache import cache_dir
from vggish import params

if TYPE_CHECKING:  # the network modules load only when something is downloaded
    import http.client

    from tqdm import tqdm

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, concurrent downloads are not guarded.
    fcntl = None

logger = logging.getLogger(__name__)

ENV_CHECKPOINT = "AUDIOTAG_VGGISH_CHECKPOINT"
USER_AGENT = "audiotag-download/0.1 (python urllib)"
CHUNK_BYTES = 1 << 20  # bytes read from the network and hashed at a time

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)


class DownloadError(Exception):
    """A file could not be downloaded or found; the message says how to supply the checkpoint by hand.

    Attributes: `problem` (what went wrong), `url`, `dest` (where it was going, or None).
    """

    def __init__(self, problem: str, url: str = params.CHECKPOINT_URL, dest: str | Path | None = None):
        super().__init__(problem, url, dest)
        self.problem = problem
        self.url = url
        self.dest = Path(dest) if dest is not None else None

    def __str__(self) -> str:
        target = shlex.quote(str(self.dest)) if self.dest is not None else params.CHECKPOINT_FILENAME
        lines = [
            self.problem,
            f"URL: {self.url}",
            "To use a file downloaded by hand, fetch it with",
            f"    curl -L -o {target} {self.url}",
            "and point audiotag at it with --vggish-checkpoint PATH or the environment variable "
            f"{ENV_CHECKPOINT}=PATH.",
        ]
        if self.url == params.CHECKPOINT_URL:
            lines.append(
                f"The released checkpoint is {params.CHECKPOINT_SIZE_BYTES:,} bytes with sha256 "
                f"{params.CHECKPOINT_SHA256} (check with `sha256sum`)."
            )
        return "\n".join(lines)


class _InterruptedError(Exception):
    """The transfer stopped part-way; the `.part` file is intact and can be resumed."""


class _RestartError(Exception):
    """The server's answer does not continue our `.part` file; start again from byte 0."""


def default_checkpoint_path() -> Path:
    """Where `audiotag download-models` puts the checkpoint: cache_dir() / params.CHECKPOINT_FILENAME."""
    return cache_dir() / params.CHECKPOINT_FILENAME


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _sha256_of(path: Path) -> hashlib._Hash:
    """An incremental sha256 object fed with the whole content of `path`."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            hasher.update(block)
    return hasher


@contextlib.contextmanager
def _exclusive_lock(dest: Path, url: str) -> Iterator[None]:
    """Hold an exclusive flock on `<dest>.lock` (left in place afterwards; removing it would race)."""
    if fcntl is None:
        yield
        return
    lock_path = dest.with_name(dest.name + ".lock")
    try:
        handle = open(lock_path, "a")  # noqa: SIM115 - closed below, after the lock is released
    except OSError as exc:
        raise DownloadError(f"cannot create the lock file {lock_path}: {exc}", url, dest) from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("another process is downloading %s; waiting for it (lock file %s)", dest, lock_path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _existing_is_valid(dest: Path, expected_size: int, expected_sha256: str) -> bool:
    """True when `dest` already holds the expected bytes (size first, then sha256)."""
    if not dest.is_file():
        return False
    size = dest.stat().st_size
    if size != expected_size:
        logger.warning("%s is %d bytes, expected %d; downloading it again", dest, size, expected_size)
        return False
    digest = _sha256_of(dest).hexdigest()
    if digest != expected_sha256:
        logger.warning("%s has sha256 %s, expected %s; downloading it again", dest, digest, expected_sha256)
        return False
    logger.info("%s is already present and verified (%d bytes, sha256 ok)", dest, size)
    return True


class _PartFile:
    """The `.part` file being written, its size in bytes and the sha256 of its content so far."""

    def __init__(self, path: Path, expected_size: int):
        self.path = path
        if path.is_file() and path.stat().st_size > expected_size:
            logger.warning("discarding %s: larger than the expected %d bytes", path, expected_size)
            path.unlink()
        if path.is_file() and path.stat().st_size > 0:
            self.hasher = _sha256_of(path)  # re-hash what an earlier attempt wrote, never trust it
            self.size = path.stat().st_size
        else:
            self.hasher = hashlib.sha256()
            self.size = 0
        self.handle = open(path, "ab")  # noqa: SIM115 - owned by this object, closed by close()/discard()

    def append(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.hasher.update(chunk)
        self.size += len(chunk)

    def truncate(self) -> None:
        self.handle.truncate(0)
        self.hasher = hashlib.sha256()
        self.size = 0

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def _read_body(response: http.client.HTTPResponse, part: _PartFile, expected_size: int, url: str,
               dest: Path, bar: tqdm) -> None:
    """Append the response body to `part`, refusing to grow it past `expected_size`."""
    import http.client

    while True:
        try:
            chunk = response.read(CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise _InterruptedError(f"{type(exc).__name__}: {exc}") from exc
        if not chunk:
            break
        if part.size + len(chunk) > expected_size:
            part.discard()
            raise DownloadError(
                f"size mismatch downloading to {dest}: expected {expected_size} bytes, the server sent more "
                f"(at least {part.size + len(chunk)}); the partial file was deleted",
                url, dest,
            )
        try:
            part.append(chunk)
        except OSError as exc:
            raise DownloadError(f"cannot write {part.path}: {exc}", url, dest) from exc
        bar.update(len(chunk))
    if part.size < expected_size:
        raise _InterruptedError(f"the connection closed after {part.size} of {expected_size} bytes")


def _check_response(response: http.client.HTTPResponse, part: _PartFile, expected_size: int, url: str,
                    dest: Path, bar: tqdm) -> None:
    """Make `part` line up with where the response body starts, and check the announced sizes."""
    status = response.status
    start = 0
    total: int | None = None
    if status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != part.size:
            logger.warning("the server answered the Range request with %r; restarting %s from the beginning",
                           response.headers.get("Content-Range"), dest)
            part.truncate()
            raise _RestartError
        start = part.size
        total = None if match.group(3) == "*" else int(match.group(3))
    elif status == 200:
        if part.size:
            logger.info("the server ignored the Range request; restarting %s from the beginning", dest)
            part.truncate()
            bar.reset(total=expected_size)
    else:
        raise DownloadError(f"unexpected HTTP status {status} {response.reason}", url, dest)
    length = response.headers.get("Content-Length")
    if total is None and length is not None and length.strip().isdigit():
        total = start + int(length)
    if total is not None and total != expected_size:
        part.discard()
        raise DownloadError(
            f"size mismatch downloading to {dest}: expected {expected_size} bytes, the server reports "
            f"{total}; the partial file was deleted",
            url, dest,
        )


def _open(url: str, part: _PartFile, expected_size: int, timeout: float,
          dest: Path) -> http.client.HTTPResponse:
    """Send the GET (with a Range header when resuming); network and HTTP failures become DownloadError."""
    import http.client
    import urllib.error
    import urllib.request

    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code == 416 and part.size:
                match = _UNSATISFIED_RANGE.match(exc.headers.get("Content-Range", ""))
                if match is not None and int(match.group(1)) != expected_size:
                    part.discard()
                    raise DownloadError(
                        f"size mismatch downloading to {dest}: expected {expected_size} bytes, the server "
                        f"reports {match.group(1)}; the partial file was deleted",
                        url, dest,
                    ) from exc
                logger.warning("the server refused to resume at byte %d (HTTP 416); restarting %s",
                               part.size, dest)
                part.truncate()
                raise _RestartError from exc
            raise DownloadError(
                f"the server answered HTTP {exc.code} {exc.reason} for {url}", url, dest
            ) from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot reach the server ({exc.reason}); are you offline?", url, dest) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(
            f"cannot reach the server ({type(exc).__name__}: {exc}); are you offline?", url, dest
        ) from exc


def _fetch(url: str, part: _PartFile, expected_size: int, timeout: float, retries: int, dest: Path,
           bar: tqdm) -> None:
    """Fill `part` to `expected_size` bytes, resuming up to `retries` times after an interruption."""
    interruptions = 0
    restarted = False
    while True:
        try:
            response = _open(url, part, expected_size, timeout, dest)
            with response:
                _check_response(response, part, expected_size, url, dest, bar)
                _read_body(response, part, expected_size, url, dest, bar)
            return
        except _RestartError as exc:
            bar.reset(total=expected_size)
            if restarted:
                raise DownloadError("the server keeps answering with bytes that do not continue the "
                                    "partial file", url, dest) from exc
            restarted = True
        except _InterruptedError as exc:
            interruptions += 1
            if interruptions > retries:
                kept = f"; {part.path} is kept and the next attempt resumes from it" if part.size else ""
                raise DownloadError(
                    f"the download was interrupted ({exc}) after {part.size} of {expected_size} bytes{kept}",
                    url, dest,
                ) from exc
            logger.warning("download of %s interrupted (%s); resuming at byte %d (retry %d of %d)",
                           url, exc, part.size, interruptions, retries)


def _fsync_dir(directory: Path) -> None:
    """Persist a rename in `directory` (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def download_file(url: str, dest: str | Path, *, expected_size: int, expected_sha256: str,
                  progress: bool = True, timeout: float = 10.0, retries: int = 3) -> Path:
    """Download `url` to `dest`, verifying `expected_size` (bytes) and `expected_sha256` (hex digest).

    Streams into `<dest>.part` in the same directory, resuming an existing `.part` with an HTTP Range
    request (a server that ignores Range, or answers 416, restarts from byte 0), then fsyncs and
    `os.replace`s it into `dest`. A `dest` already holding the expected bytes is returned untouched.
    `timeout` (seconds) bounds connecting and every read; an interrupted transfer is resumed at most
    `retries` times. `progress` shows a tqdm bar on stderr.

    Raises DownloadError (naming the URL, expected vs got on a mismatch, and how to supply the file by
    hand). After a network failure the `.part` file is kept; after a size or sha256 mismatch it is deleted.
    """
    from tqdm import tqdm

    dest = Path(dest).expanduser()
    expected_sha256 = expected_sha256.lower()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the directory {dest.parent}: {exc}", url, dest) from exc
    with _exclusive_lock(dest, url):
        if _existing_is_valid(dest, expected_size, expected_sha256):
            return dest
        try:
            part = _PartFile(_part_path(dest), expected_size)
        except OSError as exc:
            raise DownloadError(f"cannot write {_part_path(dest)}: {exc}", url, dest) from exc
        try:
            free = shutil.disk_usage(dest.parent).free
            if free < expected_size - part.size:
                raise DownloadError(
                    f"not enough disk space in {dest.parent}: {expected_size - part.size} bytes needed, "
                    f"{free} free",
                    url, dest,
                )
            if part.size:
                logger.info("resuming %s at byte %d of %d", part.path, part.size, expected_size)
            with tqdm(total=expected_size, initial=part.size, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress) as bar:
                if part.size < expected_size:
                    _fetch(url, part, expected_size, timeout, retries, dest, bar)
            digest = part.hasher.hexdigest()
            if digest != expected_sha256:
                part.discard()
                raise DownloadError(
                    f"sha256 mismatch for {dest}: expected {expected_sha256}, got {digest}; "
                    "the corrupt download was deleted",
                    url, dest,
                )
            try:
                part.handle.flush()
                os.fsync(part.handle.fileno())
                part.close()
                os.replace(part.path, dest)
            except OSError as exc:
                raise DownloadError(f"cannot move {part.path} to {dest}: {exc}", url, dest) from exc
        finally:
            part.close()
            if part.size == 0:
                part.path.unlink(missing_ok=True)  # nothing worth resuming
        _fsync_dir(dest.parent)
    logger.info("downloaded %s to %s (%d bytes, sha256 verified)", url, dest, expected_size)
    return dest


def download_checkpoint(dest: str | Path | None = None, *, url: str = params.CHECKPOINT_URL,
                        progress: bool = True, timeout: float = 10.0) -> Path:
    """Download the released VGGish checkpoint to `dest` (default: default_checkpoint_path()).

    An existing directory as `dest` receives params.CHECKPOINT_FILENAME. Verifies
    params.CHECKPOINT_SIZE_BYTES and params.CHECKPOINT_SHA256; see download_file.
    """
    dest = default_checkpoint_path() if dest is None else Path(dest).expanduser()
    if dest.is_dir():
        dest = dest / params.CHECKPOINT_FILENAME
    return download_file(url, dest, expected_size=params.CHECKPOINT_SIZE_BYTES,
                         expected_sha256=params.CHECKPOINT_SHA256, progress=progress, timeout=timeout)


def _given_file(path: str | Path, origin: str) -> Path:
    """`path` as an existing file, or DownloadError naming it and where it came from."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DownloadError(f"the VGGish checkpoint given by {origin} does not exist: {resolved}",
                            dest=resolved)
    if not resolved.is_file():
        raise DownloadError(f"the VGGish checkpoint given by {origin} is not a file: {resolved}",
                            dest=resolved)
    return resolved


def resolve_checkpoint(explicit: str | Path | None = None, *, download: bool = True,
                       progress: bool = True) -> Path:
    """Find the VGGish checkpoint to use.

    Order: `explicit` (e.g. --vggish-checkpoint; must exist) > $AUDIOTAG_VGGISH_CHECKPOINT (must exist) >
    default_checkpoint_path() when present with the released size > a download to that path when
    `download` is True. Raises DownloadError when none applies or the download fails.
    """
    if explicit is not None and str(explicit) != "":
        path = _given_file(explicit, "--vggish-checkpoint (or the explicit checkpoint argument)")
        logger.info("using the VGGish checkpoint %s (given explicitly)", path)
        return path
    from_env = os.environ.get(ENV_CHECKPOINT)
    if from_env:
        path = _given_file(from_env, f"the environment variable {ENV_CHECKPOINT}")
        logger.info("using the VGGish checkpoint %s (from %s)", path, ENV_CHECKPOINT)
        return path
    cached = default_checkpoint_path()
    if cached.is_file():
        size = cached.stat().st_size
        if size == params.CHECKPOINT_SIZE_BYTES:
            logger.info("using the cached VGGish checkpoint %s", cached)
            return cached
        logger.warning("ignoring %s: %d bytes, expected %d", cached, size, params.CHECKPOINT_SIZE_BYTES)
    if not download:
        raise DownloadError(
            f"no VGGish checkpoint: none given, {ENV_CHECKPOINT} is not set and {cached} is missing; "
            "run `audiotag download-models` to download it",
            dest=cached,
        )
    logger.info("the VGGish checkpoint is missing; downloading it (~%d MB) from %s to %s",
                round(params.CHECKPOINT_SIZE_BYTES / 1e6), params.CHECKPOINT_URL, cached)
    return download_checkpoint(cached, progress=progress)
