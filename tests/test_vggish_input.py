"""Audio loading and input examples: formats, channels, resampling, short clips, errors, streaming."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import resampy
import soundfile as sf
from test_vggish_mel import oracle_log_mel_examples

import vggish
from vggish import AudioFileError, example_start_times, iter_file_examples, waveform_to_examples
from vggish import wavfile_to_examples as file_examples


def _tone(sample_rate: int, seconds: float, channels: int = 1, extra: int = 0, seed: int = 0) -> np.ndarray:
    """A chord plus a little noise, [n] or [n, channels], peak < 0.9."""
    n = int(sample_rate * seconds) + extra
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(seed)
    columns = [0.4 * np.sin(2 * np.pi * (440 + 110 * c) * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)
               + 0.02 * rng.standard_normal(n) for c in range(channels)]
    return columns[0] if channels == 1 else np.stack(columns, axis=1)


def _write(path: Path, data: np.ndarray, sample_rate: int, subtype: str = "PCM_16",
           fmt: str | None = None) -> Path:
    sf.write(str(path), data, sample_rate, subtype=subtype, format=fmt)
    return path


def _reference_examples(path: Path) -> np.ndarray:
    """TEST ORACLE: Google's wavfile_to_examples: int16 / 32768, channel mean, resampy, reference log-mel."""
    data, sample_rate = sf.read(str(path), dtype="int16")
    samples = data / 32768.0
    if samples.ndim > 1:
        samples = np.mean(samples, axis=1)
    if sample_rate != 16000:
        samples = resampy.resample(samples, sample_rate, 16000)
    return oracle_log_mel_examples(samples)


# --- samples ---------------------------------------------------------------------------------------

def test_read_audio_pcm16_is_exactly_int16_over_32768(tmp_path: Path) -> None:
    ints = (np.random.default_rng(0).integers(-32768, 32767, size=(5000, 2))).astype(np.int16)
    path = _write(tmp_path / "s.wav", ints, 22050)
    samples, sample_rate = vggish.read_audio(path)
    assert sample_rate == 22050 and samples.dtype == np.float32 and samples.shape == (5000,)
    np.testing.assert_array_equal(samples, (ints / 32768.0).mean(axis=1).astype(np.float32))


def test_int16_and_float_waveforms_agree() -> None:
    ints = (_tone(16000, 1.2) * 32767).astype(np.int16)
    expected = waveform_to_examples(ints / 32768.0, 16000)
    np.testing.assert_array_equal(waveform_to_examples(ints, 16000), expected)
    np.testing.assert_array_equal(waveform_to_examples(ints.astype(np.int32) << 16, 16000), expected)
    with pytest.raises(ValueError, match="signed integers or floats"):
        waveform_to_examples(ints.astype(np.uint16), 16000)


def test_stereo_is_the_mean_of_its_channels() -> None:
    stereo = _tone(16000, 2.0, channels=2)
    expected = waveform_to_examples(stereo.mean(axis=1), 16000)
    np.testing.assert_array_equal(waveform_to_examples(stereo, 16000), expected)


@pytest.mark.parametrize("sample_rate", [8000, 32000, 44100, 48000])
def test_resampling_matches_the_reference_oracle(sample_rate: int) -> None:
    samples = _tone(sample_rate, 2.1)
    expected = oracle_log_mel_examples(resampy.resample(samples, sample_rate, 16000))
    ours = waveform_to_examples(samples, sample_rate)
    assert ours.shape == expected.shape == (2, 96, 64)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("subtype", "fmt", "suffix", "atol"),
    [("PCM_U8", "WAV", "wav", 0.5), ("PCM_24", "WAV", "wav", 1e-3), ("PCM_32", "WAV", "wav", 1e-5),
     ("FLOAT", "WAV", "wav", 1e-5), ("DOUBLE", "WAV", "wav", 1e-5), ("PCM_16", "FLAC", "flac", 1e-2),
     ("PCM_24", "FLAC", "flac", 1e-3), ("VORBIS", "OGG", "ogg", None)],
)
def test_formats_decode_to_the_same_examples(tmp_path: Path, subtype: str, fmt: str, suffix: str,
                                             atol: float | None) -> None:
    signal = _tone(32000, 2.0, channels=2)
    path = _write(tmp_path / f"x.{suffix}", signal, 32000, subtype=subtype, fmt=fmt)
    ours = file_examples(path)
    exact = waveform_to_examples(signal, 32000)
    assert ours.shape == exact.shape == (2, 96, 64)
    loud = exact > np.log(0.01) + 4  # quantization noise only matters where the signal is quiet
    if atol is None:  # lossy: the band energies of the strong bands survive
        strong = exact.mean(axis=(0, 1)) > np.log(0.01) + 6
        np.testing.assert_allclose(ours.mean(axis=(0, 1))[strong], exact.mean(axis=(0, 1))[strong], atol=0.3)
    else:
        np.testing.assert_allclose(ours[loud], exact[loud], atol=atol)


