"""The calibrated timeline: per-patch scores that mean the same across clips and files.

A head's raw frame probabilities rank the patches of one clip well but are not comparable across clips
(a frame output of 0.3 in one clip may be a sure detection, in another noise). The calibrated score of
patch t for class c of one clip (a window of up to 10 patches) distributes the clip's probability over its
patches by the class's within-clip localization:

    score[t, c] = clip[c] * (local[t, c] / max_t local[t, c]) ** gamma

where ``local`` is the raw frame score [T, C] (:meth:`classifier.pretrained.Head.predict_frames_raw`: the
frame probability, weighted by the frame's attention weight ** ``attention_exponent`` for attention
members). ``gamma`` = 0 repeats the clip score on every patch; larger values follow the localization more
closely. The peak patch of a class always scores exactly the
clip probability, so thresholds chosen on clip scores apply to the timeline too. It is a small closed-form
function of (clip probabilities, raw frame probabilities), elementwise plus a max over time, so it can be
reproduced in any graph (TensorFlow, numpy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_GAMMA = 0.25
_FLOOR = 1e-12  # keeps 0 / 0 out of the ratio when every frame of a class is exactly 0


@dataclass(frozen=True)
class TimelineParams:
    """Calibration parameters (stored in a head file under ``"timeline"``); see the module docstring.

    gamma: exponent of the within-clip relative frame score. attention_exponent: how much the raw frame
    scores of attention members follow their attention weights (0: plain frame probabilities, the only
    behaviour of head files that do not store it)."""

    gamma: float = DEFAULT_GAMMA
    attention_exponent: float = 0.0

    def __post_init__(self) -> None:
        for name in ("gamma", "attention_exponent"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"timeline {name} must be a finite number >= 0, got {value}")

    def to_config(self) -> dict[str, Any]:
        return {"gamma": float(self.gamma), "attention_exponent": float(self.attention_exponent)}

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> TimelineParams:
        return cls(**(config or {}))


def calibrate_frames(clip_probs: np.ndarray, frame_probs: np.ndarray,
                     params: TimelineParams = TimelineParams()) -> np.ndarray:
    """Calibrated patch scores float32 [T, C] of one clip from its clip probabilities float [C] and its raw
    frame probabilities float [T, C] (batched: [B, C] and [B, T, C] give [B, T, C]; padded frames must be
    0 there)."""
    clip_probs = np.asarray(clip_probs, np.float32)
    frame_probs = np.asarray(frame_probs, np.float32)
    peak = np.maximum(frame_probs.max(axis=-2, keepdims=True), _FLOOR)
    relative = np.clip(frame_probs / peak, 0.0, 1.0)
    return (np.expand_dims(clip_probs, -2) * relative ** np.float32(params.gamma)).astype(np.float32)


def merge_windows(window_frames: list[np.ndarray], first_patches: np.ndarray, num_patches: int) -> np.ndarray:
    """One timeline float32 [num_patches, C] from the calibrated frames of overlapping windows: window w
    (frames [T_w, C]) covers patches first_patches[w] .. + T_w - 1; a patch's score is its maximum over
    the windows that cover it (as a long file's clip score is the maximum over windows), so an event
    seen by several windows appears once. Patches no window covers score 0."""
    if not window_frames:
        return np.zeros((num_patches, 0), np.float32)
    out = np.zeros((num_patches, window_frames[0].shape[-1]), np.float32)
    for frames, first in zip(window_frames, first_patches, strict=True):
        rows = slice(int(first), int(first) + len(frames))
        np.maximum(out[rows], frames, out=out[rows])
    return out
