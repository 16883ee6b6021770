"""Audio -> VGGish input examples: float32 [N, 96, 64] log-mel patches, names as in Google's vggish_input.

Mono by averaging channels, resampling to 16 kHz with resampy's default filter, the reference's
log-mel (see mel_features), patches of 96 frames every `hop_seconds` (default 0.96 s: no overlap).
Clips shorter than one patch (0.975 s) are zero-padded to one patch with a warning unless
pad_short=False, which gives the reference's behaviour: no examples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vggish import audio_io, framing, mel_features, params, resample

EXAMPLE_SHAPE = (params.NUM_FRAMES, params.NUM_BANDS)


def _as_float_samples(data: np.ndarray) -> np.ndarray:
    """int16 -> x / 32768 (as the reference's WAV reader), other ints -> x / full scale, floats -> float64."""
    data = np.asarray(data)
    if data.dtype == np.int16:
        return data / audio_io.PCM16_SCALE
    if np.issubdtype(data.dtype, np.signedinteger):
        return data / float(-np.iinfo(data.dtype).min)
    if not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"samples must be signed integers or floats, got {data.dtype}")
    return data.astype(np.float64, copy=False)


def waveform_to_examples(
    data: np.ndarray, sample_rate: int, *, hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
    pad_short: bool = True,
) -> np.ndarray:
    """Waveform -> float32 examples [N, 96, 64].

    data: [n] mono or [n, channels] (channels are averaged), int16 (scaled by 1/32768) or float
    in [-1, 1]; sample_rate in Hz (resampled to 16 kHz when different).
    """
    data = _as_float_samples(data)
    if data.ndim not in (1, 2):
        raise ValueError(f"waveform must be [n] or [n, channels], got shape {data.shape}")
    samples = resample.resample(audio_io.to_mono(data), int(sample_rate))
    if pad_short:
        samples = framing.pad_short(samples)
    log_mel = mel_features.log_mel_spectrogram(samples)
    return framing.frame_examples(log_mel, framing.hop_frames(hop_seconds))


def wavfile_to_examples(
    path: str | Path, *, hop_seconds: float = params.EXAMPLE_HOP_SECONDS, pad_short: bool = True
) -> np.ndarray:
    """Audio file (any format libsndfile reads) -> float32 examples [N, 96, 64]. Reads the whole file;
    use iter_file_examples for long files. Raises AudioFileError for unreadable files."""
    samples, sample_rate = audio_io.read_mono(path)
    samples = resample.resample(samples, sample_rate)
    if pad_short:
        samples = framing.pad_short(samples, str(path))
    log_mel = mel_features.log_mel_spectrogram(samples)
    return framing.frame_examples(log_mel, framing.hop_frames(hop_seconds))


def iter_file_examples(
    path: str | Path, *, hop_seconds: float = params.EXAMPLE_HOP_SECONDS, pad_short: bool = True,
    block_frames: int = audio_io.DEFAULT_BLOCK_FRAMES,
) -> Iterator[np.ndarray]:
    """Stream a file block by block (`block_frames` input frames at a time): yields float32
    [n_i, 96, 64] arrays whose concatenation equals wavfile_to_examples(path): exactly at 16 kHz;
    when resampling, the 16 kHz samples agree to ~1e-11 and the float32 log-mel to within its
    rounding (tested <= 1e-5). Memory does not grow with the file's length."""
    hop = framing.hop_frames(hop_seconds)
    sample_rate = audio_io.audio_info(path).sample_rate
    chunks = resample.resample_stream(audio_io.iter_mono_blocks(path, block_frames), sample_rate)
    if pad_short:
        chunks = framing.pad_short_stream(chunks, str(path))
    yield from framing.example_stream(framing.log_mel_stream(chunks), hop)


