"""Benchmark of the VGGish front end and CNN (run by hand; prints figures).

    python3 benchmarks/bench_vggish.py [--checkpoint PATH] [--skip-rss] [--rss-hours 2] [--engines tf lite]
        [--cnn-threads 2] [--lite-front-end]

1. Front end on a generated 44.1 kHz stereo PCM-16 WAV: decode, resample to 16 kHz, log-mel +
   examples, each as x real time (seconds of audio per second of wall time). --lite-front-end: the log-mel
   and the PCA of a 10-s clip in a TF-Lite flatbuffer (vggish.tf_frontend, float32) against numpy.
2. CNN throughput at batch sizes 1/8/32/128 per engine (TensorFlow, LiteRT with XNNPACK; --cnn-threads
   each, taking turns): patches/s, GFLOP/s at params.GFLOP_PER_EXAMPLE and LiteRT's ratio to TensorFlow.
   Without --checkpoint it uses a SYNTHETIC checkpoint (random weights; same graph and speed as the
   released model, meaningless numbers); its LiteRT conversion is built first when missing.
3. Peak RSS of a fresh process that loads the model and embeds a generated `--rss-hours` long
   44.1 kHz stereo file with VGGish.embed_file: ru_maxrss and /proc's VmHWM. On Linux ru_maxrss
   survives exec, so a child would report its parent's peak if that were higher: this step runs
   first, while this process is small, and the synthetic checkpoint is written by a subprocess.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from vggish import audio_io, framing, params, resample

SAMPLE_RATE = 44100
BLOCK_SECONDS = 30

RSS_CHILD = """
import json, resource, sys, time
import vggish

def peaks():
    hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, int(hwm[0]) / 1024

start = time.perf_counter()
model = vggish.VGGish(sys.argv[1], intra_op_threads=int(sys.argv[3]), inter_op_threads=1)
loaded = peaks()
raw, times = model.embed_file(sys.argv[2])
print(json.dumps({"patches": len(raw), "seconds": time.perf_counter() - start, "loaded": loaded,
                  "peak": peaks()}))
