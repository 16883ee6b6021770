"""A head compiled to TF-Lite: the fast prediction engines of :class:`classifier.pretrained.Head`.

ENGINES:

- ``"numpy"``: the reference forward pass (:mod:`classifier.inference`), float32, without TensorFlow.
- ``"lite"``: the head's TensorFlow graph (:class:`classifier.tf_head.HeadModule`) as a TF-Lite flatbuffer,
  run by LiteRT's interpreter (XNNPACK kernels); float32, the same probabilities to ~1e-6.
- ``"lite-int8"``: that flatbuffer with dynamic-range quantization: weights int8 per output channel,
  activations quantized row by row at run time for the int8 matrix kernels. On the shipped head clip
  probabilities move by at most 0.005 and held-out / eval mAP are unchanged to four decimals
  (documentation: "Prediction engines"); it is the fastest (``benchmarks/bench_classifier.py --engines``).

The flatbuffer has fixed shapes, x float32 [LITE_BATCH, 10, 128] (uint8 embedding values) and mask float32
[LITE_BATCH, 10], and two signatures: ``clips`` (probabilities [LITE_BATCH, C]; "serving_default" when it is
the only one) and, for heads with frame scores, ``frames`` (raw frame probabilities [LITE_BATCH, 10, C], as
``Head.predict_frames_raw``). :class:`LiteHead` pads frames and the last batch. A clip's scores do not
depend on the other clips of its batch (tested). Converting takes seconds, so the flatbuffer is cached as
``safeio.cache.cache_dir()/heads/<digest>.tflite``, the digest covering the weights, configs, engine and
converter version; running a cached flatbuffer does not import TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path

import numpy as np

from classifier.clipset import EMBEDDING_SIZE, MAX_FRAMES
from safeio.atomic import atomic_output
from safeio.cache import cache_dir

logger = logging.getLogger(__name__)

ENGINES = ("numpy", "lite", "lite-int8")
LITE_BATCH = 256  # clips per interpreter call: past ~128 the rate stops rising, and padding stays cheap
LITE_FORMAT = 1  # bump when the converted graph changes, so that cached flatbuffers are rebuilt
CACHE_SUBDIR = "heads"


class EngineError(RuntimeError):
    """A head could not be compiled or run by a TF-Lite engine."""


def check_engine(engine: str) -> str:
    """`engine` if it is one of ENGINES, else ValueError naming the choices."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return engine


def _converter_version() -> str:
    """The installed TensorFlow's version, read without importing it."""
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def head_digest(head, engine: str) -> str:
    """Hex sha256 of everything the compiled flatbuffer depends on: members' and frame members' configs and
    float32 weights, the combine rule, the timeline's attention exponent, the engine, LITE_BATCH, LITE_FORMAT
    and the converter's version."""
    digest = hashlib.sha256()
    settings = {"members": head.member_configs, "frame_members": head.frame_member_configs,
                "combine": head.combine, "attention_exponent": head.timeline.attention_exponent,
                "engine": engine, "batch": LITE_BATCH, "frames": MAX_FRAMES, "format": LITE_FORMAT,
                "converter": _converter_version()}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for weights in (*head.member_weights, *head.frame_member_weights):
        for w in weights:
            digest.update(np.ascontiguousarray(w, np.float32).tobytes())
    return digest.hexdigest()


