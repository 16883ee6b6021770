"""Writes generated mono s16le audio to stdout, for the streaming tests (run as a separate process).

python tests/stream_writer.py --seconds 3600 --rate 16000              as fast as the pipe takes it
python tests/stream_writer.py --seconds 20 --rate 16000 --realtime     paced: 10 ms chunks on a schedule

The audio is generated on the fly (nothing is held in memory): each second a tone whose pitch steps every
second plus seeded noise. With --realtime, the first stderr line is `start T0` (time.monotonic(), shared by
all processes on Linux); chunk k (samples [160k, 160k + 160) at 16 kHz) is written at T0 + (k + 1) * 0.01 s,
when its last sample would have been recorded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

CHUNK_SECONDS = 0.01


def second_of_audio(index: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """int16 [rate]: second `index` of the signal."""
    t = np.arange(rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * (220.0 + 110.0 * (index % 13)) * t)
    noise = 0.05 * (1 + index % 3) * rng.standard_normal(rate)
    return np.clip(np.round((tone + noise) * 32767), -32768, 32767).astype("<i2")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--realtime", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    out = sys.stdout.fileno()
    chunk = round(args.rate * CHUNK_SECONDS)
    start = time.monotonic()
    if args.realtime:
        print(f"start {start!r}", file=sys.stderr, flush=True)
    written = 0
    try:
        for second in range(args.seconds):
            data = second_of_audio(second, args.rate, rng)
            if not args.realtime:
                os.write(out, data.tobytes())
                continue
            for i in range(0, len(data), chunk):
                written += 1
                delay = start + written * CHUNK_SECONDS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                os.write(out, data[i : i + chunk].tobytes())
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
