"""Inference of the heads of :mod:`classifier.models` in numpy (float32, BLAS), without Keras.

The same functions as the Keras models at inference (``training=False``: dropout off, batch norm with its
moving statistics), from a member's config (the keyword arguments of :func:`classifier.models.build_model`)
and its weights in ``model.weights`` order (:func:`weight_layout`). Each batch-norm layer that follows a
dense layer is folded into a per-unit scale and bias applied after its matrix product (the weights are
used as given, not copied), so a hidden layer is one matrix product, a multiply-add and a ReLU.
Predictions equal the Keras model's to float32 rounding (tested within 1e-5 for every kind).

Inputs as for the Keras models: ``x`` float32 [B, T, 128] (uint8 values 0..255), ``mask`` float32 [B, T]
(1 real frame, 0 padding).

The "linear" kind is a linear probe: no hidden layers, one dense layer ``logits`` on the mean of the scaled
frames (equal to the mean of the frames' logits, which are its frame-level output).

A member's ``output`` (config key, only present when not "sigmoid") is its class activation: "sigmoid"
(independent probabilities, multi-label) or "softmax" (one distribution over the classes, single-label).
With "softmax", decision-level kinds score each frame with a softmax over the classes and their pooled clip
scores are renormalised to sum to 1; the other kinds end in a softmax layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MODEL_KINDS = ("average", "max", "linear_softmax", "single_attention", "multi_attention", "feature_attention",
               "transformer", "linear")
DECISION_LEVEL_KINDS = ("average", "max", "linear_softmax", "single_attention", "multi_attention", "linear")
OUTPUTS = ("sigmoid", "softmax")  # a member's class activation: multi-label, single-label
# kinds whose output layers read only the last hidden layer, so ``context`` can widen their input
CONTEXT_KINDS = ("average", "max", "linear_softmax", "single_attention", "feature_attention")
EMBEDDING_SIZE = 128
ATTENTIONS = ("sigmoid", "softmax")  # attention weights over time: normalised sigmoid, softmax
ATTENTION_EPS = 1e-7  # attention weights are clipped to [eps, 1 - eps]; pooled sums divided by >= eps
BATCH_NORM_EPSILON = 1e-3  # Keras' BatchNormalization default, which the models use
LAYER_NORM_EPSILON = 1e-6  # the transformer blocks' LayerNormalization
TRANSFORMER_NUM_HEADS = 8  # default attention heads per transformer block
TRANSFORMER_LAYERS = 1  # default number of transformer encoder blocks
TRANSFORMER_FFN_FACTOR = 2  # the position-wise feed-forward's inner width, in multiples of hidden_units
POSITION_BASE = 10000.0  # the sinusoidal position encodings' longest wavelength, / 2 pi (Vaswani et al.)
_BN_PARAMS = ("gamma", "beta", "moving_mean", "moving_variance")
_LN_PARAMS = ("gamma", "beta")
_MHA_PARTS = ("query", "key", "value")
MASKED_SCORE = -1e9  # the transformer's attention score for padded frames (as Keras' masked softmax)


def check_transformer(hidden_units: int, num_heads: int, transformer_layers: int) -> None:
    """ValueError unless a transformer member's settings fit: num_heads >= 1 dividing hidden_units, and
    transformer_layers >= 1."""
    if num_heads < 1 or hidden_units % num_heads:
        raise ValueError(f"num_heads must be >= 1 and divide hidden_units ({hidden_units}), got {num_heads}")
    if transformer_layers < 1:
        raise ValueError(f"transformer_layers must be >= 1, got {transformer_layers}")


def check_attention(attention: str) -> None:
    """ValueError unless ``attention`` is one of ATTENTIONS."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")


