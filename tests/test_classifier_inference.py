"""The numpy forward pass (classifier.inference) against the Keras models it replaces at inference."""

from __future__ import annotations

import numpy as np
import pytest
from import_probe import modules_imported_by

from classifier.inference import (
    CONTEXT_KINDS,
    MODEL_KINDS,
    Member,
    neighbour_mean,
    sinusoidal_positions,
    weight_layout,
)

C = 7
TOLERANCE = 1e-5

CONFIGS = [{"kind": kind, "num_classes": C, "hidden_units": 32, "num_layers": 3} for kind in MODEL_KINDS] + [
    {"kind": kind, "num_classes": C, "hidden_units": units, "num_layers": layers, "attention": "softmax"}
    for kind, units, layers in (("single_attention", 32, 1), ("multi_attention", 24, 2),
                                ("feature_attention", 16, 2), ("transformer", 24, 1))
] + [
    {"kind": "transformer", "num_classes": C, "hidden_units": 32, "num_layers": 1, "num_heads": 4},
    {"kind": "transformer", "num_classes": C, "hidden_units": 24, "num_layers": 2, "num_heads": 3,
     "transformer_layers": 2, "dropout": 0.1},
] + [{"kind": kind, "num_classes": C, "hidden_units": 16, "num_layers": 2, "context": True}
     for kind in CONTEXT_KINDS]
TRANSFORMER = {"kind": "transformer", "num_classes": C, "hidden_units": 16, "num_layers": 1, "num_heads": 4,
               "transformer_layers": 2}


def _inputs(rng: np.random.Generator, n: int = 12, t: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, 256, (n, t, 128)).astype(np.float32)
    lengths = rng.integers(1, t + 1, n)
    lengths[:2] = t, 1
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
    return x, mask  # padded frames keep random values: both sides must ignore them


def _trained_like(config: dict, seed: int):
    """A Keras model with random weights, batch-norm statistics included (fresh ones are the identity)."""
    import keras

    from classifier.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(**config)
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.weights:
        shape, path = tuple(w.shape), w.path
        if path.endswith("moving_variance"):
            weights.append(rng.uniform(0.2, 3.0, shape))
        elif path.endswith(("moving_mean", "beta", "bias")):
            weights.append(rng.normal(0, 0.5, shape))
        elif path.endswith("gamma"):
            weights.append(rng.uniform(0.5, 1.5, shape))
        else:
            weights.append(rng.normal(0, 1.5 / np.sqrt(shape[0]), shape))
    model.set_weights([w.astype(np.float32) for w in weights])
    return model


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['kind']}-{c.get('attention', 'sigmoid')}-"
                                                         f"{c['hidden_units']}"
                                                         f"{'-context' if c.get('context') else ''}")
def test_numpy_forward_equals_keras(config: dict) -> None:
    from classifier.models import frame_model

    model = _trained_like(config, seed=len(config["kind"]))
    assert [(w.path, tuple(w.shape)) for w in model.weights] == weight_layout(**config)
    member = Member(config, [np.asarray(w) for w in model.weights])
    x, mask = _inputs(np.random.default_rng(1))
    expected = np.asarray(model({"x": x, "mask": mask}, training=False))
    ours = member.clip_probs(x, mask)
    assert ours.dtype == np.float32 and ours.shape == (len(x), C)
    assert expected.std() > 0.02  # the check is not between two constants
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOLERANCE)
    if member.has_frames:
        frames = np.asarray(frame_model(model)({"x": x, "mask": mask}, training=False))
        np.testing.assert_allclose(member.frame_probs(x, mask), frames, rtol=0, atol=TOLERANCE)
        weighted = np.asarray(frame_model(model, 0.5)({"x": x, "mask": mask}, training=False))
        np.testing.assert_allclose(member.frame_probs(x, mask, 0.5), weighted, rtol=0, atol=TOLERANCE)
        if config["kind"] in ("single_attention", "multi_attention"):  # the weights change the scores
            assert np.abs(weighted - frames).max() > 0.01
            assert (weighted <= frames + TOLERANCE).all()  # weights are <= 1
        else:
            np.testing.assert_array_equal(weighted, frames)
    else:
        with pytest.raises(ValueError, match="no frame-level output"):
            member.frame_probs(x, mask)


