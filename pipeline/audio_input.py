"""Audio from standard input (`audiotag tag -`): WAV, FLAC or Ogg, or headerless PCM, as mono sample blocks.

Decoding reuses vggish.audio_io (libsndfile; PCM-16 exactly as int16 / 32768, channels averaged), so a
stream gives the same samples as the same audio read from a file. Pipes are read as they fill: a block is
handed on as soon as it has arrived, so a live source is tagged with little delay; memory stays flat.

How a pipe is opened (libsndfile cannot seek in one): WAV and Ogg through a pipe descriptor, which
libsndfile reads front to back; FLAC through a file-like reader that keeps the last READER_KEEP_BYTES of
the stream, because libsndfile's FLAC decoder seeks back a little while it reads. A pipe is decoded in a
thread (see open_container). A regular file redirected to stdin is opened through its descriptor.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vggish import audio_io
from vggish.errors import AudioFileError

logger = logging.getLogger(__name__)

STDIN_LABEL = "<stdin>"
RAW_ENCODINGS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}  # --raw-format -> sample type
READ_BYTES = 1 << 16  # most bytes taken from a pipe at once; a read returns whatever has arrived
PIPE_BLOCK_SECONDS = 0.02  # container streams on a pipe are decoded in blocks of this length
QUEUED_BLOCKS = 64  # decoded blocks waiting for the tagger (64 x 20 ms)
READER_KEEP_BYTES = 1 << 20  # how far back the FLAC pipe reader can seek
_UNKNOWN_LENGTH = 1 << 62  # the length a pipe reader reports to libsndfile (the stream's end is unknown)
_MAGIC_BYTES = 4


@dataclass(frozen=True)
class RawFormat:
    """Headerless PCM: `encoding` one of RAW_ENCODINGS (little-endian), sample rate in Hz, channels."""

    encoding: str
    sample_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.encoding not in RAW_ENCODINGS:
            raise ValueError(f"raw format must be one of {', '.join(RAW_ENCODINGS)}, got {self.encoding!r}")
        if self.sample_rate < 1 or self.channels < 1:
            raise ValueError("raw PCM needs a positive sample rate and channel count")


@dataclass
class AudioStream:
    """A decoded stream: float64 mono `blocks` at `sample_rate` Hz, each yielded as soon as it is read.

    `frames` counts the samples yielded so far (so `seconds` is the duration once `blocks` is exhausted).
    """

    label: str
    sample_rate: int
    blocks: Iterator[np.ndarray] = field(repr=False)
    frames: int = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            self.frames += len(block)
            yield block

    @property
    def seconds(self) -> float:
        return self.frames / float(self.sample_rate)


def open_raw(fd: int, raw: RawFormat, label: str = STDIN_LABEL) -> AudioStream:
    """Headerless PCM from file descriptor `fd`; a trailing partial frame is dropped with a warning."""
    return AudioStream(label, raw.sample_rate, _raw_blocks(fd, raw, label))


def _raw_blocks(fd: int, raw: RawFormat, label: str) -> Iterator[np.ndarray]:
    dtype = RAW_ENCODINGS[raw.encoding]
    frame_bytes = dtype.itemsize * raw.channels
    pending = b""
    while chunk := os.read(fd, READ_BYTES):
        pending += chunk
        usable = len(pending) - len(pending) % frame_bytes
        if not usable:
            continue
        samples = np.frombuffer(pending[:usable], dtype=dtype).reshape(-1, raw.channels)
        pending = pending[usable:]
        mono = audio_io.to_mono(samples)
        yield mono / audio_io.PCM16_SCALE if raw.encoding == "s16le" else mono
    if pending:
        logger.warning("%s: dropped %d trailing bytes (less than one %d-byte frame)", label, len(pending),
                       frame_bytes)


def open_container(fd: int, label: str = STDIN_LABEL) -> AudioStream:
    """WAV, FLAC, Ogg (or anything libsndfile reads) from file descriptor `fd`, a pipe or a regular file.
    Raises AudioFileError naming `label` when the stream is not audio or is empty.

    A pipe is opened and decoded in a thread that hands blocks over through a short queue: libsndfile
    retries a read that a signal interrupts, so Ctrl-C could not stop a stalled pipe read in this thread."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        handle = audio_io.open_stream(fd, label)
        return AudioStream(label, handle.samplerate, _handle_blocks(handle, label))
    handover: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=QUEUED_BLOCKS)

    def decode() -> None:
        try:
            head = _read_exactly(fd, _MAGIC_BYTES)
            if not head:
                raise AudioFileError(label, "contains no data (the stream is empty)")
            source = _PipeReader(fd, head) if head == b"fLaC" else _relay(fd, head)
            handle = audio_io.open_stream(source, label)
            handover.put(("rate", handle.samplerate))
            for block in _handle_blocks(handle, label):
                handover.put(("block", block))
            handover.put(("end", None))
        except Exception as exc:  # handed to the reading thread, which raises it
            handover.put(("error", exc))

    threading.Thread(target=decode, name="stdin-decoder", daemon=True).start()
    kind, value = handover.get()
    if kind == "error":
        raise value
    return AudioStream(label, value, _handed_over(handover))


