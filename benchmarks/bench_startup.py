"""Cold start of `audiotag tag` on a 10-s 44.1 kHz clip against `python -c "import tensorflow"`.

    python benchmarks/bench_startup.py [--pairs 5] [--checkpoint PATH] [--profile]

Whole processes, run alternately (tensorflow, tag, tensorflow, tag, ...), wall time of each; prints both
medians and their ratio (the issue's target: <= 1.3). The clip is the first 10 s of
../shared/audio/bus_chatter.wav (44.1 kHz stereo) when present, else a generated 44.1 kHz stereo tone.
Without --checkpoint a SYNTHETIC checkpoint is written first (same size and architecture as the release).
--profile also runs one tag process with timers around its phases (in-process: imports, head, VGGish,
front end, CNN, head calls), as the issue's profiled run did.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "audio" / "bus_chatter.wav"
CLIP_SECONDS = 10.0
RATE = 44100

PROFILE = r"""
import sys, time
start = last = time.perf_counter()
def lap(name):
    global last
    now = time.perf_counter(); print(f"  {name:<34}{now - last:7.3f} s", file=sys.stderr); last = now
import numpy as np; lap("import numpy")
import vggish; lap("import vggish (front end)")
examples = vggish.wavfile_to_examples(sys.argv[2]); lap("front end, first call")
from classifier import load_pretrained; lap("import classifier")
head = load_pretrained(); lap("head load")
import tensorflow; lap("import tensorflow")
model = vggish.VGGish(sys.argv[1]); lap("VGGish load (graph + restore)")
embedding = model.postprocess(model.embed(examples)); lap("CNN, first call + postprocess")
head.predict_clips([embedding[:10]]); head.predict_frames([embedding[:10]]); lap("head, first calls")
print(f"  {'total':<34}{time.perf_counter() - start:7.3f} s", file=sys.stderr)
"""


def write_clip(path: Path) -> str:
    """A 10-s 44.1 kHz stereo PCM-16 WAV at `path`; returns where it came from."""
    import soundfile as sf

    n = int(CLIP_SECONDS * RATE)
    if SHARED_CLIP.is_file():
        data, rate = sf.read(str(SHARED_CLIP), dtype="int16")
        if rate == RATE and len(data) >= n:
            sf.write(str(path), data[:n], RATE, subtype="PCM_16")
            return f"first 10 s of {SHARED_CLIP.name}"
    t = np.arange(n) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(n)
    sf.write(str(path), np.stack([tone, tone], axis=1), RATE, subtype="PCM_16")
    return "generated 440 Hz tone"


def _wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="alternating pairs of runs (default 5)")
    parser.add_argument("--checkpoint", type=Path, help="VGGish checkpoint (default: a synthetic one)")
    parser.add_argument("--profile", action="store_true", help="also one run with timers around each phase")
    args = parser.parse_args(argv)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp_name:
        tmp = Path(tmp_name)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = tmp / "synthetic.ckpt"
            subprocess.run([sys.executable, "-c", "import sys; from vggish.synthetic import "
                            "write_synthetic_checkpoint as w; w(sys.argv[1], seed=0)", str(checkpoint)],
                           check=True, env=env, stderr=subprocess.DEVNULL)
            print("using a SYNTHETIC checkpoint (same size and architecture as the release)")
        clip = tmp / "clip.wav"
        print(f"clip: {write_clip(clip)}, 44.1 kHz stereo; load average {os.getloadavg()[0]:.1f}")
        baseline = [sys.executable, "-c", "import tensorflow"]
        tag = [sys.executable, "-m", "pipeline", "--vggish-checkpoint", str(checkpoint), "tag", str(clip)]
        _wall(tag, env)  # page cache: checkpoint, libraries
        times: dict[str, list[float]] = {"import tensorflow": [], "audiotag tag": []}
        for _ in range(args.pairs):
            times["import tensorflow"].append(_wall(baseline, env))
            times["audiotag tag"].append(_wall(tag, env))
        for name, values in times.items():
            runs = " ".join(f"{v:.2f}" for v in values)
            print(f"{name:<18} median {statistics.median(values):6.2f} s  runs {runs}")
        ratio = statistics.median(times["audiotag tag"]) / statistics.median(times["import tensorflow"])
        print(f"tag / import tensorflow: {ratio:.2f} (target <= 1.3); load average {os.getloadavg()[0]:.1f}")
        if args.profile:
            print("one profiled run (in-process timers):")
            subprocess.run([sys.executable, "-c", PROFILE, str(checkpoint), str(clip)], check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