def test_bad_configs_and_weights_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown model kind"):
        weight_layout("lstm")
    with pytest.raises(TypeError):
        weight_layout("average", widths=3)
    with pytest.raises(ValueError, match="num_layers >= 2"):
        weight_layout("multi_attention", num_layers=1)
    with pytest.raises(ValueError, match=r"num_heads must be >= 1 and divide hidden_units \(32\), got 5"):
        weight_layout("transformer", hidden_units=32, num_heads=5)
    with pytest.raises(ValueError, match="transformer_layers must be >= 1"):
        weight_layout("transformer", hidden_units=32, transformer_layers=0)
    with pytest.raises(ValueError, match=r"attention must be one of \('sigmoid', 'softmax'\), got 'tanh'"):
        weight_layout("single_attention", attention="tanh")
    for kind in ("multi_attention", "transformer"):
        with pytest.raises(ValueError, match=f"context applies to the kinds .*, not to '{kind}'"):
            weight_layout(kind, hidden_units=32, context=True)
    config = {"kind": "average", "num_classes": C, "hidden_units": 8, "num_layers": 1}
    weights = [np.zeros(shape, np.float32) for _, shape in weight_layout(**config)]
    Member(config, weights)
    with pytest.raises(ValueError, match="expected 8 weight arrays"):
        Member(config, weights[:-1])
    with pytest.raises(ValueError, match="frame_probs/bias has shape"):
        Member(config, [*weights[:-1], np.zeros(C + 1, np.float32)])


def _random_member(config: dict, seed: int = 0) -> Member:
    """A numpy member with random weights (positive variances), without Keras."""
    rng = np.random.default_rng(seed)
    weights = []
    for name, shape in weight_layout(**config):
        if name.endswith("moving_variance"):
            weights.append(rng.uniform(0.2, 3.0, shape))
        else:
            weights.append(rng.normal(0, 1.0 / np.sqrt(shape[0]) if len(shape) > 1 else 0.5, shape))
    return Member(config, [w.astype(np.float32) for w in weights])


def test_neighbour_mean_averages_the_real_neighbours_only() -> None:
    h = np.arange(1, 5, dtype=np.float32)[None, :, None] * np.ones((2, 1, 2), np.float32)  # frames 1, 2, 3, 4
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.float32)
    out = neighbour_mean(h, mask)
    assert out.dtype == np.float32 and out.shape == h.shape
    np.testing.assert_array_equal(out[0, :, 0], [2, 2, 3, 3])  # ends have one neighbour
    np.testing.assert_array_equal(out[1, :3, 0], [2, 2, 2])  # the padded frame 4 is no neighbour
    np.testing.assert_array_equal(neighbour_mean(h[:, :1], mask[:, :1]), np.zeros((2, 1, 2)))  # one frame


def test_context_lets_a_frame_see_its_neighbours_and_nothing_further() -> None:
    config = {"kind": "single_attention", "num_classes": C, "hidden_units": 16, "num_layers": 2}
    plain, context = _random_member(config), _random_member(config | {"context": True})
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (2, 6, 128)).astype(np.float32)
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], np.float32)
    changed = {}
    for frame in (2, 4):  # a neighbour of frame 3, and a frame two away from frame 1
        other = x.copy()
        other[:, frame] = 255 - other[:, frame]
        changed[frame] = {name: np.abs(m.frame_probs(other, mask) - m.frame_probs(x, mask)).max(axis=-1)
                          for name, m in (("plain", plain), ("context", context))}
    assert changed[2]["context"][0, 3] > 1e-3 and changed[2]["plain"][0, 3] == 0
    assert changed[4]["context"][0, 1] == 0  # beyond the neighbours
    noisy = np.where(mask[..., None] > 0, x, rng.integers(0, 256, x.shape)).astype(np.float32)
    np.testing.assert_allclose(context.clip_probs(noisy, mask), context.clip_probs(x, mask), atol=1e-6)
    alone = context.clip_probs(x[1:, :4], np.ones((1, 4), np.float32))  # padding is no neighbour either
    np.testing.assert_allclose(alone, context.clip_probs(x, mask)[1:], atol=1e-6)


