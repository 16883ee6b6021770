"""pipeline.audio_input: audio from a pipe (WAV, FLAC, Ogg, raw PCM) gives the samples of the same file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pipe_feeder import pipe_with

from pipeline.audio_input import RawFormat, open_container, open_input, open_raw
from vggish import audio_io
from vggish.errors import AudioFileError

RATE = 22050


@pytest.fixture(scope="module")
def stereo() -> np.ndarray:
    """2.5 s of stereo: a tone on the left, noise on the right, float32 in [-0.5, 0.5]."""
    t = np.arange(int(2.5 * RATE)) / RATE
    rng = np.random.default_rng(0)
    return np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(len(t))], 1).astype(
        np.float32
    )


@pytest.mark.parametrize(
    ("extension", "subtype"), [("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", "PCM_16"), ("ogg", "VORBIS")]
)
def test_container_from_a_pipe_equals_the_file(
    tmp_path: Path, stereo: np.ndarray, extension: str, subtype: str
) -> None:
    path = tmp_path / f"clip.{extension}"
    sf.write(path, stereo, RATE, subtype=subtype)
    expected = np.concatenate(list(audio_io.iter_mono_blocks(path)))
    with pipe_with(path.read_bytes()) as fd:
        stream = open_container(fd)
        got = np.concatenate(list(stream))
    assert stream.sample_rate == RATE
    assert stream.frames == len(expected) == len(stereo)
    np.testing.assert_array_equal(got, expected)
    assert stream.seconds == pytest.approx(2.5)


def test_a_redirected_regular_file_is_read_directly(tmp_path: Path, stereo: np.ndarray) -> None:
    path = tmp_path / "clip.flac"
    sf.write(path, stereo, RATE)
    with open(path, "rb") as f:
        got = np.concatenate(list(open_container(f.fileno())))
    np.testing.assert_array_equal(got, np.concatenate(list(audio_io.iter_mono_blocks(path))))


def test_raw_pcm_equals_the_same_samples_in_a_wav(tmp_path: Path, stereo: np.ndarray) -> None:
    int16 = np.round(stereo * 32767).astype(np.int16)
    sf.write(tmp_path / "s16.wav", int16, RATE, subtype="PCM_16")
    sf.write(tmp_path / "f32.wav", stereo, RATE, subtype="FLOAT")
    for raw, data, wav in (
        (RawFormat("s16le", RATE, 2), int16.astype("<i2").tobytes(), "s16.wav"),
        (RawFormat("f32le", RATE, 2), stereo.astype("<f4").tobytes(), "f32.wav"),
    ):
        with pipe_with(data, chunk=1001) as fd:  # odd writes: frames arrive split across reads
            got = np.concatenate(list(open_raw(fd, raw)))
        np.testing.assert_array_equal(got, np.concatenate(list(audio_io.iter_mono_blocks(tmp_path / wav))))


def test_raw_pcm_drops_a_partial_trailing_frame(caplog: pytest.LogCaptureFixture) -> None:
    data = np.arange(10, dtype="<i2").tobytes() + b"\x01"
    with caplog.at_level(logging.WARNING), pipe_with(data) as fd:
        got = np.concatenate(list(open_raw(fd, RawFormat("s16le", 8000, 2))))
    np.testing.assert_array_equal(got, (np.arange(0, 10, 2) + 0.5) / 32768.0)
    assert "dropped 1 trailing bytes" in caplog.text


@pytest.mark.parametrize(("data", "problem"), [(b"", "the stream is empty"), (b"not audio at all" * 64,
                                                                             "not a readable audio stream")])
def test_bad_streams_name_stdin_and_the_problem(data: bytes, problem: str) -> None:
    with pipe_with(data) as fd, pytest.raises(AudioFileError, match=problem) as info:
        list(open_container(fd))
    assert str(info.value).startswith("<stdin>: ")


def test_raw_options_are_checked() -> None:
    with pytest.raises(ValueError, match="s16le, f32le"):
        RawFormat("u8", 8000)
    with pytest.raises(ValueError, match="positive"):
        RawFormat("s16le", 0)
    with pytest.raises(ValueError, match="standard input"):
        open_input("clip.wav", RawFormat("s16le", 8000))