"""
WRITE_SYNTHETIC = "import sys; from vggish.synthetic import write_synthetic_checkpoint; " \
    "write_synthetic_checkpoint(sys.argv[1], seed=0)"



def write_test_wav(path: Path, seconds: float, seed: int = 0) -> Path:
    """A 44.1 kHz stereo PCM-16 WAV of `seconds` (a gliding tone plus noise), written block by block."""
    rng = np.random.default_rng(seed)
    total = int(seconds * SAMPLE_RATE)
    block = BLOCK_SECONDS * SAMPLE_RATE
    with sf.SoundFile(str(path), "w", SAMPLE_RATE, 2, subtype="PCM_16") as handle:
        for start in range(0, total, block):
            t = np.arange(start, min(start + block, total)) / SAMPLE_RATE
            tone = 0.3 * np.sin(2 * np.pi * (300 + 50 * np.sin(0.1 * t)) * t)
            noise = 0.05 * rng.standard_normal((len(t), 2))
            handle.write((tone[:, None] + noise).astype(np.float32))
    return path


def bench_front_end(directory: Path, seconds: float) -> None:
    path = write_test_wav(directory / "front_end.wav", seconds)
    resample.resample(np.zeros(SAMPLE_RATE), SAMPLE_RATE)  # warm-up: builds the phase table
    start = time.perf_counter()
    blocks = list(audio_io.iter_mono_blocks(path))
    decode = time.perf_counter() - start
    start = time.perf_counter()
    chunks = list(resample.resample_stream(iter(blocks), SAMPLE_RATE))
    resampling = time.perf_counter() - start
    start = time.perf_counter()
    examples = list(framing.example_stream(framing.log_mel_stream(iter(chunks)), framing.hop_frames(0.96)))
    log_mel = time.perf_counter() - start
    count = sum(len(block) for block in examples)
    import resampy  # the baseline the resampler replaces, timed on the same samples after its compilation

    whole = np.concatenate(blocks)
    resampy.resample(whole[:SAMPLE_RATE], SAMPLE_RATE, params.SAMPLE_RATE)
    start = time.perf_counter()
    resampy.resample(whole, SAMPLE_RATE, params.SAMPLE_RATE)
    baseline = time.perf_counter() - start
    print(f"front end, {seconds:.0f} s of 44.1 kHz stereo PCM-16 -> {count} examples:")
    for name, elapsed in (("decode + mono", decode), ("resample 44.1->16 kHz", resampling),
                          ("log-mel + examples", log_mel), ("total", decode + resampling + log_mel),
                          ("(resampy.resample)", baseline)):
        print(f"  {name:<22} {elapsed:7.2f} s  {seconds / elapsed:8.0f} x real time")


def bench_cnn(checkpoint: Path, min_seconds: float, engines: list[str], threads: int) -> None:
    """Patches/s of each engine's CNN at each batch size; the engines take turns per batch size (same
    moment, same load), each with `threads` threads (TensorFlow: intra-op, one inter-op; LiteRT: XNNPACK)."""
    import vggish

    rng = np.random.default_rng(0)
    examples = rng.normal(-2.0, 2.0, size=(128, params.NUM_FRAMES, params.NUM_BANDS)).astype(np.float32)
    models = {engine: vggish.load_embedder(checkpoint, engine, intra_op_threads=threads, inter_op_threads=1)
              for engine in engines}
    weights = "SYNTHETIC weights" if next(iter(models.values())).synthetic else checkpoint
    print(f"CNN ({weights}), {threads} thread(s), engines {', '.join(engines)}:")
    for batch_size in (1, 8, 32, 128):
        batch = examples[:batch_size]
        rates = {}
        for engine, model in models.items():
            model.embed(batch, batch_size)  # warm-up: allocations, kernel selection, LiteRT's weight packing
            done, start = 0, time.perf_counter()
            while done == 0 or time.perf_counter() - start < min_seconds:
                model.embed(batch, batch_size)
                done += batch_size
            rates[engine] = done / (time.perf_counter() - start)
        figures = "  ".join(f"{engine} {rate:7.1f} patches/s ({rate * params.GFLOP_PER_EXAMPLE:5.1f} GFLOP/s)"
                            for engine, rate in rates.items())
        ratio = f"  lite / tf {rates['lite'] / rates['tf']:.2f}" if {"lite", "tf"} <= rates.keys() else ""
        print(f"  batch {batch_size:>3}: {figures}{ratio}")
    for model in models.values():
        model.close()


LITE_FRONT_END = r"""
import statistics, sys, time
import numpy as np
import soundfile as sf
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
import vggish
from vggish import resample, tf_frontend

postprocessor = vggish.Postprocessor()

def log_mel(waveform):  # the signature keys are the functions' names
    return {"examples": tf_frontend.waveform_to_examples(waveform, tf.float32)}

def pca(raw):
    return {"embedding": tf_frontend.postprocess(raw, postprocessor, tf.float32)}

functions = [tf.function(log_mel, input_signature=[tf.TensorSpec([None], tf.float32, name="waveform")]),
             tf.function(pca, input_signature=[tf.TensorSpec([None, 128], tf.float32, name="raw")])]
converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function() for f in functions],
                                                            tf.Module())
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
interpreter = Interpreter(model_content=converter.convert(), num_threads=int(sys.argv[2]))
front_end, pca = (interpreter.get_signature_runner(key) for key in ("log_mel", "pca"))
data, rate = sf.read(sys.argv[1], dtype="float64")
samples = resample.resample(data.mean(axis=1), rate)  # 16 kHz: the resampler is numpy either way
raw = np.random.default_rng(0).normal(0.0, 0.4, (10, 128)).astype(np.float32)

def numpy_way():
    return vggish.waveform_to_examples(samples, 16000), postprocessor.postprocess(raw)

def flatbuffer_way():
    return front_end(waveform=samples.astype(np.float32))["examples"], pca(raw=raw)["embedding"]

times = {numpy_way: [], flatbuffer_way: []}
for _ in range(3):
    numpy_way(), flatbuffer_way()