def test_sinusoidal_positions_follow_vaswani() -> None:
    pe = sinusoidal_positions(10, 6)
    assert pe.dtype == np.float32 and pe.shape == (10, 6)
    t = np.arange(10)[:, None]
    for i in range(3):  # units 2i and 2i + 1: sin and cos of t / 10000^(2i / 6)
        np.testing.assert_allclose(pe[:, [2 * i]], np.sin(t / 10000 ** (2 * i / 6)), atol=1e-6)
        np.testing.assert_allclose(pe[:, [2 * i + 1]], np.cos(t / 10000 ** (2 * i / 6)), atol=1e-6)
    np.testing.assert_array_equal(sinusoidal_positions(3, 6), pe[:3])  # a prefix for shorter clips


def test_transformer_ignores_padding_and_takes_any_length() -> None:
    member = _random_member(TRANSFORMER)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (5, 10, 128)).astype(np.float32)
    lengths = np.array([10, 1, 4, 7, 2])
    mask = (np.arange(10)[None, :] < lengths[:, None]).astype(np.float32)
    probs = member.clip_probs(x, mask)
    assert probs.shape == (5, C) and probs.std() > 0.02
    noisy = np.where(mask[..., None] > 0, x, rng.integers(0, 256, x.shape)).astype(np.float32)
    np.testing.assert_allclose(member.clip_probs(noisy, mask), probs, rtol=0, atol=1e-6)
    for row, length in enumerate(lengths):  # a clip alone, without padding (T = 1 included)
        alone = member.clip_probs(x[row : row + 1, :length], np.ones((1, length), np.float32))
        np.testing.assert_allclose(alone[0], probs[row], rtol=0, atol=1e-6)


def test_transformer_depends_on_frame_order_unlike_feature_attention() -> None:
    """The position encodings make the transformer see the order of the frames; without them self-attention
    and pooling are order-free (as feature attention is, to float32 rounding)."""
    x = np.random.default_rng(5).integers(0, 256, (3, 10, 128)).astype(np.float32)
    mask = np.ones((3, 10), np.float32)
    reversed_x = x[:, ::-1]
    transformer = _random_member(TRANSFORMER)
    assert np.abs(transformer.clip_probs(reversed_x, mask) - transformer.clip_probs(x, mask)).max() > 1e-4
    feature = _random_member(TRANSFORMER | {"kind": "feature_attention"})
    np.testing.assert_allclose(feature.clip_probs(reversed_x, mask), feature.clip_probs(x, mask), atol=1e-6)


