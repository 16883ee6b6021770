"""Inference of the heads of :mod:`classifier.models` in numpy (float32, BLAS), without Keras.

The same functions as the Keras models at inference (``training=False``: dropout off, batch norm with its
moving statistics), from a member's config (the keyword arguments of :func:`classifier.models.build_model`)
and its weights in ``model.weights`` order (:func:`weight_layout`). Each batch-norm layer that follows a
dense layer is folded into a per-unit scale and bias applied after its matrix product (the weights are
used as given, not copied), so a hidden layer is one matrix product, a multiply-add and a ReLU.
Predictions equal the Keras model's to float32 rounding (tested within 1e-5 for every kind).

Inputs as for the Keras models: ``x`` float32 [B, T, 128] (uint8 values 0..255), ``mask`` float32 [B, T]
(1 real frame, 0 padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MODEL_KINDS = ("average", "max", "linear_softmax", "single_attention", "multi_attention", "feature_attention")
DECISION_LEVEL_KINDS = ("average", "max", "linear_softmax", "single_attention", "multi_attention")
EMBEDDING_SIZE = 128
ATTENTION_EPS = 1e-7  # attention weights are clipped to [eps, 1 - eps]; pooled sums divided by >= eps
BATCH_NORM_EPSILON = 1e-3  # Keras' BatchNormalization default, which the models use
_BN_PARAMS = ("gamma", "beta", "moving_mean", "moving_variance")


def weight_layout(kind: str, num_classes: int = 527, *, hidden_units: int = 1024, num_layers: int = 3,
                  dropout: float = 0.5, attention: str = "sigmoid", input_dropout: float = 0.0,
                  max_frames: int | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of each weight of a member, in ``model.weights`` order (names as Keras' paths).

    Takes a member config's keywords (those of build_model); ValueError/TypeError for a bad config.
    """
    del dropout, input_dropout, max_frames  # no weights depend on them
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    if kind == "multi_attention" and num_layers < 2:
        raise ValueError("multi_attention needs num_layers >= 2")
    if attention not in ("sigmoid", "softmax"):
        raise ValueError(f"attention must be 'sigmoid' or 'softmax', got {attention!r}")
    h, c = hidden_units, num_classes
    layout: list[tuple[str, tuple[int, ...]]] = []

    def dense(name: str, rows: int, cols: int) -> None:
        layout.extend([(f"{name}/kernel", (rows, cols)), (f"{name}/bias", (cols,))])

    def batch_norm(name: str, width: int) -> None:
        layout.extend((f"{name}/{p}", (width,)) for p in _BN_PARAMS)

    for i in range(num_layers):
        dense(f"dense{i + 1}", EMBEDDING_SIZE if i == 0 else h, h)
        batch_norm(f"bn{i + 1}", h)
    if kind in ("average", "max", "linear_softmax"):
        dense("frame_probs", h, c)
    elif kind == "single_attention":
        dense("frame_probs", h, c)
        dense("att", h, c)
    elif kind == "multi_attention":
        for level in (1, 2):
            dense(f"cla{level}", h, c)
            dense(f"att{level}", h, c)
        dense("fuse", 2 * c, c)
    else:
        dense("feat_cla", h, h)
        dense("feat_att", h, h)
        batch_norm("bn_pool", h)
        dense("clip_probs", h, c)
    return layout


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function in place on float32 z (exp overflow for very negative z gives 0, as it should)."""
    with np.errstate(over="ignore"):
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1.0
        np.reciprocal(z, out=z)
    return z


def _batch_norm_scale(bn: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) float64 with batch_norm(v) = v * scale + shift, from (gamma, beta, mean, variance)."""
    gamma, beta, mean, variance = (np.asarray(p, np.float64) for p in bn)
    scale = gamma / np.sqrt(variance + BATCH_NORM_EPSILON)
    return scale, beta - mean * scale