def test_three_channels_are_averaged(tmp_path: Path) -> None:
    signal = _tone(16000, 1.5, channels=3)
    path = _write(tmp_path / "three.wav", signal, 16000, subtype="DOUBLE")
    np.testing.assert_array_equal(file_examples(path), waveform_to_examples(signal.mean(axis=1), 16000))


# --- real clips ------------------------------------------------------------------------------------

@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "count"),
    [("speech_16k.wav", 4), ("R9_ZSCveAHg_7s.wav", 7), ("bus_chatter.wav", 19), ("jingle_975ms.wav", 1)],
)
def test_real_clips_match_the_reference_oracle(shared_audio: Path, name: str, count: int) -> None:
    path = shared_audio / name
    ours = file_examples(path)
    expected = _reference_examples(path)
    assert ours.shape == expected.shape == (count, 96, 64)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.shared
def test_mp3_decodes(shared_audio: Path) -> None:
    samples, sample_rate = vggish.read_audio(shared_audio / "esc10_crying_baby_1.mp3")
    assert sample_rate == 44100 and 4.9 < len(samples) / sample_rate < 5.1
    assert 0.01 < np.abs(samples).max() <= 1.0
    assert file_examples(shared_audio / "esc10_crying_baby_2.mp3").shape == (5, 96, 64)


@pytest.mark.shared
def test_one_patch_clips_give_one_example_without_padding(shared_audio: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        for name in ("dog_975ms.wav", "baby_975ms.wav", "jingle_975ms.wav"):
            assert file_examples(shared_audio / name).shape == (1, 96, 64)
    assert not caplog.records


# --- short clips, hop, times -----------------------------------------------------------------------

def test_short_clip_is_zero_padded_with_a_warning(caplog) -> None:
    samples = _tone(16000, 0.5)
    with caplog.at_level(logging.WARNING):
        padded = waveform_to_examples(samples, 16000)
    assert padded.shape == (1, 96, 64)
    assert "zero-padded" in caplog.text
    expected = oracle_log_mel_examples(np.concatenate([samples, np.zeros(15600 - len(samples))]))
    np.testing.assert_allclose(padded, expected, atol=1e-5)
    np.testing.assert_array_equal(padded[0, 52:], np.float32(np.log(0.01)))  # frames wholly in the padding
    assert waveform_to_examples(samples, 16000, pad_short=False).shape == (0, 96, 64)


def test_short_resampled_and_empty_waveforms() -> None:
    assert waveform_to_examples(_tone(44100, 0.3), 44100).shape == (1, 96, 64)
    assert waveform_to_examples(np.zeros(0), 16000).shape == (1, 96, 64)
    assert waveform_to_examples(np.zeros(1), 44100, pad_short=False).shape == (0, 96, 64)


def test_hop_and_start_times() -> None:
    samples = _tone(16000, 3.0)
    half = waveform_to_examples(samples, 16000, hop_seconds=0.48)
    full = waveform_to_examples(samples, 16000)
    assert full.shape[0] == 3 and half.shape[0] == 5  # 1 + (298 - 96) // 48
    np.testing.assert_array_equal(half[2], full[1])
    np.testing.assert_allclose(example_start_times(3), [0.0, 0.96, 1.92])
    np.testing.assert_allclose(example_start_times(3, hop_seconds=0.5), [0.0, 0.5, 1.0])
    assert example_start_times(0).shape == (0,) and example_start_times(2).dtype == np.float64
    with pytest.raises(ValueError, match="hop_seconds"):
        waveform_to_examples(samples, 16000, hop_seconds=0.001)


# --- bad files -------------------------------------------------------------------------------------

def _wav_header(channels: int, sample_rate: int, data_bytes: int) -> bytes:
    block_align = max(channels, 1) * 2
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * block_align, block_align, 16)
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_bytes))


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "not found"), (b"", "empty"), (b"this is a text file, not audio\n" * 20, "not a readable audio"),
     (b"RIFF\x00\x10\x00\x00WAVEfmt \xff\xff" + bytes(200), "not a readable audio"),
     ("zero_channels", "not a readable audio|no audio channels"), ("no_samples", "no audio samples")],
)
def test_bad_files_raise_audio_file_error(tmp_path: Path, content: bytes | str | None, problem: str) -> None:
    path = tmp_path / "bad.wav"
    if content == "zero_channels":
        path.write_bytes(_wav_header(0, 16000, 400) + bytes(400))
    elif content == "no_samples":
        path.write_bytes(_wav_header(1, 16000, 0))
    elif content is not None:
        path.write_bytes(content)
    for call in (file_examples, lambda p: list(iter_file_examples(p)), vggish.read_audio):
        with pytest.raises(AudioFileError, match=problem) as info:
            call(path)
        assert str(path) in str(info.value)


