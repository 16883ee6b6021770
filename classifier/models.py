"""Keras classifier heads over VGGish embedding sequences (Kong et al. 2017; Yu et al. 2018).

Every model takes two inputs:
  ``x``    float32 [B, T, 128]: the postprocessed uint8 embeddings as floats (0..255);
  ``mask`` float32 [B, T]: 1 for a real frame, 0 for padding.
and returns clip probabilities float32 [B, C].  Inputs are scaled as (x - 128) / 128 and padded frames are
zeroed before the trunk, so their values never matter; pooling and attention also ignore them.

The trunk is ``num_layers`` x [Dense(hidden_units) -> BatchNorm -> ReLU -> Dropout(dropout)], per frame.
Decision-level models ("average", "max", "linear_softmax", "single_attention", "multi_attention") classify
every frame with a sigmoid layer and pool the frame probabilities over time ("linear_softmax":
sum p^2 / sum p, the pooling that localized best in Wang et al. 2019, "A comparison of five multiple
instance learning pooling functions for sound event detection with weak labeling"); :func:`frame_model`
exposes those frame-level probabilities [B, T, C].  "feature_attention" pools the last hidden layer with
attention and classifies the pooled vector, so it has no frame-level output.  "transformer" adds fixed
sinusoidal position encodings to the last hidden layer and runs ``transformer_layers`` pre-LN transformer
encoder blocks over the frames (``num_heads``-head self-attention that never attends to padded frames, a
position-wise feed-forward of 2 x hidden_units) before feature_attention's pooling and classifier; it has
no frame-level output either.  ``context=True`` (the kinds of CONTEXT_KINDS) feeds the output layers each
frame's last hidden vector concatenated with the mean of its real neighbours' (frames t - 1 and t + 1), so a
frame's scores can use the evidence around it.  "linear" is a linear probe: one dense layer ``logits`` on
each scaled frame, averaged over the real frames (its frame-level output is each frame's activated logits).

``output="softmax"`` makes the clip output one distribution over the classes (single-label tasks): the
frame classifiers of decision-level kinds and the last layer of the others use a softmax over the classes,
and decision-level kinds renormalise their pooled scores to sum to 1 (:class:`ClassNormalization`).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from classifier.inference import (
    ATTENTION_EPS,
    BATCH_NORM_EPSILON,
    CONTEXT_KINDS,
    DECISION_LEVEL_KINDS,
    EMBEDDING_SIZE,
    LAYER_NORM_EPSILON,
    MASKED_SCORE,
    MODEL_KINDS,
    TRANSFORMER_FFN_FACTOR,
    TRANSFORMER_LAYERS,
    TRANSFORMER_NUM_HEADS,
    check_attention,
    check_context,
    check_output,
    check_transformer,
    position_frequencies,
)

__all__ = ["CONTEXT_KINDS", "DECISION_LEVEL_KINDS", "EMBEDDING_SIZE", "MODEL_KINDS", "build_model",
           "frame_model"]


class MaskedAveragePooling(layers.Layer):
    """Mean over the real frames: [B, T, D], mask [B, T] -> [B, D]."""

    def call(self, values, mask):
        m = ops.expand_dims(mask, -1)
        return ops.sum(values * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)


class MaskedMaxPooling(layers.Layer):
    """Max over the real frames of non-negative values (probabilities): [B, T, D], mask [B, T] -> [B, D]."""

    def call(self, values, mask):
        return ops.max(values * ops.expand_dims(mask, -1), axis=1)


class MaskedLinearSoftmaxPooling(layers.Layer):
    """sum_t p_t^2 / sum_t p_t over the real frames of probabilities: [B, T, D], mask [B, T] -> [B, D]."""

    def call(self, values, mask):
        v = values * ops.expand_dims(mask, -1)
        return ops.sum(v * v, axis=1) / ops.maximum(ops.sum(v, axis=1), ATTENTION_EPS)


class ClassNormalization(layers.Layer):
    """Scores [B, C] divided by their sum over the classes (at least ATTENTION_EPS): one distribution."""

    def call(self, values):
        return values / ops.maximum(ops.sum(values, axis=-1, keepdims=True), ATTENTION_EPS)


class AttentionPooling(layers.Layer):
    """Attention-weighted mean over the real frames: sum_t w_t v_t / sum_t w_t, per output unit.

    ``attention="sigmoid"`` uses the papers' normalised sigmoid, w = clip(sigmoid(a), eps, 1 - eps);
    ``attention="softmax"`` uses exp(a) (a softmax over time).  Padded frames get weight 0.
    Inputs: values [B, T, D], attention logits [B, T, D], mask [B, T]; output [B, D].
    """

    def __init__(self, attention: str = "sigmoid", **kwargs):
        super().__init__(**kwargs)
        check_attention(attention)
        self.attention = attention

    def attention_weights(self, logits, mask):
        """Unnormalised weights [B, T, D], 0 on padded frames (softmax: exp(a - max_t a), largest 1)."""
        m = ops.expand_dims(mask, -1)
        if self.attention == "sigmoid":
            return ops.clip(ops.sigmoid(logits), ATTENTION_EPS, 1.0 - ATTENTION_EPS) * m
        masked = ops.where(m > 0, logits, ops.full_like(logits, -1e9))
        return ops.exp(masked - ops.max(masked, axis=1, keepdims=True)) * m

    def call(self, values, logits, mask):
        weights = self.attention_weights(logits, mask)
        return ops.sum(values * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), ATTENTION_EPS)

    def get_config(self):
        return {**super().get_config(), "attention": self.attention}


class NeighbourContext(layers.Layer):
    """Each frame's values next to the mean of its real neighbours' (frames t - 1 and t + 1; zeros without
    one): values [B, T, D], mask [B, T] -> [B, T, 2D], as :func:`classifier.inference.neighbour_mean`."""

    def call(self, values, mask):
        m = ops.expand_dims(mask, -1)
        v = values * m

        def neighbours(z):  # z[t - 1] + z[t + 1], zero beyond the ends
            return (ops.pad(z, ((0, 0), (1, 0), (0, 0)))[:, :-1]
                    + ops.pad(z, ((0, 0), (0, 1), (0, 0)))[:, 1:])

        return ops.concatenate([values, neighbours(v) / ops.maximum(neighbours(m), 1.0)], axis=-1)


class SinusoidalPositions(layers.Layer):
    """Adds fixed sinusoidal position encodings (Vaswani et al. 2017) to [B, T, D], any T; no weights.

    Encoding of frame t, unit j: sin(t * f_j) for even j, cos(t * f_j) for odd j, with the frequencies of
    :func:`classifier.inference.position_frequencies` (float32, as the numpy forward pass computes them).
    """

    def call(self, values):
        frequencies, odd = position_frequencies(values.shape[-1])
        angles = ops.expand_dims(ops.cast(ops.arange(ops.shape(values)[1]), "float32"), -1) * frequencies
        return values + ops.where(odd, ops.cos(angles), ops.sin(angles))


class MaskedSelfAttention(layers.Layer):
    """Multi-head scaled dot-product self-attention over the frames that never attends to padded frames.

    The maths of keras.layers.MultiHeadAttention (query scaled by 1/sqrt(head size), softmax over the keys
    with masked scores at -1e9, heads concatenated, output projection), with the four projections as Dense
    layers ([H, H] kernels; head k owns columns k*size..(k+1)*size - 1, i.e. Keras' [H, heads, size] kernels
    reshaped) and the attention as batched matmuls: on TensorFlow's CPU kernels Keras' EinsumDense
    projections made this layer's forward + backward ~10x (a whole training step ~4x) slower.
    Inputs: values [B, T, H], mask [B, T]; output [B, T, H].
    """

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads

    def build(self, values_shape, mask_shape=None):
        width = values_shape[-1]
        self.query, self.key, self.value, self.attention_output = (
            layers.Dense(width, name=name) for name in ("query", "key", "value", "attention_output"))
        for projection in (self.query, self.key, self.value, self.attention_output):
            projection.build(values_shape)

    def call(self, values, mask):
        batch, frames, width = ops.shape(values)[0], ops.shape(values)[1], values.shape[-1]
        size = width // self.num_heads

        def split_heads(z):  # [B, T, H] -> [B, heads, T, size]
            return ops.transpose(ops.reshape(z, (batch, frames, self.num_heads, size)), (0, 2, 1, 3))

        query = split_heads(self.query(values)) * (1.0 / size**0.5)
        scores = ops.matmul(query, ops.transpose(split_heads(self.key(values)), (0, 1, 3, 2)))
        keys = ops.expand_dims(ops.expand_dims(mask, 1), 1) > 0  # [B, 1, 1, T] (TF-Lite has no newaxis slice)
        scores = ops.where(keys, scores, ops.full_like(scores, MASKED_SCORE))
        # softmax over the keys, written out: ops.softmax warns on one-frame clips (an axis of size 1)
        weights = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
        weights = weights / ops.sum(weights, axis=-1, keepdims=True)
        context = ops.matmul(weights, split_heads(self.value(values)))
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, frames, width))
        return self.attention_output(context)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


def _trunk(x, mask, hidden_units: int, num_layers: int, dropout: float, input_dropout: float) -> list:
    """Scale, drop embedding dimensions (training only), zero padded frames, then the per-frame MLP;
    returns every hidden layer's output [B, T, H] (the scaled input alone when num_layers is 0)."""
    h = layers.Rescaling(1.0 / 128.0, offset=-1.0, name="scale")(x)
    if input_dropout > 0:
        h = layers.Dropout(input_dropout, name="input_dropout")(h)
    h = h * ops.expand_dims(mask, -1)
    hidden = []
    for i in range(num_layers):
        h = layers.Dense(hidden_units, name=f"dense{i + 1}")(h)
        h = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"bn{i + 1}")(h)
        h = layers.ReLU(name=f"relu{i + 1}")(h)
        h = layers.Dropout(dropout, name=f"dropout{i + 1}")(h)
        hidden.append(h)
    return hidden or [h]