def convert(head, engine: str) -> bytes:
    """The head as a TF-Lite flatbuffer for `engine` ("lite" or "lite-int8"); imports TensorFlow."""
    import tensorflow as tf

    from classifier.tf_head import HeadModule

    module = HeadModule(head.member_configs, head.member_weights, head.combine, head.frame_member_configs,
                        head.frame_member_weights, head.timeline.attention_exponent)
    spec = [tf.TensorSpec([LITE_BATCH, MAX_FRAMES, EMBEDDING_SIZE], tf.float32, name="x"),
            tf.TensorSpec([LITE_BATCH, MAX_FRAMES], tf.float32, name="mask")]

    def clips(x, mask):  # the signature keys are the functions' names
        return {"probs": module.clip_probabilities(x, mask)}

    def frames(x, mask):
        return {"frames": module.frame_probabilities(x, mask)}

    functions = [tf.function(clips, input_signature=spec).get_concrete_function()]
    if module.has_frames:
        functions.append(tf.function(frames, input_signature=spec).get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if engine == "lite-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _interpreter(content: bytes, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content, num_threads=threads)


def cached_flatbuffer(head, engine: str, folder: Path | None = None) -> tuple[bytes, Path | None]:
    """(flatbuffer bytes, the cache file or None) for `head` under `engine`, converted and cached
    (atomically) when the cache has no usable copy. An unwritable cache is logged and skipped."""
    folder = folder or cache_dir() / CACHE_SUBDIR
    path = folder / f"{head_digest(head, engine)}.tflite"
    try:
        return path.read_bytes(), path
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot read the compiled head %s (%s); compiling it again", path, exc)
    logger.info("compiling head %r for the %s engine (once; cached in %s)", head.name, engine, folder)
    content = convert(head, engine)
    try:
        with atomic_output(path) as tmp:
            tmp.write_bytes(content)
    except OSError as exc:
        logger.warning("cannot cache the compiled head in %s (%s); it will be compiled again next time",
                       folder, exc)
        return content, None
    return content, path


class LiteHead:
    """A head's clip and raw frame probabilities from a TF-Lite interpreter (one per LiteHead; not
    thread-safe: one per thread or process). ``threads``: the interpreter's threads (default: all cores)."""

    def __init__(self, head, engine: str = "lite-int8", *, threads: int | None = None,
                 cache: Path | None = None) -> None:
        if check_engine(engine) == "numpy":
            raise ValueError(f"LiteHead runs the TF-Lite engines {ENGINES[1:]}; the numpy engine is "
                             "Head's own")
        self.engine = engine
        self.num_classes = head.num_classes
        content, path = cached_flatbuffer(head, engine, cache)
        threads = threads or os.cpu_count() or 1
        try:
            interpreter = _interpreter(content, threads)
        except (ValueError, RuntimeError) as exc:
            if path is None:
                raise EngineError(f"head {head.name!r}: TF-Lite cannot load its compiled graph "
                                  f"({exc})") from exc
            logger.warning("compiled head %s is unusable (%s); compiling it again", path, exc)
            path.unlink(missing_ok=True)
            content, _ = cached_flatbuffer(head, engine, cache)
            interpreter = _interpreter(content, threads)
        signatures = interpreter.get_signature_list()
        # the converter names a lone function's signature "serving_default", not after the function
        clips_key = "clips" if "clips" in signatures or len(signatures) != 1 else next(iter(signatures))
        self._clips = interpreter.get_signature_runner(clips_key)
        self._frames = interpreter.get_signature_runner("frames") if "frames" in signatures else None
        self._interpreter = interpreter  # the runners need it alive

    @property
    def has_frames(self) -> bool:
        return self._frames is not None

    def clip_probs(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """float32 [N, C] for x [N, T, 128] (uint8 values, T <= 10) and mask [N, T] (true = real frame)."""
        return self._run(self._clips, "probs", x, mask)

    def frame_probs(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Raw frame probabilities float32 [N, T, C], as ``Head.predict_frames_raw`` before trimming."""
        if self._frames is None:
            raise ValueError("this head has no frame members or decision-level members to score frames")
        return self._run(self._frames, "frames", x, mask)[:, : x.shape[1]]

    def _run(self, runner, output: str, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        n, t = mask.shape
        if t > MAX_FRAMES or x.shape != (n, t, EMBEDDING_SIZE):
            raise ValueError(f"expected x [N, T<={MAX_FRAMES}, {EMBEDDING_SIZE}] and mask [N, T], got "
                             f"{x.shape} and {mask.shape}")
        outs = []
        for start in range(0, n, LITE_BATCH):
            xb, mb = _padded(x[start : start + LITE_BATCH], mask[start : start + LITE_BATCH])
            outs.append(runner(x=xb, mask=mb)[output][: min(LITE_BATCH, n - start)])
        if not outs:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)


def _padded(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x, mask as float32 [LITE_BATCH, 10, 128] / [LITE_BATCH, 10]: frames padded with masked zeros, the
    batch with copies of its first clip (so that no padded row is all masked)."""
    n, t = mask.shape
    xb = np.zeros((LITE_BATCH, MAX_FRAMES, EMBEDDING_SIZE), np.float32)
    mb = np.zeros((LITE_BATCH, MAX_FRAMES), np.float32)
    xb[:n, :t] = x
    mb[:n, :t] = mask
    xb[n:], mb[n:] = xb[0], mb[0]
    return xb, mb

