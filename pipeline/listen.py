"""`audiotag listen`: tag a sound card's input live, through `sounddevice` (optional extra `live`).

The device's callback copies each block into a bounded queue; the main thread reads the queue as an
AudioStream and tags it with pipeline.stream, exactly as `tag --stream` tags a pipe. The input stream is
made by a factory with sounddevice.InputStream's signature, so the plumbing can be exercised without an
audio device. Ctrl-C ends it: the open events are closed and the `end` line written.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import numpy as np

from pipeline.audio_input import AudioStream
from pipeline.errors import PipelineError
from pipeline.stream import StreamTagger, ready_record, run_stream, write_records
from pipeline.tagger import Tagger
from vggish import audio_io

logger = logging.getLogger(__name__)

BLOCK_SECONDS = 0.02  # the device delivers blocks of this length
MAX_QUEUED_SECONDS = 30.0  # audio waiting to be tagged before listening gives up (tagging too slow)
_POLL_SECONDS = 0.1

InputStreamFactory = Callable[..., Any]


class ListenError(PipelineError):
    """The sound card cannot be used (sounddevice or PortAudio missing, no such device, fell behind)."""


def sounddevice_input_stream() -> InputStreamFactory:
    """sounddevice.InputStream, or ListenError saying what to install."""
    try:
        import sounddevice
    except ImportError:
        raise ListenError("audiotag listen needs sounddevice: pip install 'audiotag[live]'") from None
    except OSError as exc:  # sounddevice is there, the PortAudio library is not
        raise ListenError(f"audiotag listen needs the PortAudio library ({exc}); on Debian/Ubuntu: "
                          "apt-get install libportaudio2") from None
    return sounddevice.InputStream


def default_sample_rate(device: str | int | None) -> int:
    """The input device's default sample rate (Hz), from sounddevice."""
    import sounddevice

    return int(sounddevice.query_devices(device, "input")["default_samplerate"])


class SoundCardInput:
    """Blocks from an input stream's callback, handed over through a queue of at most MAX_QUEUED_SECONDS.

    factory: called like sounddevice.InputStream(samplerate=, channels=, device=, dtype=, blocksize=,
    callback=); the object it returns needs start(), stop(), close() and `active`.
    """

    def __init__(self, factory: InputStreamFactory, sample_rate: int, channels: int = 1,
                 device: str | int | None = None):
        self.sample_rate = sample_rate
        self.label = f"sound card {device if device is not None else '(default)'}"
        blocksize = max(1, round(sample_rate * BLOCK_SECONDS))
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=max(1, round(MAX_QUEUED_SECONDS
                                                                                / BLOCK_SECONDS)))
        self._overflowed = False
        try:
            self._stream = factory(samplerate=sample_rate, channels=channels, device=device, dtype="float32",
                                   blocksize=blocksize, callback=self._callback)
        except Exception as exc:  # PortAudioError, ValueError: no such device, unsupported rate
            raise ListenError(f"{self.label}: cannot open it ({exc})") from exc

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status:
            logger.warning("%s: %s", self.label, status)
        try:
            self._queue.put_nowait(np.array(indata, dtype=np.float32, copy=True))
        except queue.Full:
            self._overflowed = True

    def blocks(self) -> Iterator[np.ndarray]:
        """Float64 mono blocks until the input stream stops (a device: until Ctrl-C)."""
        self._stream.start()
        try:
            while True:
                if self._overflowed:
                    raise ListenError(f"{self.label}: tagging fell more than {MAX_QUEUED_SECONDS:.0f} s "
                                      "behind the input")
                try:
                    block = self._queue.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if not self._stream.active and self._queue.empty():
                        return
                    continue
                yield audio_io.to_mono(block)
        finally:
            self._stream.stop()
            self._stream.close()

    def audio_stream(self) -> AudioStream:
        return AudioStream(self.label, self.sample_rate, self.blocks())


def listen(tagger: Tagger, out: TextIO, factory: InputStreamFactory, *, device: str | int | None = None,
           sample_rate: int | None = None, channels: int = 1, top_k: int = 10, events: bool = False) -> bool:
    """Tag the input device's audio until it stops or Ctrl-C, writing JSON lines to `out` (see
    pipeline.stream); the models are loaded and warmed up before the device is opened. Returns True when
    interrupted."""
    stream_tagger = StreamTagger(tagger, top_k=top_k, events=events)
    stream_tagger.warm_up()
    rate = sample_rate or default_sample_rate(device)
    card = SoundCardInput(factory, rate, channels, device)
    write_records(out, [ready_record(tagger, card.label)])
    return run_stream(stream_tagger, card.audio_stream(), out)