for _ in range(int(sys.argv[3])):
    for way, spent in times.items():
        start = time.perf_counter(); way(); spent.append(time.perf_counter() - start)
(mel, quantized), (lite_mel, lite_quantized) = numpy_way(), flatbuffer_way()
numpy_ms, lite_ms = (1e3 * statistics.median(v) for v in times.values())
levels = np.abs(quantized.astype(int) - lite_quantized.astype(int)).max()
print(f"  numpy log-mel + PCA      {numpy_ms:7.2f} ms")
print(f"  flatbuffer log-mel + PCA {lite_ms:7.2f} ms  ({lite_ms / numpy_ms:.2f} x numpy's time; "
      f"log-mel max |diff| {np.abs(mel - lite_mel).max():.1e}, PCA max level diff {levels})")
"""


def bench_lite_front_end(directory: Path, threads: int, rounds: int) -> None:
    """The log-mel front end and the PCA in a TF-Lite flatbuffer (vggish.tf_frontend, float32) against numpy,
    on a 10-s 44.1 kHz stereo clip resampled to 16 kHz (alternating calls, medians), in a subprocess."""
    path = write_test_wav(directory / "ten_seconds.wav", 10.0, seed=2)
    print(f"front end of a 10-s 44.1 kHz clip, numpy against a flatbuffer ({threads} thread(s), medians of "
          f"{rounds}):", flush=True)
    subprocess.run([sys.executable, "-c", LITE_FRONT_END, str(path), str(threads), str(rounds)], check=True)


def bench_rss(checkpoint: Path, directory: Path, hours: float, threads: int) -> None:
    path = write_test_wav(directory / "long.wav", hours * 3600.0, seed=1)
    size_gb = path.stat().st_size / 1e9
    result = subprocess.run([sys.executable, "-c", RSS_CHILD, str(checkpoint), str(path), str(threads)],
                            check=True, capture_output=True, text=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"peak RSS, embed_file on a {hours:g} h 44.1 kHz stereo WAV ({size_gb:.2f} GB, "
          f"{figures['patches']} patches, {threads} intra-op thread(s), {figures['seconds']:.0f} s):")
    for name, (maxrss, hwm) in (("after loading the model", figures["loaded"]), ("peak", figures["peak"])):
        print(f"  {name:<24} ru_maxrss {maxrss:6.0f} MB   VmHWM {hwm:6.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to time (default: a SYNTHETIC one)")
    parser.add_argument("--front-end-seconds", type=float, default=120.0)
    parser.add_argument("--cnn-seconds", type=float, default=3.0, help="minimum timing per batch size")
    parser.add_argument("--rss-hours", type=float, default=2.0)
    parser.add_argument("--rss-threads", type=int, default=1, help="intra-op threads for the RSS run")
    parser.add_argument("--engines", nargs="+", choices=("tf", "lite"), default=["tf", "lite"],
                        help="VGGish engines timed by the CNN benchmark (default: tf lite)")
    parser.add_argument("--cnn-threads", type=int, default=2,
                        help="threads of each CNN engine (default 2: XNNPACK's / TensorFlow's intra-op)")
    parser.add_argument("--lite-front-end", action="store_true",
                        help="also the log-mel + PCA in a TF-Lite flatbuffer against numpy")
    parser.add_argument("--lite-front-end-rounds", type=int, default=30)
    parser.add_argument("--skip-cnn", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_vggish_") as tmp:
        directory = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None and not (args.skip_cnn and args.skip_rss):
            checkpoint = directory / "synthetic.ckpt"  # SYNTHETIC weights, written by a small subprocess
            subprocess.run([sys.executable, "-c", WRITE_SYNTHETIC, str(checkpoint)], check=True)
        if not args.skip_rss:
            bench_rss(checkpoint, directory, args.rss_hours, args.rss_threads)
        bench_front_end(directory, args.front_end_seconds)
        if args.lite_front_end:
            bench_lite_front_end(directory, args.cnn_threads, args.lite_front_end_rounds)
        if not args.skip_cnn:
            bench_cnn(checkpoint, args.cnn_seconds, args.engines, args.cnn_threads)


if __name__ == "__main__":
    main()
