"""The polyphase resampler (vggish.resample) against resampy.resample: speed and max |difference| per rate.

    python benchmarks/bench_resample.py [--seconds 10] [--repeats 5] [--rates 44100 48000 ...]

Input: a real recording from ../shared/audio (bus_chatter.wav, channels averaged, looped to --seconds) when
present, else seeded noise, declared at each rate (the resampler only sees numbers and two rates). Both
resamplers are warmed up first (resampy's numba compilation, our phase table), then timed alternately,
--repeats times each; the medians are compared. Prints wall ms per second of audio, the speed-up and
the largest absolute difference of the whole output (edges included), in float64.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RATES = (8000, 11025, 22050, 32000, 44100, 48000, 96000)
SHARED_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "audio" / "bus_chatter.wav"


def test_signal(seconds: float, sample_rate: int) -> tuple[np.ndarray, str]:
    """float64 [seconds * sample_rate] samples and where they come from."""
    n = int(seconds * sample_rate)
    if SHARED_CLIP.is_file():
        import soundfile as sf

        data, _ = sf.read(str(SHARED_CLIP), dtype="float64")
        mono = data.mean(axis=1) if data.ndim > 1 else data
        return np.resize(mono, n), f"{SHARED_CLIP.name} (real, looped)"
    return np.random.default_rng(0).uniform(-0.5, 0.5, n), "seeded noise (../shared absent)"


def _seconds(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length (default 10 s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each resampler (default 5)")
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    args = parser.parse_args(argv)

    import resampy

    from vggish import polyphase
    from vggish.resample import resample

    print(f"{args.seconds:g} s of audio per run, {args.repeats} alternating runs each, medians of wall time")
    header = ("rate", "phases", "ours ms/s", "resampy ms/s", "speed-up", "max |diff|")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (7, 7, 10, 13, 9, 11), strict=True)))
    for rate in args.rates:
        x, source = test_signal(args.seconds, rate)
        expected = resampy.resample(x, rate, 16000)  # also compiles resampy's loop
        ours = resample(x, rate)  # also builds our phase table
        ours_times, resampy_times = [], []
        for _ in range(args.repeats):
            ours_times.append(_seconds(resample, x, rate))
            resampy_times.append(_seconds(resampy.resample, x, rate, 16000))
        per_second = 1000.0 / args.seconds
        mine, theirs = statistics.median(ours_times), statistics.median(resampy_times)
        supported = polyphase.supported(rate, 16000)
        phases = polyphase.make_filter(rate, 16000).step_out if supported else "resampy"
        print(f"{rate:>7} {phases:>7} {mine * per_second:>10.2f} {theirs * per_second:>13.2f} "
              f"{theirs / mine:>8.1f}x {np.abs(ours - expected).max():>11.1e}", flush=True)
    print(f"input: {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