def example_start_times(num_examples: int, hop_seconds: float = params.EXAMPLE_HOP_SECONDS) -> np.ndarray:
    """Start time in seconds of each of `num_examples` examples: float64 [N] = i * hop (hop rounded to
    whole 10 ms frames, as the examples are)."""
    return np.arange(num_examples) * (framing.hop_frames(hop_seconds) * params.STFT_HOP_LENGTH_SECONDS)


def count_examples(num_frames: int, sample_rate: int, *, hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
                   pad_short: bool = True) -> int:
    """Examples that a file of `num_frames` input samples at `sample_rate` Hz gives (its length in the
    header is enough: used to plan segments without decoding)."""
    samples = resample.output_length(num_frames, sample_rate)
    if pad_short and 0 < samples < framing.MIN_EXAMPLE_SAMPLES:
        return 1
    if samples < framing.MIN_EXAMPLE_SAMPLES:
        return 0
    frames = 1 + (samples - mel_features.WINDOW_LENGTH_SAMPLES) // mel_features.HOP_LENGTH_SAMPLES
    return 1 + (frames - params.NUM_FRAMES) // framing.hop_frames(hop_seconds)


def iter_segment_examples(
    path: str | Path, first_example: int, num_examples: int | None = None, *,
    hop_seconds: float = params.EXAMPLE_HOP_SECONDS, block_frames: int = audio_io.DEFAULT_BLOCK_FRAMES,
) -> Iterator[np.ndarray]:
    """Examples [first_example, first_example + num_examples) of a file (to its end when num_examples is
    None), decoding only that part of it plus the resampler's filter margin: float32 [n_i, 96, 64] blocks
    whose concatenation equals the same rows of iter_file_examples(path) (exactly at 16 kHz; to the
    streaming resampler's ~1e-11 on the samples otherwise). Segments of one file can thus be embedded
    independently, e.g. on different machines. No short-clip padding: a segment starts past one example.
    """
    if first_example < 0 or (num_examples is not None and num_examples < 1):
        raise ValueError(f"bad segment: first example {first_example}, {num_examples} examples")
    hop = framing.hop_frames(hop_seconds)
    hop_samples = hop * mel_features.HOP_LENGTH_SAMPLES
    sample_rate = audio_io.audio_info(path).sample_rate
    # The 16 kHz samples this segment needs: [out_start, out_stop).
    out_start = first_example * hop_samples
    out_stop = None
    if num_examples is not None:
        out_stop = (first_example + num_examples - 1) * hop_samples + framing.MIN_EXAMPLE_SAMPLES
    # Input samples to decode: from a point of the common sample grid of the two rates at least a filter
    # half-width before out_start, to a filter half-width (plus one grid step) after out_stop.
    step_in, step_out = 1, 1
    margin = 0
    if sample_rate != params.SAMPLE_RATE:
        gcd = math.gcd(sample_rate, params.SAMPLE_RATE)
        step_in, step_out = sample_rate // gcd, params.SAMPLE_RATE // gcd
        margin = resample.filter_half_width(sample_rate)
    in_start = max(0, (out_start * step_in // step_out - margin) // step_in * step_in)
    in_stop = None
    if out_stop is not None:
        in_stop = -(-out_stop * step_in // step_out) + margin + step_in
    offset = in_start // step_in * step_out  # the 16 kHz index of the first resampled sample
    blocks = audio_io.iter_mono_blocks(path, block_frames, start_frame=in_start, stop_frame=in_stop)
    chunks = _trim_stream(resample.resample_stream(blocks, sample_rate), out_start - offset,
                          None if out_stop is None else out_stop - offset)
    yield from framing.example_stream(framing.log_mel_stream(chunks), hop)


def _trim_stream(chunks: Iterator[np.ndarray], start: int, stop: int | None) -> Iterator[np.ndarray]:
    """Samples [start, stop) of a stream of blocks."""
    position = 0
    for chunk in chunks:
        lo, hi = max(start - position, 0), len(chunk) if stop is None else min(stop - position, len(chunk))
        position += len(chunk)
        if hi > lo:
            yield chunk[lo:hi]
        if stop is not None and position >= stop:
            return
