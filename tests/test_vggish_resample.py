"""The polyphase resampler against resampy.resample itself: equal within 1e-9 (float64), edges included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import resampy
import soundfile as sf
from import_probe import modules_imported_by

from vggish import polyphase
from vggish.resample import resample, resample_stream

COMMON_RATES = [8000, 11025, 22050, 32000, 44100, 48000, 96000]
TOLERANCE = 1e-9


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, n)


def _assert_equal_to_resampy(samples: np.ndarray, sample_rate: int) -> None:
    expected = resampy.resample(samples, sample_rate, 16000)
    ours = resample(samples, sample_rate)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.shared
@pytest.mark.parametrize("sample_rate", COMMON_RATES)
@pytest.mark.parametrize("name", ["bus_chatter.wav", "R9_ZSCveAHg_7s.wav", "jingle_975ms.wav"])
def test_real_clips_equal_resampy(shared_audio: Path, name: str, sample_rate: int) -> None:
    # Real recorded samples, declared at each rate (the resampler only sees numbers and two rates).
    data, _ = sf.read(str(shared_audio / name), dtype="float64")
    samples = data.mean(axis=1) if data.ndim > 1 else data
    _assert_equal_to_resampy(samples, sample_rate)
    _assert_equal_to_resampy(samples[: len(samples) // 3 + 1], sample_rate)  # another, odd length


@pytest.mark.parametrize("sample_rate", COMMON_RATES)
def test_short_signals_and_edges_equal_resampy(sample_rate: int) -> None:
    for n in (1, 2, 3, 5, 17, 160, 441, 999, 2000, 12345):
        samples = _noise(n, seed=n)
        if int(n * 16000.0 / sample_rate) < 1:
            assert resample(samples, sample_rate).shape == (0,)
        else:
            _assert_equal_to_resampy(samples, sample_rate)


@pytest.mark.parametrize("sample_rate", [16475, 17400, 20800])
def test_outputs_where_resampys_float_time_falls_short_of_a_grid_point(sample_rate: int) -> None:
    # At these ratios resampy's t * (1 / ratio) lands just below an exact input sample at many grid points,
    # so it takes the previous sample and other taps there (~5e-6 apart): those outputs get their own taps.
    f = polyphase.make_filter(sample_rate, 16000)
    m = np.arange(1, 200)
    assert ((m * f.step_out * f.time_increment).astype(np.int64) < m * f.step_in).any()
    _assert_equal_to_resampy(_noise(3 * sample_rate), sample_rate)


@pytest.mark.parametrize("sample_rate", [22050, 44100, 48000, 44099])
@pytest.mark.parametrize("block", [1000, 4097, 65536])
def test_stream_equals_whole_signal(sample_rate: int, block: int) -> None:
    samples = _noise(2 * sample_rate + 123)
    whole = resample(samples, sample_rate)
    blocks = [samples[i : i + block] for i in range(0, len(samples), block)]
    streamed = np.concatenate(list(resample_stream(iter(blocks), sample_rate)))
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-12)


def test_rates_with_too_many_phases_use_resampy() -> None:
    assert all(polyphase.supported(rate, 16000) for rate in [*COMMON_RATES, 88200, 176400, 192000])
    assert not polyphase.supported(44099, 16000)  # 16,000 phases of 44,374 inputs each
    assert polyphase.table_entries(44099, 16000) > polyphase.MAX_TABLE_ENTRIES
    _assert_equal_to_resampy(_noise(20000), 44099)


def test_the_common_path_does_not_import_numba() -> None:
    code = ("import numpy as np, vggish\n"
            "x = np.random.default_rng(0).uniform(-1, 1, 2 * 44100)\n"
            "for rate in (44100, 48000, 22050, 32000, 8000):\n"
            "    vggish.waveform_to_examples(x, rate)\n")
    assert modules_imported_by(code, ["numba", "resampy"]) == []
