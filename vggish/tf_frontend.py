"""The VGGish front end and postprocessing as TensorFlow ops, for graphs exported without Python.

A twin of the numpy stages (framing.pad_short, mel_features.log_mel_spectrogram, framing.frame_examples,
postprocess.Postprocessor) built from the same constants and arrays: the periodic Hann window and the
HTK-mel matrix are the numpy module's own, embedded as constants. `dtype` is the arithmetic precision:
float64 (as the numpy reference) where the runtime has it, float32 for TF-Lite, whose FFT is float32 only.
"""

from __future__ import annotations

import tensorflow as tf

from vggish import framing, mel_features, params
from vggish.postprocess import Postprocessor


def pad_short(samples: tf.Tensor) -> tf.Tensor:
    """16 kHz samples [n] -> [max(n, 15,600)]: zeros appended to a signal shorter than one example."""
    missing = tf.maximum(framing.MIN_EXAMPLE_SAMPLES - tf.shape(samples)[0], 0)
    return tf.pad(samples, [[0, missing]])


def log_mel_spectrogram(samples: tf.Tensor, dtype: tf.DType = tf.float64) -> tf.Tensor:
    """16 kHz mono samples [n] -> log-mel frames [1 + (n - 400) // 160, 64] in `dtype`, 10 ms apart."""
    samples = tf.cast(samples, dtype)
    frames = tf.signal.frame(samples, mel_features.WINDOW_LENGTH_SAMPLES, mel_features.HOP_LENGTH_SAMPLES)
    window = tf.constant(mel_features.periodic_hann(mel_features.WINDOW_LENGTH_SAMPLES), dtype)
    spectrogram = tf.abs(tf.signal.rfft(frames * window, [params.FFT_LENGTH]))
    mel = tf.matmul(spectrogram, tf.constant(mel_features.vggish_mel_matrix(), dtype))
    return tf.math.log(mel + tf.constant(params.LOG_OFFSET, dtype))


def frame_examples(log_mel: tf.Tensor, hop_seconds: float = params.EXAMPLE_HOP_SECONDS) -> tf.Tensor:
    """Log-mel frames [f, 64] -> float32 examples [1 + (f - 96) // hop, 96, 64] (hop in whole frames)."""
    examples = tf.signal.frame(log_mel, params.NUM_FRAMES, framing.hop_frames(hop_seconds), axis=0)
    return tf.cast(examples, tf.float32)


def waveform_to_examples(samples: tf.Tensor, dtype: tf.DType = tf.float64,
                         hop_seconds: float = params.EXAMPLE_HOP_SECONDS) -> tf.Tensor:
    """16 kHz mono samples [n] -> float32 examples [N >= 1, 96, 64], short signals padded to one example."""
    return frame_examples(log_mel_spectrogram(pad_short(samples), dtype), hop_seconds)


def postprocess(raw: tf.Tensor, postprocessor: Postprocessor, dtype: tf.DType = tf.float64) -> tf.Tensor:
    """Raw embeddings float32 [N, 128] -> PCA-whitened, 8-bit quantized uint8 [N, 128], with the
    postprocessor's eigenvectors and means as constants."""
    eigen_vectors = tf.constant(postprocessor.eigen_vectors, dtype)
    means = tf.constant(postprocessor.means, dtype)
    projected = tf.matmul(tf.cast(raw, dtype) - means, eigen_vectors, transpose_b=True)
    clipped = tf.clip_by_value(projected, params.QUANTIZE_MIN_VAL, params.QUANTIZE_MAX_VAL)
    scale = 255.0 / (params.QUANTIZE_MAX_VAL - params.QUANTIZE_MIN_VAL)
    # The values are >= 0 here, so the cast's truncation toward zero is numpy's astype(uint8).
    return tf.cast((clipped - params.QUANTIZE_MIN_VAL) * scale, tf.uint8)