@pytest.mark.slow
def test_transformer_equals_keras_on_one_frame_and_short_clips() -> None:
    model = _trained_like(TRANSFORMER, seed=2)
    member = Member(TRANSFORMER, [np.asarray(w) for w in model.weights])
    rng = np.random.default_rng(6)
    for frames in (1, 3):
        x = rng.integers(0, 256, (4, frames, 128)).astype(np.float32)
        mask = np.ones((4, frames), np.float32)
        expected = np.asarray(model({"x": x, "mask": mask}, training=False))
        np.testing.assert_allclose(member.clip_probs(x, mask), expected, rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_shipped_head_equals_its_keras_members() -> None:
    from classifier import load_pretrained
    from classifier.clipset import pad_clips
    from classifier.head_file import combine_probabilities
    from classifier.models import DECISION_LEVEL_KINDS, frame_model

    head = load_pretrained()
    rng = np.random.default_rng(3)
    clips = [rng.integers(0, 256, (t, 128)).astype(np.uint8) for t in (10, 10, 7, 1, 10, 3)]
    x, mask = pad_clips(clips)
    x, mask = x.astype(np.float32), mask.astype(np.float32)
    keras_clip = combine_probabilities([np.asarray(m({"x": x, "mask": mask}, training=False))
                                        for m in head.members], head.combine)
    np.testing.assert_allclose(head.predict_clips(clips), keras_clip, rtol=0, atol=TOLERANCE)
    keras_frames = combine_probabilities(
        [np.asarray(frame_model(m, head.timeline.attention_exponent)({"x": x, "mask": mask}, training=False))
         for m in head.members if m.name in DECISION_LEVEL_KINDS], head.combine)
    for ours, expected, clip in zip(head.predict_frames_raw(clips), keras_frames, clips, strict=True):
        np.testing.assert_allclose(ours, expected[: len(clip)], rtol=0, atol=TOLERANCE)


def test_loading_and_predicting_never_imports_tensorflow() -> None:
    code = ("import numpy as np\n"
            "from classifier import load_pretrained\n"
            "head = load_pretrained()\n"
            "head.predict_clips([np.zeros((10, 128), np.uint8)])\n"
            "head.predict_frames([np.zeros((3, 128), np.uint8)])\n")
    assert modules_imported_by(code, ["tensorflow", "keras"]) == []


def _random_head(config: dict, seed: int):
    from classifier.inference import weight_layout
    from classifier.pretrained import Head

    rng = np.random.default_rng(seed)
    layout = weight_layout(**config)
    weights = [rng.normal(0, 0.3, shape).astype(np.float32) if not name.endswith("moving_variance")
               else rng.uniform(0.5, 2.0, shape).astype(np.float32) for name, shape in layout]
    return Head.from_weights([config], [weights], [f"c{i}" for i in range(config["num_classes"])], f"h{seed}")


def test_frame_members_from_another_head_give_the_timeline_and_survive_saving(tmp_path) -> None:
    from classifier.pretrained import load_head

    clip_head = _random_head({"kind": "feature_attention", "num_classes": C, "hidden_units": 16,
                              "num_layers": 2}, seed=1)
    frame_head = _random_head({"kind": "linear_softmax", "num_classes": C, "hidden_units": 16,
                               "num_layers": 2}, seed=2)
    clips = [np.random.default_rng(3).integers(0, 256, (t, 128)).astype(np.uint8) for t in (1, 4, 10)]
    combined = clip_head.with_frame_members(frame_head)
    np.testing.assert_array_equal(combined.predict_clips(clips), clip_head.predict_clips(clips))
    raw = combined.predict_frames_raw(clips)
    expected = frame_head.predict_frames_raw(clips)  # its own decision-level member
    for got, want in zip(raw, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(raw[2], clip_head.predict_frames_raw(clips)[2])  # not one-patch clips any more
    loaded = load_head(combined.save(tmp_path / "h.npz"))
    assert loaded.frame_member_configs == frame_head.member_configs
    np.testing.assert_allclose(loaded.predict_frames_raw(clips)[1], raw[1], atol=1e-6)
    with pytest.raises(ValueError, match="no decision-level member"):
        frame_head.with_frame_members(clip_head)


def test_subset_keeps_chosen_members_rule_and_timeline_settings() -> None:
    from classifier.pretrained import Head

    configs = [{"kind": kind, "num_classes": C, "hidden_units": 8, "num_layers": 1}
               for kind in ("average", "feature_attention", "single_attention")]
    heads = [_random_head(c, seed=i) for i, c in enumerate(configs)]
    whole = Head.from_weights(configs, [h.member_weights[0] for h in heads], heads[0].class_names, "whole",
                              combine="mean_logit", timeline={"gamma": 0.5})
    part = whole.subset([2, 0], "part")
    assert part.member_configs == [configs[2], configs[0]] and part.combine == "mean_logit"
    assert part.timeline.gamma == 0.5 and part.info["subset_members"] == [2, 0]
    clips = [np.random.default_rng(4).integers(0, 256, (5, 128)).astype(np.uint8)]
    weights = [heads[2].member_weights[0], heads[0].member_weights[0]]
    expected = Head.from_weights([configs[2], configs[0]], weights, heads[0].class_names,
                                 combine="mean_logit").predict_clips(clips)
    np.testing.assert_allclose(part.predict_clips(clips), expected, atol=1e-7)
    with pytest.raises(ValueError, match="member indices"):
        whole.subset([3], "bad")