class Member:
    """One member's forward pass. ``config``: build_model keywords; ``weights``: float32 arrays in
    ``model.weights`` order (checked against :func:`weight_layout`)."""

    def __init__(self, config: dict, weights: Sequence[np.ndarray]):
        layout = weight_layout(**config)
        if len(weights) != len(layout):
            raise ValueError(f"expected {len(layout)} weight arrays, got {len(weights)}")
        named = {}
        for (name, shape), w in zip(layout, weights, strict=True):
            if tuple(np.shape(w)) != shape:
                raise ValueError(f"weight {name} has shape {tuple(np.shape(w))}, expected {shape}")
            named[name] = np.asarray(w)
        self.kind: str = config["kind"]
        self.attention: str = config.get("attention", "sigmoid")
        num_layers = config.get("num_layers", 3)
        # Hidden layers: batch_norm(h @ kernel + bias) = (h @ kernel) * scale + (bias * scale + shift); the
        # kernel is used as given (no copy), the vectors are folded.
        self._hidden = []
        for i in range(1, num_layers + 1):
            scale, shift = _batch_norm_scale([named[f"bn{i}/{p}"] for p in _BN_PARAMS])
            bias = np.asarray(named[f"dense{i}/bias"], np.float64) * scale + shift
            self._hidden.append((np.asarray(named[f"dense{i}/kernel"], np.float32), scale.astype(np.float32),
                                 bias.astype(np.float32)))
        self._dense = {}  # the other dense layers: name -> (kernel, bias) float32
        for name, _ in layout:
            layer, part = name.rsplit("/", 1)
            if part == "kernel" and not layer.startswith("dense"):
                self._dense[layer] = (np.asarray(named[name], np.float32),
                                      np.asarray(named[f"{layer}/bias"], np.float32))
        if self.kind == "feature_attention":
            self._pool_norm = tuple(p.astype(np.float32)
                                    for p in _batch_norm_scale([named[f"bn_pool/{p}"] for p in _BN_PARAMS]))

    @property
    def has_frames(self) -> bool:
        """Whether the member has frame-level probabilities (decision-level kinds)."""
        return self.kind in DECISION_LEVEL_KINDS

    def _apply(self, name: str, h: np.ndarray) -> np.ndarray:
        """Dense layer `name` on h [..., D] -> float32 [..., D'] (one 2-D matrix product)."""
        kernel, bias = self._dense[name]
        out = h.reshape(-1, h.shape[-1]) @ kernel
        out += bias
        return out.reshape(*h.shape[:-1], kernel.shape[1])

    def _trunk(self, x: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """Every hidden layer's output float32 [B, T, H]."""
        batch, frames = mask.shape
        h = (np.asarray(x, np.float32) * np.float32(1.0 / 128.0) - np.float32(1.0)) * mask[..., None]
        h = h.reshape(batch * frames, -1)
        hidden = []
        for kernel, scale, bias in self._hidden:
            h = h @ kernel
            h *= scale
            h += bias
            np.maximum(h, 0.0, out=h)
            hidden.append(h.reshape(batch, frames, -1))
        return hidden

    def _pool(self, values: np.ndarray, logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Attention pooling over time: [B, T, D] values and logits, mask [B, T] -> [B, D]."""
        m = mask[..., None]
        if self.attention == "sigmoid":
            weights = np.clip(_sigmoid(logits), ATTENTION_EPS, 1.0 - ATTENTION_EPS) * m
        else:
            masked = np.where(m > 0, logits, np.float32(-1e9))
            weights = np.exp(masked - masked.max(axis=1, keepdims=True)) * m
        return (values * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), np.float32(ATTENTION_EPS))

    def clip_probs(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Clip probabilities float32 [B, C]."""
        mask = np.asarray(mask, np.float32)
        hidden = self._trunk(x, mask)
        top = hidden[-1]
        if self.kind == "multi_attention":
            pooled = [self._pool(_sigmoid(self._apply(f"cla{level}", h)), self._apply(f"att{level}", h), mask)
                      for level, h in ((1, hidden[-2]), (2, hidden[-1]))]
            return _sigmoid(self._apply("fuse", np.concatenate(pooled, axis=-1)))
        if self.kind == "feature_attention":
            pooled = self._pool(self._apply("feat_cla", top), self._apply("feat_att", top), mask)
            scale, shift = self._pool_norm
            return _sigmoid(self._apply("clip_probs", np.maximum(pooled * scale + shift, 0.0)))
        frame = _sigmoid(self._apply("frame_probs", top))
        m = mask[..., None]
        if self.kind == "average":
            return (frame * m).sum(axis=1) / np.maximum(m.sum(axis=1), np.float32(1.0))
        if self.kind == "max":
            return (frame * m).max(axis=1)
        if self.kind == "linear_softmax":
            frame *= m
            return (frame * frame).sum(axis=1) / np.maximum(frame.sum(axis=1), np.float32(ATTENTION_EPS))
        return self._pool(frame, self._apply("att", top), mask)

    def frame_probs(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Frame probabilities float32 [B, T, C] of a decision-level member (for multi_attention: the fusion
        layer applied to both levels' frame probabilities); ValueError for feature_attention."""
        if not self.has_frames:
            raise ValueError(f"model kind {self.kind!r} has no frame-level output")
        hidden = self._trunk(x, np.asarray(mask, np.float32))
        if self.kind == "multi_attention":
            both = [_sigmoid(self._apply(f"cla{level}", h))
                    for level, h in ((1, hidden[-2]), (2, hidden[-1]))]
            return _sigmoid(self._apply("fuse", np.concatenate(both, axis=-1)))
        return _sigmoid(self._apply("frame_probs", hidden[-1]))
