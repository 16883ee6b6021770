"""Classifier throughput on CPU: training iterations/s; inference clips/s of the numpy heads against Keras.

Run by hand: ``python3 benchmarks/bench_classifier.py`` (a few minutes on 2 cores); ``--inference-only``
skips training, ``--shipped-only`` measures just the shipped head (load + first prediction, clips/s, and its
dense layers' FLOPs per clip against this machine's float32 matrix-product rate: the clips/s no float32
implementation of the same layers can pass here),
``--no-shipped`` skips it; ``--engines`` adds the shipped head's TF-Lite engines (classifier.lite: float32 and
int8, compiled and cached first), timed alternately with numpy, with their clips/s as ratios to numpy's and
their mAP on the held-out split and the eval release beside numpy's (``--no-map`` skips that);
``--kinds`` / ``--hidden`` pick the models (e.g. ``--inference-only --no-shipped
--kinds feature_attention transformer feature_attention --hidden 1024 --infer-batch 500``: a kind listed
twice brackets the other, for a ratio on a loaded machine).
Uses random uint8 inputs (throughput does not depend on the values), batch 500, 10 frames, 527 classes.
Inference: the numpy forward pass (``Head.predict_clips``, as used everywhere) against the same Keras model
called through one traced ``tf.function`` per member (how heads predicted before), batches of 1024 clips
(``--infer-batch``), timed alternately (numpy, Keras, numpy, Keras), best of the repeats.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

from classifier.inference import MODEL_KINDS, weight_layout
from classifier.lite import ENGINES

KINDS = ("average", "max", "single_attention", "multi_attention", "feature_attention", "transformer")
HIDDEN = (1024, 512)
BATCH = 500
TRAIN_ITERS = 10
INFER_CLIPS = 3000
REPEATS = 2

LOAD_AND_FIRST = r"""
import sys, time
start = time.perf_counter()
import numpy as np
from classifier import load_head, load_pretrained
imported = time.perf_counter()
engine = sys.argv[1]
head = load_head(sys.argv[2], engine) if len(sys.argv) > 2 else load_pretrained(engine=engine)
loaded = time.perf_counter()
head.predict_clips([np.zeros((10, 128), np.uint8)])
print(imported - start, loaded - imported, time.perf_counter() - loaded)
"""
FRESH_PROCESSES = 5
CLIP_LEVEL_LAYERS = ("clip_probs", "fuse")  # dense layers applied once per clip; the others once per frame
FRAMES = 10
MATMUL_ROWS = 10240  # rows of the reference float32 matrix product (a batch of 1,024 ten-frame clips)


def dense_flops_per_clip(config: dict, frames: int = FRAMES) -> float:
    """Floating-point operations of one member's dense-layer matrix products for one clip of ``frames``
    frames (2 per multiply-add; biases, activations and the attention pooling are left out)."""
    flops = 0.0
    for name, shape in weight_layout(**config):
        if name.endswith("/kernel"):
            per_clip = name.split("/")[0] in CLIP_LEVEL_LAYERS
            flops += 2.0 * shape[0] * shape[1] * (1 if per_clip else frames)
    return flops


def matmul_gflops(width: int = 1024, repeats: int = 5) -> float:
    """This machine's float32 matrix-product rate, GFLOP/s: [MATMUL_ROWS, width] @ [width, width], best of
    ``repeats`` (numpy's BLAS, as the heads use it)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((MATMUL_ROWS, width), np.float32)
    b = rng.standard_normal((width, width), np.float32)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * MATMUL_ROWS * width * width / best / 1e9


def keras_predictor(models: list, combine: str, batch_size: int = 1024):
    """Clip probabilities of Keras members combined by ``combine``, one traced function per member."""
    import tensorflow as tf

    from classifier.head_file import combine_probabilities

    fns = [tf.function(lambda x, m, model=model: model({"x": x, "mask": m}, training=False),
                       reduce_retracing=True) for model in models]

    def predict(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(x), batch_size):
            xb, mb = x[i : i + batch_size], mask[i : i + batch_size]
            outs.append(combine_probabilities([np.asarray(fn(xb, mb)) for fn in fns], combine))
        return np.concatenate(outs)

    return predict


def inference_rates(head, keras_predict, clips: int, repeats: int = REPEATS,
                    batch_size: int = 1024) -> tuple[float, float]:
    """(numpy clips/s, Keras clips/s) of full 10-frame clips in batches of ``batch_size``, alternating, best
    of ``repeats``."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (clips, 10, 128)).astype(np.float32)
    mask = np.ones((clips, 10), np.float32)

    def numpy_predict(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return head.predict_arrays(x, mask, batch_size)

    numpy_predict(x[:batch_size], mask[:batch_size])  # warm-up (BLAS threads)
    keras_predict(x[:batch_size], mask[:batch_size])  # trace
    best = [0.0, 0.0]
    for _ in range(repeats):
        for slot, fn in enumerate((numpy_predict, keras_predict)):
            start = time.perf_counter()
            fn(x, mask)
            best[slot] = max(best[slot], clips / (time.perf_counter() - start))
    return best[0], best[1]


def bench_kind(kind: str, hidden: int, batch: int, train_iters: int, infer_clips: int,
               train: bool, infer_batch: int = 1024, repeats: int = REPEATS) -> tuple[float, float, float]:
    """(training iterations/s or nan, numpy inference clips/s, Keras inference clips/s) for one kind."""
    import keras
    import tensorflow as tf

    from classifier.models import build_model
    from classifier.pretrained import Head

    keras.utils.set_random_seed(0)
    model = build_model(kind, 527, hidden_units=hidden, max_frames=10)
    train_rate = float("nan")
    if train:
        opt = keras.optimizers.Adam(1e-3)
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (batch, 10, 128)).astype(np.float32)
        mask = np.ones((batch, 10), np.float32)
        y = (rng.random((batch, 527)) < 0.01).astype(np.float32)

        @tf.function
        def step(x, mask, y):
            with tf.GradientTape() as tape:
                p = tf.clip_by_value(model({"x": x, "mask": mask}, training=True), 1e-7, 1 - 1e-7)
                loss = -tf.reduce_mean(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
            opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return loss

        step(x, mask, y)  # trace
        t0 = time.perf_counter()
        for _ in range(train_iters):
            float(step(x, mask, y))
        train_rate = train_iters / (time.perf_counter() - t0)

    config = {"kind": kind, "num_classes": 527, "hidden_units": hidden}
    head = Head([model], [config], [str(i) for i in range(527)])
    numpy_rate, keras_rate = inference_rates(head, keras_predictor([model], head.combine, infer_batch),
                                             infer_clips, repeats, infer_batch)
    return train_rate, numpy_rate, keras_rate


def startup_times(engine: str, path: str | None) -> None:
    """Print imports, load and first prediction of a head in fresh processes (medians)."""
    times = []
    for _ in range(FRESH_PROCESSES):
        out = subprocess.run([sys.executable, "-c", LOAD_AND_FIRST, engine, *([path] if path else [])],
                             check=True, capture_output=True, text=True)
        times.append([float(v) for v in out.stdout.split()[-3:]])
    imports, load, first = np.median(times, axis=0)
    print(f"{path or 'shipped head'}, engine {engine}, fresh processes (median of {FRESH_PROCESSES}): "
          f"imports {imports:.3f} s, load {load:.3f} s, first prediction {first:.3f} s; "
          f"load + first prediction {load + first:.3f} s", flush=True)


def engine_rates(head, clips: int, repeats: int = REPEATS) -> dict[str, float]:
    """clips/s of full 10-frame clips for each engine of classifier.lite.ENGINES, timed alternately (numpy,
    lite, lite-int8, numpy, ...), best of ``repeats``; compiling happens before the timing."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (clips, 10, 128)).astype(np.uint8)
    mask = np.ones((clips, 10), bool)
    heads = {engine: head.with_engine(engine) for engine in ENGINES}
    for h in heads.values():
        h.predict_arrays(x[:1024], mask[:1024])  # compile or read the cache; warm up
    best = dict.fromkeys(heads, 0.0)
    for _ in range(repeats):
        for engine, h in heads.items():
            start = time.perf_counter()
            h.predict_arrays(x, mask)
            best[engine] = max(best[engine], clips / (time.perf_counter() - start))
    return best


def engine_maps(head) -> None:
    """Print held-out and eval mAP of the head under each engine, and the largest probability change."""
    from pathlib import Path

    from classifier.metrics import compute_metrics
    from classifier.readers import load_clipset
    from classifier.train import TrainConfig, split_holdout

    release = Path(__file__).resolve().parents[2] / "shared" / "data" / "audioset_v1_embeddings"
    _, holdout = split_holdout(TrainConfig(), load_clipset(release / "bal_train"))
    sets = {"held-out": holdout, "eval": load_clipset(release / "eval")}
    print("| engine | held-out mAP | eval mAP | largest change of a clip probability (eval) |")
    print("|---|---|---|---|")
    reference = None
    for engine in ENGINES:
        h = head.with_engine(engine)
        scores = {name: h.predict_arrays(cs.x, cs.mask) for name, cs in sets.items()}
        reference = scores["eval"] if reference is None else reference
        maps = [compute_metrics(cs.y, scores[name]).mAP for name, cs in sets.items()]
        change = np.abs(scores["eval"] - reference).max()
        print(f"| {engine} | {maps[0]:.5f} | {maps[1]:.5f} | {change:.4f} |", flush=True)


def bench_engines(infer_clips: int, path: str | None, with_map: bool) -> None:
    """The shipped head (or ``path``) under every engine: start-up, clips/s and ratios, mAP."""
    from classifier import load_head, load_pretrained
    head = load_head(path) if path else load_pretrained()
    rates = engine_rates(head, infer_clips)  # compiles the TF-Lite engines (cached) before startup_times
    for engine in ENGINES:
        startup_times(engine, path)
    print(f"{path or 'shipped head'} ({len(head.member_configs)} members), clips/s (ratio to numpy): "
          + ", ".join(f"{e} {r:.0f} ({r / rates['numpy']:.2f})" for e, r in rates.items()), flush=True)
    if with_map:
        engine_maps(head)


def bench_shipped(infer_clips: int, path: str | None = None) -> None:
    """The shipped head (or the head file ``path``): imports, load and first prediction in fresh processes
    (medians), and clips/s numpy vs Keras."""
    startup_times("numpy", path)
    from classifier import load_head, load_pretrained

    head = load_head(path) if path else load_pretrained()
    numpy_rate, keras_rate = inference_rates(head, keras_predictor(head.members, head.combine), infer_clips)
    print(f"{path or 'shipped head'} ({len(head.member_configs)} members): numpy {numpy_rate:.0f} clips/s, "
          f"Keras {keras_rate:.0f} clips/s, ratio {numpy_rate / keras_rate:.2f}")
    flops = sum(dense_flops_per_clip(c) for c in head.member_configs)
    rate = matmul_gflops()
    print(f"dense layers: {flops / 1e6:.0f} MFLOP per {FRAMES}-frame clip; float32 matrix product here "
          f"{rate:.0f} GFLOP/s ([{MATMUL_ROWS}, 1024] @ [1024, 1024]), so float32 reaches at most "
          f"{rate * 1e9 / flops:.0f} clips/s; numpy reaches {numpy_rate * flops / (rate * 1e9):.2f} of that")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inference-only", action="store_true", help="skip the training measurements")
    parser.add_argument("--shipped-only", action="store_true", help="only the shipped head")
    parser.add_argument("--no-shipped", action="store_true", help="skip the shipped head")
    parser.add_argument("--head", default=None, help="measure this head file instead of the shipped head")
    parser.add_argument("--engines", action="store_true",
                        help="also the TF-Lite engines of the shipped head: clips/s as ratios to numpy, mAP")
    parser.add_argument("--no-map", action="store_true", help="with --engines: skip the mAP measurement")
    parser.add_argument("--clips", type=int, default=INFER_CLIPS, help="clips per inference run")
    parser.add_argument("--infer-batch", type=int, default=1024, help="clips per inference batch")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed inference runs (best counts)")
    parser.add_argument("--kinds", nargs="+", default=KINDS, choices=MODEL_KINDS, metavar="KIND",
                        help=f"model kinds, in order (default: {' '.join(KINDS)})")
    parser.add_argument("--hidden", nargs="+", type=int, default=HIDDEN, help="hidden units")
    args = parser.parse_args(argv)
    if not args.no_shipped:
        bench_shipped(args.clips, args.head)
    if args.engines:
        bench_engines(args.clips, args.head, not args.no_map)
    if args.shipped_only:
        return 0
    print(f"batch={BATCH} frames=10 classes=527, CPU, {TRAIN_ITERS} timed training iterations, inference "
          f"batches of {args.infer_batch}, best of {args.repeats}")
    print(f"{'kind':<20}{'hidden':>7}{'train it/s':>12}{'train clips/s':>15}{'numpy clips/s':>15}"
          f"{'Keras clips/s':>15}")
    for hidden in args.hidden:
        for kind in args.kinds:
            train_rate, numpy_rate, keras_rate = bench_kind(kind, hidden, BATCH, TRAIN_ITERS, args.clips,
                                                            not args.inference_only, args.infer_batch,
                                                            args.repeats)
            print(f"{kind:<20}{hidden:>7}{train_rate:>12.3f}{train_rate * BATCH:>15.0f}{numpy_rate:>15.0f}"
                  f"{keras_rate:>15.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