def check_output(output: str) -> None:
    """ValueError unless ``output`` is one of OUTPUTS."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def check_context(kind: str, context: bool) -> None:
    """ValueError when ``context`` is set for a kind outside CONTEXT_KINDS."""
    if context and kind not in CONTEXT_KINDS:
        raise ValueError(f"context applies to the kinds {CONTEXT_KINDS}, not to {kind!r}")


def neighbour_mean(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of each frame's real neighbours (frames t - 1 and t + 1 with mask 1), float32 [B, T, H] from h
    [B, T, H] and mask [B, T]; zeros for a frame without a real neighbour (a one-frame clip)."""
    m = mask[..., None]
    v = h * m
    total = np.zeros_like(v)
    total[:, 1:] += v[:, :-1]
    total[:, :-1] += v[:, 1:]
    count = np.zeros_like(m)
    count[:, 1:] += m[:, :-1]
    count[:, :-1] += m[:, 1:]
    return total / np.maximum(count, np.float32(1.0))


def position_frequencies(width: int) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies float32 [width], odd bool [width]) of the sinusoidal position encodings: unit j of frame
    t gets sin(t * f_j) (even j) or cos(t * f_j) (odd j), f_j = POSITION_BASE ** (-2 * (j // 2) / width)."""
    units = np.arange(width)
    frequencies = POSITION_BASE ** (-2.0 * (units // 2) / width)
    return frequencies.astype(np.float32), units % 2 == 1


def sinusoidal_positions(frames: int, width: int) -> np.ndarray:
    """The position encodings float32 [frames, width] (see :func:`position_frequencies`)."""
    frequencies, odd = position_frequencies(width)
    angles = np.arange(frames, dtype=np.float32)[:, None] * frequencies
    return np.where(odd, np.cos(angles), np.sin(angles)).astype(np.float32)


def weight_layout(kind: str, num_classes: int = 527, *, hidden_units: int = 1024, num_layers: int = 3,
                  dropout: float = 0.5, attention: str = "sigmoid", input_dropout: float = 0.0,
                  max_frames: int | None = None, num_heads: int = TRANSFORMER_NUM_HEADS,
                  transformer_layers: int = TRANSFORMER_LAYERS, context: bool = False,
                  output: str = "sigmoid") -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of each weight of a member, in ``model.weights`` order (names as Keras' paths).

    Takes a member config's keywords (those of build_model); ValueError/TypeError for a bad config. The
    "linear" kind has no hidden layers: its only weights are ``logits`` (kernel [128, C], bias [C]).
    """
    del dropout, input_dropout, max_frames  # no weights depend on them
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    check_output(output)
    if kind == "linear":
        check_context(kind, context)
        return [("logits/kernel", (EMBEDDING_SIZE, num_classes)), ("logits/bias", (num_classes,))]
    if kind == "multi_attention" and num_layers < 2:
        raise ValueError("multi_attention needs num_layers >= 2")
    check_attention(attention)
    if kind == "transformer":
        check_transformer(hidden_units, num_heads, transformer_layers)
    check_context(kind, context)
    h, c = hidden_units, num_classes
    top = 2 * h if context else h  # the output layers' input width: [h_t, neighbour mean] with context
    layout: list[tuple[str, tuple[int, ...]]] = []

    def dense(name: str, rows: int, cols: int) -> None:
        layout.extend([(f"{name}/kernel", (rows, cols)), (f"{name}/bias", (cols,))])

    def batch_norm(name: str, width: int) -> None:
        layout.extend((f"{name}/{p}", (width,)) for p in _BN_PARAMS)

    def layer_norm(name: str) -> None:
        layout.extend((f"{name}/{p}", (h,)) for p in _LN_PARAMS)

    for i in range(num_layers):
        dense(f"dense{i + 1}", EMBEDDING_SIZE if i == 0 else h, h)
        batch_norm(f"bn{i + 1}", h)
    if kind in ("average", "max", "linear_softmax"):
        dense("frame_probs", top, c)
    elif kind == "single_attention":
        dense("frame_probs", top, c)
        dense("att", top, c)
    elif kind == "multi_attention":
        for level in (1, 2):
            dense(f"cla{level}", h, c)
            dense(f"att{level}", h, c)
        dense("fuse", 2 * c, c)
    else:
        if kind == "transformer":
            for b in range(1, transformer_layers + 1):
                layer_norm(f"ln_att{b}")
                for part in (*_MHA_PARTS, "attention_output"):
                    dense(f"mha{b}/{part}", h, h)
                layer_norm(f"ln_ffn{b}")
                dense(f"ffn{b}_in", h, TRANSFORMER_FFN_FACTOR * h)
                dense(f"ffn{b}_out", TRANSFORMER_FFN_FACTOR * h, h)
            layer_norm("ln_final")
        dense("feat_cla", top, h)
        dense("feat_att", top, h)
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


def _softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of float32 z, in place."""
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
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
        self.context: bool = config.get("context", False)
        self.output: str = config.get("output", "sigmoid")
        num_layers = 0 if self.kind == "linear" else config.get("num_layers", 3)
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
            if part == "kernel" and not layer.startswith(("dense", "mha")):
                self._dense[layer] = (np.asarray(named[name], np.float32),
                                      np.asarray(named[f"{layer}/bias"], np.float32))
        if self.kind in ("feature_attention", "transformer"):
            self._pool_norm = tuple(p.astype(np.float32)
                                    for p in _batch_norm_scale([named[f"bn_pool/{p}"] for p in _BN_PARAMS]))
        if self.kind == "transformer":
            self._setup_transformer(config, named)

    def _setup_transformer(self, config: dict, named: dict[str, np.ndarray]) -> None:
        """LayerNorm parameters, and per block the query/key/value projections fused into one [H, 3H] matrix
        (query columns pre-scaled by 1/sqrt(head size), as the Keras layer scales the projected query) and
        the output projection [H, H]."""
        self.num_heads: int = config.get("num_heads", TRANSFORMER_NUM_HEADS)
        self._layer_norms = {}  # name -> (gamma, beta) float32 [H]
        for name in named:
            layer, part = name.rsplit("/", 1)
            if layer.startswith("ln_") and part == "gamma":
                self._layer_norms[layer] = tuple(np.asarray(named[f"{layer}/{p}"], np.float32)
                                                 for p in _LN_PARAMS)
        self._attention = []  # per block: qkv kernel [H, 3H], qkv bias [3H], out kernel [H, H], out bias [H]
        for b in range(1, config.get("transformer_layers", TRANSFORMER_LAYERS) + 1):
            kernels, biases = [], []
            for part in _MHA_PARTS:
                kernel = np.asarray(named[f"mha{b}/{part}/kernel"], np.float32)
                head_size = kernel.shape[0] // self.num_heads
                factor = np.float32(1.0 / np.sqrt(head_size) if part == "query" else 1.0)
                kernels.append(kernel * factor)
                biases.append(np.asarray(named[f"mha{b}/{part}/bias"], np.float32) * factor)
            self._attention.append((np.concatenate(kernels, axis=1), np.concatenate(biases),
                                    np.asarray(named[f"mha{b}/attention_output/kernel"], np.float32),
                                    np.asarray(named[f"mha{b}/attention_output/bias"], np.float32)))

    @property
    def has_frames(self) -> bool:
        """Whether the member has frame-level probabilities (decision-level kinds)."""
        return self.kind in DECISION_LEVEL_KINDS

    def _activate(self, z: np.ndarray) -> np.ndarray:
        """The member's class activation (``output``) of logits float32 [..., C], in place."""
        return _softmax(z) if self.output == "softmax" else _sigmoid(z)

    def _apply(self, name: str, h: np.ndarray) -> np.ndarray:
        """Dense layer `name` on h [..., D] -> float32 [..., D'] (one 2-D matrix product)."""
        kernel, bias = self._dense[name]
        out = h.reshape(-1, h.shape[-1]) @ kernel
        out += bias
        return out.reshape(*h.shape[:-1], kernel.shape[1])

    def _trunk(self, x: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """The scaled input (x - 128) / 128 with padded frames zeroed, then every hidden layer's output
        float32 [B, T, H] (the input alone for the "linear" kind, which has no hidden layers)."""
        batch, frames = mask.shape
        h = (np.asarray(x, np.float32) * np.float32(1.0 / 128.0) - np.float32(1.0)) * mask[..., None]
        hidden = [h]
        h = h.reshape(batch * frames, -1)
        for kernel, scale, bias in self._hidden:
            h = h @ kernel
            h *= scale
            h += bias
            np.maximum(h, 0.0, out=h)
            hidden.append(h.reshape(batch, frames, -1))
        return hidden[1:] if self._hidden else hidden

    def last_hidden(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The trunk's last hidden layer float32 [B, T, H] (what the output layers read, before context)."""
        return self._trunk(x, np.asarray(mask, np.float32))[-1]

    def _output_input(self, top: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """What the output layers read: the last hidden layer [B, T, H], with ``context`` concatenated with
        its neighbour mean ([B, T, 2H])."""
        if not self.context:
            return top
        return np.concatenate([top, neighbour_mean(top, mask)], axis=-1)

    def _layer_norm(self, name: str, h: np.ndarray) -> np.ndarray:
        """LayerNormalization `name` over the last axis of float32 h [..., H]."""
        gamma, beta = self._layer_norms[name]
        centred = h - h.mean(axis=-1, keepdims=True)
        variance = np.square(centred).mean(axis=-1, keepdims=True)
        centred *= gamma / np.sqrt(variance + np.float32(LAYER_NORM_EPSILON))
        centred += beta
        return centred

    def _self_attention(self, block: int, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Multi-head self-attention of block `block` (0-based) over h [B, T, H]; padded frames (mask 0) are
        never attended to. Batched matrix products over clips and heads; returns [B, T, H]."""
        qkv_kernel, qkv_bias, out_kernel, out_bias = self._attention[block]
        batch, frames, width = h.shape
        qkv = h.reshape(-1, width) @ qkv_kernel
        qkv += qkv_bias
        # [B*T, 3*heads*size] -> 3 x [B, heads, T, size]
        query, key, value = qkv.reshape(batch, frames, 3, self.num_heads, -1).transpose(2, 0, 3, 1, 4)
        scores = query @ key.transpose(0, 1, 3, 2)  # [B, heads, T(query), T(key)]
        scores += np.where(mask > 0, np.float32(0.0), np.float32(MASKED_SCORE))[:, None, None, :]
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * frames, -1)  # [B*T, heads*size]
        out = context @ out_kernel
        out += out_bias
        return out.reshape(batch, frames, width)

    def _transformer(self, top: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Position encodings, the pre-LN encoder blocks and the final LayerNorm over [B, T, H]."""
        h = top + sinusoidal_positions(top.shape[1], top.shape[2])
        for block in range(len(self._attention)):
            h = h + self._self_attention(block, self._layer_norm(f"ln_att{block + 1}", h), mask)
            inner = self._apply(f"ffn{block + 1}_in", self._layer_norm(f"ln_ffn{block + 1}", h))
            h = h + self._apply(f"ffn{block + 1}_out", np.maximum(inner, 0.0, out=inner))
        return self._layer_norm("ln_final", h)

    def _attention_weights(self, logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unnormalised attention weights float32 [B, T, D] from logits [B, T, D] and mask [B, T], 0 on
        padded frames: sigmoid attention clip(sigmoid(logits), eps, 1 - eps); softmax attention
        exp(logits - max_t logits), so each clip's largest weight is 1. The pooling divides by their sum."""
        m = mask[..., None]
        if self.attention == "sigmoid":
            return np.clip(_sigmoid(logits), ATTENTION_EPS, 1.0 - ATTENTION_EPS) * m
        masked = np.where(m > 0, logits, np.float32(-1e9))
        return np.exp(masked - masked.max(axis=1, keepdims=True)) * m

    def _pool(self, values: np.ndarray, logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Attention pooling over time: [B, T, D] values and logits, mask [B, T] -> [B, D]."""
        weights = self._attention_weights(logits, mask)
        return (values * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), np.float32(ATTENTION_EPS))

    def clip_probs(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Clip probabilities float32 [B, C]."""
        mask = np.asarray(mask, np.float32)
        hidden = self._trunk(x, mask)
        top = self._output_input(hidden[-1], mask)
        m = mask[..., None]
        if self.kind == "linear":  # the mean of the frames' logits, = the logits of the mean frame
            logits = (self._apply("logits", top) * m).sum(axis=1) / np.maximum(m.sum(axis=1), np.float32(1.0))
            return self._activate(logits)
        if self.kind == "multi_attention":
            pooled = [self._pool(_sigmoid(self._apply(f"cla{level}", h)), self._apply(f"att{level}", h), mask)
                      for level, h in ((1, hidden[-2]), (2, hidden[-1]))]
            return self._activate(self._apply("fuse", np.concatenate(pooled, axis=-1)))
        if self.kind in ("feature_attention", "transformer"):
            if self.kind == "transformer":
                top = self._transformer(top, mask)
            pooled = self._pool(self._apply("feat_cla", top), self._apply("feat_att", top), mask)
            scale, shift = self._pool_norm
            return self._activate(self._apply("clip_probs", np.maximum(pooled * scale + shift, 0.0)))
        frame = self._activate(self._apply("frame_probs", top))
        if self.kind == "average":
            clip = (frame * m).sum(axis=1) / np.maximum(m.sum(axis=1), np.float32(1.0))
        elif self.kind == "max":
            clip = (frame * m).max(axis=1)
        elif self.kind == "linear_softmax":
            frame *= m
            clip = (frame * frame).sum(axis=1) / np.maximum(frame.sum(axis=1), np.float32(ATTENTION_EPS))
        else:
            clip = self._pool(frame, self._apply("att", top), mask)
        if self.output == "softmax":  # pooled per class: back to one distribution over the classes
            clip /= np.maximum(clip.sum(axis=-1, keepdims=True), np.float32(ATTENTION_EPS))
        return clip

    def frame_probs(self, x: np.ndarray, mask: np.ndarray, attention_exponent: float = 0.0) -> np.ndarray:
        """Frame probabilities float32 [B, T, C] of a decision-level member (for multi_attention: the fusion
        layer applied to both levels' frame probabilities; for linear: each frame's own logits, activated);
        ValueError for the kinds without frames.

        ``attention_exponent`` a > 0 weighs each frame probability by its attention weight ** a (the weight
        the clip's attention pooling gives the frame: single_attention's ``att`` weights, multi_attention's
        geometric mean of both levels'), a score in [0, 1] that follows the frame's share in the pooled clip
        score; kinds without attention ignore it. 0 gives the plain probabilities.
        """
        if not self.has_frames:
            raise ValueError(f"model kind {self.kind!r} has no frame-level output")
        mask = np.asarray(mask, np.float32)
        hidden = self._trunk(x, mask)
        if self.kind == "multi_attention":
            levels = ((1, hidden[-2]), (2, hidden[-1]))
            both = [_sigmoid(self._apply(f"cla{level}", h)) for level, h in levels]
            frames = self._activate(self._apply("fuse", np.concatenate(both, axis=-1)))
            if attention_exponent > 0:
                for level, h in levels:
                    frames *= self._attention_weights(self._apply(f"att{level}", h), mask) ** np.float32(
                        attention_exponent / 2)
            return frames
        top = self._output_input(hidden[-1], mask)
        frames = self._activate(self._apply("logits" if self.kind == "linear" else "frame_probs", top))
        if attention_exponent > 0 and self.kind == "single_attention":
            frames *= self._attention_weights(self._apply("att", top), mask) ** np.float32(attention_exponent)
        return frames