def test_directory_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="directory"):
        file_examples(tmp_path)


# --- streaming -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("sample_rate", "seconds", "extra", "channels"),
    [(16000, 4.0, 7, 1), (44100, 3.5, 13, 2), (32000, 3.0, 1, 1), (48000, 2.9, 3, 2), (22050, 2.0, 5, 1)],
)
def test_streaming_equals_whole_file(tmp_path: Path, sample_rate: int, seconds: float, extra: int,
                                     channels: int) -> None:
    path = _write(tmp_path / "long.wav", _tone(sample_rate, seconds, channels, extra), sample_rate)
    whole = file_examples(path)
    for block_frames in (1001, 7919, 1 << 18):
        streamed = np.concatenate(list(iter_file_examples(path, block_frames=block_frames)))
        assert streamed.shape == whole.shape
        if sample_rate == 16000:
            np.testing.assert_array_equal(streamed, whole)
        else:
            np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)
    for hop in (0.5, 1.5):
        streamed = np.concatenate(list(iter_file_examples(path, hop_seconds=hop, block_frames=3001)))
        np.testing.assert_allclose(streamed, file_examples(path, hop_seconds=hop), rtol=0, atol=1e-5)


def test_streaming_short_file_is_padded_like_the_whole_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "short.wav", _tone(44100, 0.4), 44100)
    streamed = np.concatenate(list(iter_file_examples(path, block_frames=1000)))
    np.testing.assert_allclose(streamed, file_examples(path), atol=1e-5)
    assert list(iter_file_examples(path, pad_short=False)) == []


@pytest.mark.shared
def test_streaming_real_mp3_equals_whole_file(shared_audio: Path) -> None:
    # libsndfile's MP3 decoder rounds differently for different read sizes, so compare at the default one.
    path = shared_audio / "esc10_crying_baby_1.mp3"
    np.testing.assert_array_equal(np.concatenate(list(iter_file_examples(path))), file_examples(path))


def test_streaming_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    import tracemalloc

    def peak_bytes(seconds: float) -> int:
        path = _write(tmp_path / f"{seconds}.wav", _tone(8000, seconds, channels=2), 8000)
        tracemalloc.start()
        count = sum(len(block) for block in iter_file_examples(path, block_frames=8000))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == 1 + (1 + (int(seconds * 16000) - 400) // 160 - 96) // 96
        return peak

    peak_bytes(2.0)  # one-off allocations (resampy's filter table, numba) out of the way
    short, long = peak_bytes(15.0), peak_bytes(60.0)
    assert long < short + 256 * 1024, (short, long)  # 4x the audio, same working set


def test_damaged_flac_raises_audio_file_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "damaged.flac", _tone(16000, 3.0), 16000, fmt="FLAC")
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 2000] = bytes(2000)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioFileError, match="decoding failed") as info:
        list(iter_file_examples(path, block_frames=4096))
    assert str(path) in str(info.value)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "locked.wav", _tone(16000, 1.0), 16000)
    monkeypatch.setattr("vggish.audio_io.os.access", lambda *_: False)  # as root, chmod would not stop us
    with pytest.raises(AudioFileError, match="permission denied"):
        file_examples(path)


@pytest.mark.parametrize("sample_rate", [16000, 22050, 44100, 48000, 8000])
def test_segments_equal_the_whole_file_stream(tmp_path: Path, sample_rate: int) -> None:
    """Segments of a file (decoded from a point of the common sample grid, with the resampler's filter
    margin) concatenate to the whole-file stream: exactly at 16 kHz, to float32 rounding otherwise."""
    from vggish.input import count_examples, iter_segment_examples

    path = _write(tmp_path / "long.wav", _tone(sample_rate, 12.3, extra=7), sample_rate)
    whole = np.concatenate(list(iter_file_examples(path)))
    assert count_examples(sf.info(str(path)).frames, sample_rate) == len(whole) == 12
    parts = [np.concatenate(list(iter_segment_examples(path, first, None if first + 5 >= 12 else 5,
                                                       block_frames=4096)))
             for first in range(0, 12, 5)]
    assert [len(p) for p in parts] == [5, 5, 2]
    segmented = np.concatenate(parts)
    if sample_rate == 16000:
        np.testing.assert_array_equal(segmented, whole)
    else:
        np.testing.assert_allclose(segmented, whole, atol=1e-5, rtol=0)
