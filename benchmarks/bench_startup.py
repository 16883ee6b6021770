"""Cold start of `audiotag tag` on a 10-s 44.1 kHz clip against `python -c "import tensorflow"`, per VGGish
engine.

    python benchmarks/bench_startup.py [--pairs 5] [--engines tf lite] [--checkpoint PATH] [--profile]

Whole processes, run alternately (tensorflow, tag --vggish-engine tf, tag --vggish-engine lite, tensorflow,
...), wall time and peak RSS (the child's own ru_maxrss) of each; prints the medians and each tag's ratio to
the import (targets: tf <= 1.3, lite <= 0.25). The LiteRT conversion is built (and cached beside the
checkpoint) before timing. The clip is the first 10 s of ../shared/audio/bus_chatter.wav (44.1 kHz
stereo) when present, else a generated 44.1 kHz stereo tone. Without --checkpoint a SYNTHETIC checkpoint is
written first (same size and architecture as the release). --profile also runs one process per engine
with timers around its phases (in-process: imports, front end, head, VGGish load, CNN, head calls).
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
checkpoint, clip, engine = sys.argv[1:4]
import numpy as np; lap("import numpy")
import vggish; lap("import vggish (front end)")
examples = vggish.wavfile_to_examples(clip); lap("front end, first call")
from classifier import load_pretrained; lap("import classifier")
head = load_pretrained(); lap("head load")
if engine == "tf":
    import tensorflow; lap("import tensorflow")
else:
    import ai_edge_litert.interpreter; lap("import LiteRT")
model = vggish.load_embedder(checkpoint, engine); lap(f"VGGish load ({engine})")
embedding = model.postprocess(model.embed(examples)); lap("CNN, first call + postprocess")
head.predict_clips([embedding[:10]]); head.predict_frames([embedding[:10]]); lap("head, first calls")
print(f"  {'total':<34}{time.perf_counter() - start:7.3f} s", file=sys.stderr)
"""
BUILD_CONVERSION = "import sys; from vggish import lite_cache; lite_cache.ensure(sys.argv[1])"
TARGETS = {"tf": 1.3, "lite": 0.25}  # cold tag / import tensorflow


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


def _run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, the process's own ru_maxrss) of one whole process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return wall, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="alternating rounds of runs (default 5)")
    parser.add_argument("--engines", nargs="+", choices=sorted(TARGETS), default=["tf", "lite"],
                        help="VGGish engines of the tag runs (default: tf lite)")
    parser.add_argument("--checkpoint", type=Path, help="VGGish checkpoint (default: a synthetic one)")
    parser.add_argument("--profile", action="store_true",
                        help="also one run per engine with timers per phase")
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
        if "lite" in args.engines:
            subprocess.run([sys.executable, "-c", BUILD_CONVERSION, str(checkpoint)], check=True, env=env)
        clip = tmp / "clip.wav"
        print(f"clip: {write_clip(clip)}, 44.1 kHz stereo; load average {os.getloadavg()[0]:.1f}")
        commands = {"import tensorflow": [sys.executable, "-c", "import tensorflow"]}
        for engine in args.engines:
            commands[f"tag, {engine}"] = [sys.executable, "-m", "pipeline", "--vggish-checkpoint",
                                          str(checkpoint), "tag", str(clip), "--vggish-engine", engine]
        for command in commands.values():
            _run(command, env)  # page cache: checkpoint, conversion, libraries
        walls: dict[str, list[float]] = {name: [] for name in commands}
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.pairs):
            for name, command in commands.items():
                wall, peak = _run(command, env)
                walls[name].append(wall)
                peaks[name].append(peak)
        for name, values in walls.items():
            runs = " ".join(f"{v:.2f}" for v in values)
            print(f"{name:<18} median {statistics.median(values):6.2f} s  peak RSS median "
                  f"{statistics.median(peaks[name]):6.0f} MiB  runs {runs}")
        baseline = statistics.median(walls["import tensorflow"])
        for engine in args.engines:
            ratio = statistics.median(walls[f"tag, {engine}"]) / baseline
            print(f"tag ({engine}) / import tensorflow: {ratio:.2f} (target <= {TARGETS[engine]})")
        print(f"load average {os.getloadavg()[0]:.1f}")
        if args.profile:
            for engine in args.engines:
                print(f"one profiled run, {engine} (in-process timers):", flush=True)
                subprocess.run([sys.executable, "-c", PROFILE, str(checkpoint), str(clip), engine],
                               check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
