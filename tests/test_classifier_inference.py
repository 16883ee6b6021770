"""The numpy forward pass (classifier.inference) against the Keras models it replaces at inference."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from classifier.inference import MODEL_KINDS, Member, weight_layout

C = 7
TOLERANCE = 1e-5

CONFIGS = [{"kind": kind, "num_classes": C, "hidden_units": 32, "num_layers": 3} for kind in MODEL_KINDS] + [
    {"kind": kind, "num_classes": C, "hidden_units": units, "num_layers": layers, "attention": "softmax"}
    for kind, units, layers in (("single_attention", 32, 1), ("multi_attention", 24, 2),
                                ("feature_attention", 16, 2))
]


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
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['kind']}-{c.get('attention', 'sigmoid')}")
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
    config = {"kind": "average", "num_classes": C, "hidden_units": 8, "num_layers": 1}
    weights = [np.zeros(shape, np.float32) for _, shape in weight_layout(**config)]
    Member(config, weights)
    with pytest.raises(ValueError, match="expected 8 weight arrays"):
        Member(config, weights[:-1])
    with pytest.raises(ValueError, match="frame_probs/bias has shape"):
        Member(config, [*weights[:-1], np.zeros(C + 1, np.float32)])


@pytest.mark.slow
def test_shipped_head_equals_its_keras_members() -> None:
    from classifier import load_pretrained
    from classifier.clipset import pad_clips
    from classifier.models import DECISION_LEVEL_KINDS, frame_model
    from classifier.pretrained import combine_probabilities

    head = load_pretrained()
    rng = np.random.default_rng(3)
    clips = [rng.integers(0, 256, (t, 128)).astype(np.uint8) for t in (10, 10, 7, 1, 10, 3)]
    x, mask = pad_clips(clips)
    x, mask = x.astype(np.float32), mask.astype(np.float32)
    keras_clip = combine_probabilities([np.asarray(m({"x": x, "mask": mask}, training=False))
                                        for m in head.members], head.combine)
    np.testing.assert_allclose(head.predict_clips(clips), keras_clip, rtol=0, atol=TOLERANCE)
    keras_frames = combine_probabilities(
        [np.asarray(frame_model(m)({"x": x, "mask": mask}, training=False))
         for m in head.members if m.name in DECISION_LEVEL_KINDS], head.combine)
    for ours, expected, clip in zip(head.predict_frames_raw(clips), keras_frames, clips, strict=True):
        np.testing.assert_allclose(ours, expected[: len(clip)], rtol=0, atol=TOLERANCE)


def test_loading_and_predicting_never_imports_tensorflow() -> None:
    code = ("import sys, numpy as np\n"
            "from classifier import load_pretrained\n"
            "head = load_pretrained()\n"
            "head.predict_clips([np.zeros((10, 128), np.uint8)])\n"
            "head.predict_frames([np.zeros((3, 128), np.uint8)])\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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
