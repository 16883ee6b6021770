"""Exported tagger: export time, sizes, load times and latency on a 10-s clip (SavedModel, TF-Lite float32,
TF-Lite dynamic-range int8) against the Python pipeline.Tagger, plus the int8 model's deviation on the real
clips (max |Δ score| and top-5 agreement against the SavedModel).

    python benchmarks/bench_export.py [--checkpoint CKPT] [--head NAME|PATH] [--repeats 5]

Without --checkpoint a SYNTHETIC checkpoint is written and used (--allow-synthetic): it runs at the real
model's speed, but its int8 deviation need not be the real weights' deviation. Latencies are medians of
`repeats` calls made in turn (Tagger, SavedModel, TF-Lite, TF-Lite int8, Tagger, ...), after one warm-up call
each; the 10-s clip is the first 10 s of ../shared/audio/bus_chatter.wav (resampled to 16 kHz).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
AUDIO = REPO.parent / "shared" / "audio"
CLIP_SECONDS = 10


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def load_seconds_in_fresh_process(code: str, *args: str) -> float:
    """Seconds a fresh `python -I` process spends in `code` (which prints them), imports excluded."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-I", "-c", code, *args], capture_output=True, text=True,
                          env=env, check=True, cwd=tempfile.gettempdir())
    return float(done.stdout.strip().splitlines()[-1])


SAVEDMODEL_LOAD = ("import sys, time, tensorflow as tf; t = time.perf_counter(); "
                   "tf.saved_model.load(sys.argv[1]); print(time.perf_counter() - t)")
TFLITE_LOAD = ("import os, sys, time, tensorflow as tf; t = time.perf_counter(); "
               "i = tf.lite.Interpreter(sys.argv[1], num_threads=os.cpu_count()); i.allocate_tensors(); "
               "print(time.perf_counter() - t)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="VGGish checkpoint (default: a synthetic one)")
    parser.add_argument("--head", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import tensorflow as tf

    from pipeline import export
    from pipeline.tagger import Tagger
    from vggish import audio_io, resample
    from vggish.synthetic import write_synthetic_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench_export."))
    checkpoint = args.checkpoint or write_synthetic_checkpoint(work / "synthetic.ckpt")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    module = export.build_module(checkpoint, args.head, allow_synthetic=args.checkpoint is None)
    timings["build (load checkpoint + head)"] = time.perf_counter() - t
    t = time.perf_counter()
    saved = export.export_savedmodel(work / "savedmodel", module)
    timings["write SavedModel"] = time.perf_counter() - t
    t = time.perf_counter()
    lite = export.export_tflite(work / "tflite", module, int8=True)
    timings["convert TF-Lite float32 + int8"] = time.perf_counter() - t
    lite_int8 = lite.with_name(export.TFLITE_INT8_FILENAME)
    print("export:", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"sizes: SavedModel {folder_mb(saved):.1f} MB, TF-Lite float32 {lite.stat().st_size / 1e6:.1f} MB, "
          f"TF-Lite int8 {lite_int8.stat().st_size / 1e6:.1f} MB")

    t = time.perf_counter()
    tagger = Tagger(checkpoint, args.head)
    tagger_load = time.perf_counter() - t
    print(f"load: Tagger (in process, TF already imported) {tagger_load:.2f} s; fresh `python -I` process, "
          f"import excluded: SavedModel {load_seconds_in_fresh_process(SAVEDMODEL_LOAD, str(saved)):.2f} s, "
          f"TF-Lite float32 {load_seconds_in_fresh_process(TFLITE_LOAD, str(lite)):.2f} s, "
          f"TF-Lite int8 {load_seconds_in_fresh_process(TFLITE_LOAD, str(lite_int8)):.2f} s")

    served = tf.saved_model.load(str(saved)).signatures["serving_default"]
    runners = {}
    for name, path in (("tflite", lite), ("tflite_int8", lite_int8)):
        runners[name] = tf.lite.Interpreter(str(path), num_threads=os.cpu_count()).get_signature_runner()
    samples, rate = audio_io.read_mono(AUDIO / "bus_chatter.wav")
    clip = resample.resample(samples, rate)[: CLIP_SECONDS * 16000].astype(np.float32)
    calls = {
        "Tagger.tag": lambda: tagger.tag(clip, 16000),
        "SavedModel": lambda: served(waveform=tf.constant(clip)),
        "TF-Lite float32": lambda: runners["tflite"](waveform=clip),
        "TF-Lite int8": lambda: runners["tflite_int8"](waveform=clip),
    }
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm-up (tracing, tensor allocation)
    for _ in range(args.repeats):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - t)
    base = statistics.median(seconds["Tagger.tag"])
    print(f"latency on a {CLIP_SECONDS}-s clip (median of {args.repeats}, alternating):")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:16s} {median * 1000:8.1f} ms  ({base / median:.2f}x the Tagger's speed)")

    worst, agree, total = 0.0, 0, 0
    for path in sorted(AUDIO.iterdir()):
        samples, rate = audio_io.read_mono(path)
        wave = resample.resample(samples, rate).astype(np.float32)
        want = served(waveform=tf.constant(wave))["scores"].numpy()
        got = runners["tflite_int8"](waveform=wave)["scores"]
        worst = max(worst, float(np.abs(got - want).max()))
        agree += len(set(np.argsort(-want)[:5]) & set(np.argsort(-got)[:5]))
        total += 5
    print(f"TF-Lite int8 vs SavedModel on {total // 5} real clips: max |Δ score| {worst:.4g}, "
          f"top-5 agreement {agree}/{total} ({agree / total:.1%})"
          + (" [SYNTHETIC weights]" if args.checkpoint is None else ""))
    tagger.close()


if __name__ == "__main__":
    main()