def _transformer_blocks(h, mask, blocks: int, num_heads: int, dropout: float):
    """Position encodings, then ``blocks`` pre-LN encoder blocks and a final LayerNorm over [B, T, H] frames:
    h += Dropout(MaskedSelfAttention(LN(h))); h += Dropout(FFN(LN(h))), FFN =
    Dense(2H, ReLU) -> Dense(H). Returns [B, T, H]."""
    width = h.shape[-1]
    h = SinusoidalPositions(name="positions")(h)
    for b in range(1, blocks + 1):
        a = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"ln_att{b}")(h)
        a = MaskedSelfAttention(num_heads, name=f"mha{b}")(a, mask)
        h = h + layers.Dropout(dropout, name=f"dropout_att{b}")(a)
        f = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"ln_ffn{b}")(h)
        f = layers.Dense(TRANSFORMER_FFN_FACTOR * width, activation="relu", name=f"ffn{b}_in")(f)
        f = layers.Dense(width, name=f"ffn{b}_out")(f)
        h = h + layers.Dropout(dropout, name=f"dropout_ffn{b}")(f)
    return layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="ln_final")(h)


def _feature_attention_classifier(top, mask, width: int, num_classes: int, attention: str, dropout: float,
                                  output: str):
    """Attention pooling of [B, T, D] frames into [B, width] -> BN -> ReLU -> Dropout -> ``output`` [B, C]."""
    values = layers.Dense(width, name="feat_cla")(top)
    logits = layers.Dense(width, name="feat_att")(top)
    h = AttentionPooling(attention, name="pool")(values, logits, mask)
    h = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name="bn_pool")(h)
    h = layers.ReLU(name="relu_pool")(h)
    h = layers.Dropout(dropout, name="dropout_pool")(h)
    return layers.Dense(num_classes, activation=output, name="clip_probs")(h)


