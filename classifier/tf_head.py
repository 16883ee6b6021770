"""A classifier head as a TensorFlow module, for graphs that are exported (SavedModel, TF-Lite).

Rebuilt from what a head file stores, not from live objects: each member is
classifier.models.build_model(**config) given its float32 weights (``model.weights`` order), and the
members' probabilities are combined by the head's rule in TF ops, as
classifier.head_file.combine_probabilities does in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from classifier.head_file import LOGIT_EPS, check_rule
from classifier.models import DECISION_LEVEL_KINDS, build_model, frame_model


def combine(probs: Sequence[tf.Tensor], rule: str) -> tf.Tensor:
    """Members' probabilities (each float32 [..., C]) -> one float32 tensor: their mean ("mean_probability")
    or the sigmoid of their mean log-odds, probabilities clipped to [1e-7, 1 - 1e-7] ("mean_logit")."""
    stacked = tf.stack(list(probs))
    if check_rule(rule) == "mean_probability":
        return tf.reduce_mean(stacked, axis=0)
    p = tf.clip_by_value(stacked, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return tf.sigmoid(tf.reduce_mean(tf.math.log(p) - tf.math.log1p(-p), axis=0))


def _built(config: dict, weights: Sequence[np.ndarray]) -> keras.Model:
    """classifier.models.build_model(**config) holding `weights` (as float32)."""
    model = build_model(**config)
    model.set_weights([np.asarray(w, dtype=np.float32) for w in weights])
    return model


@dataclass(frozen=True)
class _KerasModels:
    """The members as Keras models (clip output) and their frame-level views. A plain object, so that
    tf.Module does not track the Keras layers (their variables would be saved twice)."""

    clip: tuple
    frame: tuple


class HeadModule(tf.Module):
    """Clip and raw frame probabilities of a head; x float32 [B, T, 128] (uint8 embedding values), mask
    float32 [B, T] (1 = real frame). Frame members (decision-level, a head file's "frame_members") score
    frames only. `has_frames`: whether there is a frame member or a decision-level member.
    `attention_exponent`: the raw frame scores' attention weighting (classifier.timeline.TimelineParams)."""

    def __init__(self, member_configs: Sequence[dict], member_weights: Sequence[Sequence[np.ndarray]],
                 combine_rule: str = "mean_probability", frame_member_configs: Sequence[dict] = (),
                 frame_member_weights: Sequence[Sequence[np.ndarray]] = (),
                 attention_exponent: float = 0.0) -> None:
        super().__init__(name="head")
        if not member_configs or len(member_configs) != len(member_weights):
            raise ValueError("a head needs at least one member and one weight list per member")
        if len(frame_member_configs) != len(frame_member_weights):
            raise ValueError("a head needs one weight list per frame member")
        self.combine_rule = combine_rule
        members = [_built(c, w) for c, w in zip(member_configs, member_weights, strict=True)]
        frame_pairs = zip(frame_member_configs, frame_member_weights, strict=True)
        timeline_only = [_built(c, w) for c, w in frame_pairs]
        # As classifier.pretrained.Head.predict_frames_raw: the frame members when there are any (used for
        # frames only), else the decision-level members.
        frame_sources = timeline_only or [m for m in members if m.name in DECISION_LEVEL_KINDS]
        frame_members = [frame_model(m, attention_exponent) for m in frame_sources]
        self.keras = _KerasModels(tuple(members), tuple(frame_members))
        # The members' tf.Variables (a Keras 3 variable's `value` on the TensorFlow backend), listed here and
        # nowhere else: a SavedModel stores each once, and TF-Lite conversion, which freezes only the
        # variables that tf.Module finds, sees them all.
        self.weights = [w.value for m in (*members, *timeline_only) for w in m.weights]
        self.has_frames = bool(frame_members)

    def clip_probabilities(self, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """float32 [B, C]."""
        return combine([m({"x": x, "mask": mask}, training=False) for m in self.keras.clip],
                       self.combine_rule)

    def frame_probabilities(self, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Raw frame scores float32 [B, T, C] from the frame members, else the decision-level members
        (ValueError if there are neither), as classifier.pretrained.Head.predict_frames_raw."""
        if not self.has_frames:
            raise ValueError("this head has no decision-level member to score frames")
        return combine([m({"x": x, "mask": mask}, training=False) for m in self.keras.frame],
                       self.combine_rule)