def _handed_over(handover: queue.Queue[tuple[str, Any]]) -> Iterator[np.ndarray]:
    while True:
        kind, value = handover.get()  # a signal (Ctrl-C) interrupts the wait
        if kind == "error":
            raise value
        if kind == "end":
            return
        yield value


def _handle_blocks(handle: Any, label: str) -> Iterator[np.ndarray]:
    block_frames = max(1, round(handle.samplerate * PIPE_BLOCK_SECONDS))
    with handle:
        yield from audio_io.iter_handle_blocks(handle, label, block_frames)


def _read_exactly(fd: int, count: int) -> bytes:
    data = b""
    while len(data) < count and (chunk := os.read(fd, count - len(data))):
        data += chunk
    return data


def _relay(fd: int, head: bytes) -> int:
    """A new pipe carrying `head` and then everything else read from `fd` (we had to read the first bytes
    to recognise FLAC; a pipe cannot give them back). A daemon thread copies; returns the read end."""
    read_end, write_end = os.pipe()

    def copy() -> None:
        try:
            os.write(write_end, head)
            while chunk := os.read(fd, READ_BYTES):
                os.write(write_end, chunk)
        except OSError:  # the reader has gone (closed or interrupted): nothing left to deliver
            pass
        finally:
            os.close(write_end)

    threading.Thread(target=copy, name="stdin-relay", daemon=True).start()
    return read_end


class _PipeReader:
    """A file-like view of a pipe for libsndfile's virtual I/O: reads forward, and seeks anywhere within the
    last READER_KEEP_BYTES; the length it reports is unknown (huge)."""

    def __init__(self, fd: int, head: bytes):
        self._fd = fd
        self._data = bytearray(head)  # stream bytes [self._base, self._base + len(self._data))
        self._base = 0
        self._pos = 0
        self._eof = False

    def _fill(self, end: int) -> None:
        while not self._eof and self._base + len(self._data) < end:
            chunk = os.read(self._fd, READ_BYTES)
            if not chunk:
                self._eof = True
            self._data += chunk
        surplus = len(self._data) - READER_KEEP_BYTES
        if surplus > 0 and self._base + surplus <= self._pos:
            del self._data[:surplus]
            self._base += surplus

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise OSError("a pipe cannot be read to its end at once")
        self._fill(self._pos + size)
        start = self._pos - self._base
        out = bytes(self._data[start : start + size])
        self._pos += len(out)
        return out

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = {os.SEEK_SET: offset, os.SEEK_CUR: self._pos + offset, os.SEEK_END: _UNKNOWN_LENGTH + offset}
        position = target[whence]
        if position < self._base:
            raise OSError(f"cannot seek back to byte {position} of a pipe (kept from {self._base})")
        self._pos = position
        return position

    def tell(self) -> int:
        return self._pos


def open_file(path: str) -> AudioStream:
    """An audio file as a stream of blocks (vggish.audio_io: the same samples as tagging the file)."""
    sample_rate = audio_io.audio_info(path).sample_rate
    return AudioStream(path, sample_rate, audio_io.iter_mono_blocks(path))


def open_input(source: str, raw: RawFormat | None = None, stdin_fd: int = 0) -> AudioStream:
    """`source` "-" is standard input (raw PCM when `raw` is given, else a container); else a file path."""
    if source != "-":
        if raw is not None:
            raise ValueError("--raw-format applies to standard input (-) only")
        return open_file(source)
    if raw is not None:
        return open_raw(stdin_fd, raw)
    return open_container(stdin_fd)