def build_model(
    kind: str,
    num_classes: int = 527,
    *,
    hidden_units: int = 1024,
    num_layers: int = 3,
    dropout: float = 0.5,
    attention: str = "sigmoid",
    input_dropout: float = 0.0,
    max_frames: int | None = None,
    num_heads: int = TRANSFORMER_NUM_HEADS,
    transformer_layers: int = TRANSFORMER_LAYERS,
    context: bool = False,
    output: str = "sigmoid",
) -> keras.Model:
    """Build an (untrained) model of ``kind`` (one of MODEL_KINDS); see the module docstring for I/O.

    ``input_dropout`` drops embedding dimensions of every frame while training (no weights; inference
    ignores it). ``max_frames`` fixes T in the input shape (None accepts any length). ``num_heads`` and
    ``transformer_layers`` shape the "transformer" kind only (hidden_units must be a multiple of num_heads).
    ``context`` widens the output layers' input with the neighbour mean (CONTEXT_KINDS only). ``output``:
    the class activation, "sigmoid" (multi-label) or "softmax" (single-label). The "linear" kind ignores
    the trunk's settings (it has no hidden layers).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    if kind == "multi_attention" and num_layers < 2:
        raise ValueError("multi_attention needs num_layers >= 2")
    if kind == "transformer":
        check_transformer(hidden_units, num_heads, transformer_layers)
    check_context(kind, context)
    check_output(output)
    x = keras.Input((max_frames, EMBEDDING_SIZE), name="x")
    mask = keras.Input((max_frames,), name="mask")
    hidden = _trunk(x, mask, hidden_units, 0 if kind == "linear" else num_layers, dropout, input_dropout)
    top = NeighbourContext(name="context")(hidden[-1], mask) if context else hidden[-1]
    if kind == "linear":
        logits = MaskedAveragePooling(name="pool")(layers.Dense(num_classes, name="logits")(top), mask)
        out = layers.Activation(output, name="clip_activation")(logits)
    elif kind in ("average", "max", "linear_softmax", "single_attention"):
        frame = layers.Dense(num_classes, activation=output, name="frame_probs")(top)
        if kind == "average":
            out = MaskedAveragePooling(name="pool")(frame, mask)
        elif kind == "max":
            out = MaskedMaxPooling(name="pool")(frame, mask)
        elif kind == "linear_softmax":
            out = MaskedLinearSoftmaxPooling(name="pool")(frame, mask)
        else:
            logits = layers.Dense(num_classes, name="att")(top)
            out = AttentionPooling(attention, name="pool")(frame, logits, mask)
        if output == "softmax":
            out = ClassNormalization(name="normalize")(out)
    elif kind == "multi_attention":
        pooled = []
        for level, h in ((1, hidden[-2]), (2, hidden[-1])):
            cla = layers.Dense(num_classes, activation="sigmoid", name=f"cla{level}")(h)
            logits = layers.Dense(num_classes, name=f"att{level}")(h)
            pooled.append(AttentionPooling(attention, name=f"pool{level}")(cla, logits, mask))
        out = layers.Dense(num_classes, activation=output, name="fuse")(layers.Concatenate()(pooled))
    else:
        if kind == "transformer":
            top = _transformer_blocks(top, mask, transformer_layers, num_heads, dropout)
        out = _feature_attention_classifier(top, mask, hidden_units, num_classes, attention, dropout, output)
    return keras.Model({"x": x, "mask": mask}, out, name=kind)


def frame_model(model: keras.Model, attention_exponent: float = 0.0) -> keras.Model:
    """A model sharing ``model``'s weights that outputs frame-level probabilities [B, T, C].

    For "multi_attention" the frame score applies the fusion layer to the two levels' frame probabilities
    (the clip output applies it to their attention-pooled values).  ``attention_exponent`` a > 0 weighs them
    by the frames' attention weights ** a (multi_attention: the geometric mean of both levels' weights), as
    classifier.inference.Member.frame_probs.  Raises ValueError for "feature_attention" and "transformer",
    which have no frame-level output.
    """
    if model.name not in DECISION_LEVEL_KINDS:
        raise ValueError(f"model kind {model.name!r} has no frame-level output")
    mask = model.input["mask"]
    if model.name == "multi_attention":
        both = layers.Concatenate()([model.get_layer("cla1").output, model.get_layer("cla2").output])
        frame = model.get_layer("fuse")(both)
        if attention_exponent > 0:
            for level in (1, 2):
                weights = model.get_layer(f"pool{level}").attention_weights(
                    model.get_layer(f"att{level}").output, mask)
                frame = frame * ops.power(weights, attention_exponent / 2)
    elif model.name == "linear":
        frame = model.get_layer("clip_activation")(model.get_layer("logits").output)
    else:
        frame = model.get_layer("frame_probs").output
        if attention_exponent > 0 and model.name == "single_attention":
            weights = model.get_layer("pool").attention_weights(model.get_layer("att").output, mask)
            frame = frame * ops.power(weights, attention_exponent)
    return keras.Model(model.inputs, frame, name=f"{model.name}_frames")
