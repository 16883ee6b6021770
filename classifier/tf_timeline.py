"""The calibrated timeline (classifier.timeline) in TensorFlow ops, for graphs that are exported.

The same two steps as the numpy module, op for op: :func:`calibrate_frames` spreads each window's clip
probabilities over its patches by the raw frame probabilities' within-window localization, and
:func:`merge_windows` keeps, per patch, the maximum over the windows that cover it. Only TF-Lite built-in
ops are used (max, divide, clip, pow, unsorted segment max).
"""

from __future__ import annotations

import tensorflow as tf

from classifier.timeline import _FLOOR


def calibrate_frames(clip_probs: tf.Tensor, frame_probs: tf.Tensor, gamma: float) -> tf.Tensor:
    """Calibrated patch scores float32 [B, T, C] from clip probabilities float32 [B, C] and raw frame
    probabilities float32 [B, T, C] (padded frames 0): clip * clip(frame / max(max_t frame, 1e-12), 0, 1)
    ** gamma, as classifier.timeline.calibrate_frames (0 ** 0 = 1, so gamma 0 repeats the clip score)."""
    peak = tf.maximum(tf.reduce_max(frame_probs, axis=-2, keepdims=True), _FLOOR)
    relative = tf.clip_by_value(frame_probs / peak, 0.0, 1.0)
    return clip_probs[..., tf.newaxis, :] * tf.pow(relative, tf.constant(gamma, tf.float32))


def merge_windows(window_frames: tf.Tensor, first_patches: tf.Tensor, num_patches: tf.Tensor) -> tf.Tensor:
    """One timeline float32 [num_patches, C] from calibrated window frames float32 [W, T, C], window w
    covering patches first_patches[w] .. + T - 1 (int32 [W]): per patch the maximum over the windows that
    cover it, at least 0 (patches no window covers score 0), as classifier.timeline.merge_windows."""
    width = tf.shape(window_frames)[1]
    patch = tf.reshape(first_patches[:, tf.newaxis] + tf.range(width)[tf.newaxis], [-1])
    flat = tf.reshape(window_frames, [-1, tf.shape(window_frames)[2]])
    return tf.maximum(tf.math.unsorted_segment_max(flat, patch, num_patches), 0.0)
