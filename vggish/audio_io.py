"""Decoding audio files with libsndfile (soundfile) into mono float64 samples, whole or block by block.

Channels are averaged. PCM-16 data is read as int16 and divided by 32768.0, giving exactly the
reference's samples; other encodings (8/24/32-bit PCM, float, FLAC, Ogg Vorbis, MP3, ...) are
decoded by libsndfile to float64 at full precision (the reference would first truncate them to 16 bits).
Every problem with a file raises AudioFileError naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from vggish.errors import AudioFileError

PCM16_SCALE = 32768.0
DEFAULT_BLOCK_FRAMES = 1 << 18  # ~6 s at 44.1 kHz: bounded memory whatever the file length


@dataclass(frozen=True)
class AudioInfo:
    """What libsndfile reports about a file: sample rate (Hz), channels, frames (may be an estimate
    for compressed formats), container format and sample subtype."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str


def _check_path(path: Path) -> None:
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioFileError(path, "symbolic link loop (too many levels of symbolic links)") from None
        if path.is_symlink():
            raise AudioFileError(path, "broken symbolic link (its target does not exist)") from None
        if exc.errno == errno.ENOENT:
            raise AudioFileError(path, "file not found") from None
        raise AudioFileError(path, exc.strerror or str(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise AudioFileError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(info.st_mode):
        raise AudioFileError(path, "not a regular file (a FIFO, socket or device), not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioFileError(path, "permission denied")
    if info.st_size == 0:
        raise AudioFileError(path, "file is empty (0 bytes)")


def _soundfile(path: Path) -> sf.SoundFile:
    """libsndfile takes UTF-8 names only: a name with other bytes is opened here, passed as a descriptor."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        fd = os.open(path, os.O_RDONLY)
        try:
            return sf.SoundFile(fd, closefd=True)
        except BaseException:
            with contextlib.suppress(OSError):  # libsndfile may have closed it already
                os.close(fd)
            raise
    return sf.SoundFile(str(path))


def _open(path: Path) -> sf.SoundFile:
    _check_path(path)
    try:
        handle = _soundfile(path)
    except OSError as exc:
        raise AudioFileError(path, exc.strerror or str(exc)) from exc
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(path, f"not a readable audio file, or corrupt ({exc})") from exc
    if handle.channels < 1:
        handle.close()
        raise AudioFileError(path, "has no audio channels")
    if handle.samplerate < 1:
        handle.close()
        raise AudioFileError(path, f"invalid sample rate {handle.samplerate}")
    return handle


def audio_info(path: str | Path) -> AudioInfo:
    """Sample rate, channel count, frame count and format of `path` (AudioFileError if unreadable)."""
    path = Path(path)
    with _open(path) as handle:
        return AudioInfo(handle.samplerate, handle.channels, handle.frames, handle.format, handle.subtype)


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average channels: [n, channels] -> float64 [n]; a 1-D array is returned as float64 unchanged."""
    block = np.asarray(block, dtype=np.float64)
    return block if block.ndim == 1 else np.mean(block, axis=1)


def iter_mono_blocks(
    path: str | Path, block_frames: int = DEFAULT_BLOCK_FRAMES, *, start_frame: int = 0,
    stop_frame: int | None = None,
) -> Iterator[np.ndarray]:
    """Decode `path` block by block: yields float64 mono arrays of up to `block_frames` samples at the
    file's own sample rate. Only one block is in memory at a time. Raises AudioFileError when the
    file cannot be opened or decoded, or holds no samples (before yielding anything in that case).
    `start_frame` / `stop_frame` (input sample frames) read only that part of the file.
    """
    path = Path(path)
    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    with _open(path) as handle:
        if start_frame:
            try:
                handle.seek(start_frame)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioFileError(path, f"cannot seek to frame {start_frame} ({exc})") from exc
        frames = None if stop_frame is None else max(0, stop_frame - start_frame)
        yield from iter_handle_blocks(handle, path, block_frames, frames=frames)


def open_stream(source: int | BinaryIO, label: str) -> sf.SoundFile:
    """Open an audio stream that cannot be checked as a path: a file descriptor (pipes work for WAV and
    Ogg, libsndfile reads them without seeking) or a file-like object. Raises AudioFileError naming
    `label`."""
    try:
        handle = sf.SoundFile(source, closefd=False) if isinstance(source, int) else sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = getattr(exc, "error_string", None) or exc
        raise AudioFileError(label, f"not a readable audio stream, or corrupt ({reason})") from exc
    if handle.channels < 1 or handle.samplerate < 1:
        handle.close()
        raise AudioFileError(label, f"invalid stream: {handle.channels} channels at {handle.samplerate} Hz")
    return handle


def iter_handle_blocks(
    handle: sf.SoundFile, label: str | Path, block_frames: int = DEFAULT_BLOCK_FRAMES, *,
    frames: int | None = None,
) -> Iterator[np.ndarray]:
    """Decode an open SoundFile from its current position block by block into float64 mono arrays (PCM-16
    exactly as int16 / 32768), at most `frames` sample frames (None: to the end), as iter_mono_blocks does
    for a path. Raises AudioFileError naming `label`, also when there are no samples."""
    pcm16 = handle.subtype == "PCM_16"
    total = 0
    while frames is None or total < frames:
        size = block_frames if frames is None else min(block_frames, frames - total)
        try:
            block = handle.read(size, dtype="int16" if pcm16 else "float64", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioFileError(label, f"decoding failed after {total} frames ({exc})") from exc
        if len(block) == 0:
            break
        total += len(block)
        mono = to_mono(block)
        yield mono / PCM16_SCALE if pcm16 else mono
    if total == 0:
        raise AudioFileError(label, "contains no audio samples")


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """The whole file as float64 mono samples [n] and its sample rate (Hz)."""
    sample_rate = audio_info(path).sample_rate
    blocks = list(iter_mono_blocks(path))
    return np.concatenate(blocks), sample_rate


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The whole file as float32 mono samples [n] in [-1, 1] and its native sample rate (Hz).

    Channels are averaged; PCM-16 is exactly int16 / 32768. For small files: memory grows with length.
    """
    samples, sample_rate = read_mono(path)
    return samples.astype(np.float32), sample_rate
