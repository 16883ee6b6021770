"""Classifier models and heads: shapes, masking, pooling maths, head files, the shipped head."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classifier.clipset import pad_clips
from classifier.head_file import HeadError, save_head
from classifier.models import DECISION_LEVEL_KINDS, MODEL_KINDS, AttentionPooling, build_model, frame_model
from classifier.pretrained import Head, load_head

pytestmark = pytest.mark.slow

C = 5


def _inputs(rng: np.random.Generator, n: int = 4, t: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, 256, (n, t, 128)).astype(np.float32)
    lengths = rng.integers(1, t + 1, n)
    lengths[0] = t
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
    return x * mask[..., None], mask


def _tiny(kind: str, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    return build_model(kind, C, hidden_units=16, num_layers=3, dropout=0.5)


def _run(model, x, mask, training=False):
    return np.asarray(model({"x": x, "mask": mask}, training=training))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_shapes_and_probability_range(kind):
    x, mask = _inputs(np.random.default_rng(0))
    p = _run(_tiny(kind), x, mask)
    assert p.shape == (4, C)
    assert np.all((p >= 0) & (p <= 1))


@pytest.mark.parametrize("kind", DECISION_LEVEL_KINDS)
def test_frame_level_output_shape(kind):
    x, mask = _inputs(np.random.default_rng(1))
    frames = _run(frame_model(_tiny(kind)), x, mask)
    assert frames.shape == (4, 10, C)
    assert np.all((frames >= 0) & (frames <= 1))


@pytest.mark.parametrize("kind", sorted(set(MODEL_KINDS) - set(DECISION_LEVEL_KINDS)))
def test_clip_level_kinds_have_no_frame_output(kind):
    with pytest.raises(ValueError, match="no frame-level output"):
        frame_model(_tiny(kind))


def test_unknown_attention_is_rejected_by_the_layer_and_the_builder():
    with pytest.raises(ValueError, match="attention must be one of"):
        AttentionPooling("tanh")
    with pytest.raises(ValueError, match="attention must be one of"):
        build_model("single_attention", num_classes=3, hidden_units=8, num_layers=1, attention="tanh")


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_padded_frames_never_matter(kind):
    rng = np.random.default_rng(2)
    x, mask = _inputs(rng)
    assert mask.min() == 0  # some clips really are padded
    model = _tiny(kind)
    noisy = np.where(mask[..., None] > 0, x, rng.integers(0, 256, x.shape)).astype(np.float32)
    np.testing.assert_allclose(_run(model, noisy, mask), _run(model, x, mask), rtol=1e-6, atol=1e-7)
    if kind in DECISION_LEVEL_KINDS:
        fm = frame_model(model)
        real = mask > 0
        np.testing.assert_allclose(_run(fm, noisy, mask)[real], _run(fm, x, mask)[real], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_short_input_equals_masked_padded_input(kind):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 4, 128)).astype(np.float32)
    model = _tiny(kind)
    short = _run(model, x, np.ones((2, 4), np.float32))
    padded = np.concatenate([x, np.zeros((2, 6, 128), np.float32)], axis=1)
    mask = np.concatenate([np.ones((2, 4)), np.zeros((2, 6))], axis=1).astype(np.float32)
    np.testing.assert_allclose(_run(model, padded, mask), short, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["average", "max", "single_attention"])
def test_pooling_matches_frame_probabilities(kind):
    x, mask = _inputs(np.random.default_rng(4))
    model = _tiny(kind)
    clip = _run(model, x, mask)
    frames = _run(frame_model(model), x, mask)
    real = mask[..., None] > 0
    if kind == "average":
        expected = (frames * real).sum(1) / real.sum(1)
        np.testing.assert_allclose(clip, expected, rtol=1e-5)
    elif kind == "max":
        np.testing.assert_allclose(clip, np.where(real, frames, 0).max(1), rtol=1e-6)
    else:  # an attention-weighted mean lies between the min and max real frame probability
        lo = np.where(real, frames, np.inf).min(1)
        hi = np.where(real, frames, -np.inf).max(1)
        assert np.all(clip >= lo - 1e-6) and np.all(clip <= hi + 1e-6)


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("lstm")


def test_transformer_settings_are_checked_and_shape_its_blocks():
    with pytest.raises(ValueError, match="num_heads must be >= 1 and divide hidden_units"):
        build_model("transformer", C, hidden_units=16, num_heads=3)
    with pytest.raises(ValueError, match="transformer_layers must be >= 1"):
        build_model("transformer", C, hidden_units=16, transformer_layers=0)
    model = build_model("transformer", C, hidden_units=16, num_layers=1, num_heads=2, transformer_layers=3)
    attention = [layer for layer in model.layers if layer.name.startswith("mha")]
    assert [layer.name for layer in attention] == ["mha1", "mha2", "mha3"]
    query_kernel = model.get_layer("mha2").get_weights()[0]
    assert query_kernel.shape == (16, 16)  # [H, heads x H / heads]


def _member_config(kind: str) -> dict:
    return {"kind": kind, "num_classes": C, "hidden_units": 16, "num_layers": 3, "dropout": 0.5,
            "attention": "sigmoid"}


def test_head_round_trip_and_clip_api(tmp_path):
    rng = np.random.default_rng(5)
    models = [_tiny("single_attention", 0), _tiny("multi_attention", 1)]
    configs = [_member_config("single_attention"), _member_config("multi_attention")]
    head = Head(models, configs, [f"class{i}" for i in range(C)], name="toy", info={"note": "test"})
    clips = [rng.integers(0, 256, (t, 128)).astype(np.uint8) for t in (10, 3, 1, 7)]
    expected = head.predict_clips(clips)
    assert expected.shape == (4, C) and expected.dtype == np.float32
    # the ensemble averages its members
    single = Head(models[:1], configs[:1], head.class_names).predict_clips(clips)
    assert not np.allclose(single, expected)

    path = head.save(tmp_path / "toy.npz")
    loaded = load_head(path)
    assert loaded.class_names == head.class_names and loaded.name == "toy" and loaded.info == {"note": "test"}
    np.testing.assert_array_equal(loaded.predict_clips(clips), expected)
    with np.load(path, allow_pickle=False) as z:  # loadable without pickle; config is JSON
        assert json.loads(str(z["config"]))["format"] == "audiotag-head-v1"

    half = load_head(head.save(tmp_path / "half.npz", dtype="float16"))
    np.testing.assert_allclose(half.predict_clips(clips), expected, atol=2e-3)
    quarter_path = head.save(tmp_path / "int8.npz", dtype="int8")
    with np.load(quarter_path, allow_pickle=False) as z:
        assert z["m0/0"].dtype == np.int8 and z["m0/0/scale"].shape == (z["m0/0"].shape[1],)
    quarter = load_head(quarter_path)
    np.testing.assert_allclose(quarter.predict_clips(clips), expected, atol=2e-2)
    assert not np.array_equal(quarter.predict_clips(clips), expected)

    frames = loaded.predict_frames(clips)
    assert [f.shape for f in frames] == [(10, C), (3, C), (1, C), (7, C)]


def test_int8_columns_round_trip_within_half_a_step():
    from classifier.head_file import quantize_columns

    w = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)
    w[:, 3] *= 1e-3  # a column of small weights keeps its own precision
    w[:, 4] = 0.0  # an all-zero column stays exactly zero
    q, scale = quantize_columns(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    err = np.abs(q * scale - w)
    assert np.all(err <= scale / 2 + 1e-9)
    assert err[:, 3].max() < 1e-4 and not err[:, 4].any()


def test_frame_scores_come_from_decision_level_members():
    clips = [np.full((4, 128), 100, np.uint8), np.arange(3 * 128).reshape(3, 128).astype(np.uint8)]
    names = [str(i) for i in range(C)]
    feature = _tiny("feature_attention")
    avg = _tiny("average", 1)
    mixed = Head([feature, avg], [_member_config("feature_attention"), _member_config("average")], names)
    alone = Head([avg], [_member_config("average")], names)
    np.testing.assert_allclose(mixed.predict_frames_raw(clips)[0], alone.predict_frames_raw(clips)[0],
                               rtol=1e-6)
    # Without any decision-level member, each patch is scored as a one-patch clip.
    only_feature = Head([feature], [_member_config("feature_attention")], names)
    raw = only_feature.predict_frames_raw(clips)
    np.testing.assert_allclose(raw[1][2], only_feature.predict_clips([clips[1][2:3]])[0], rtol=1e-5)
    assert [f.shape for f in only_feature.predict_frames(clips)] == [(4, C), (3, C)]


def test_calibrated_frames_peak_at_the_clip_probability_and_follow_the_raw_ranking():
    rng = np.random.default_rng(3)
    clips = [rng.integers(0, 256, (t, 128)).astype(np.uint8) for t in (10, 4, 1)]
    names = [str(i) for i in range(C)]
    head = Head([_tiny("single_attention", 2)], [_member_config("single_attention")], names,
                timeline={"gamma": 0.5})
    clip_probs, frames = head.predict_timeline(clips)
    raw = head.predict_frames_raw(clips)
    for p, f, r in zip(clip_probs, frames, raw, strict=True):
        np.testing.assert_allclose(f.max(axis=0), p, rtol=1e-5)
        np.testing.assert_allclose(f, p * (r / r.max(axis=0)) ** 0.5, rtol=1e-5)
    np.testing.assert_allclose(np.concatenate(head.predict_frames(clips)), np.concatenate(frames))


def test_attention_exponent_weighs_raw_frames_by_attention_and_is_saved(tmp_path):
    rng = np.random.default_rng(4)
    clips = [rng.integers(0, 256, (t, 128)).astype(np.uint8) for t in (10, 3)]
    names = [str(i) for i in range(C)]
    model = _tiny("single_attention", 8)
    plain = Head([model], [_member_config("single_attention")], names)
    weighted = Head([model], [_member_config("single_attention")], names,
                    timeline={"gamma": 0.25, "attention_exponent": 0.5})
    back = load_head(weighted.save(tmp_path / "h.npz"))
    assert back.timeline == weighted.timeline
    x, mask = (a.astype(np.float32) for a in pad_clips(clips))
    want = np.asarray(frame_model(model, 0.5)({"x": x, "mask": mask}))
    for got, w, p, clip in zip(back.predict_frames_raw(clips), want, plain.predict_frames_raw(clips), clips,
                               strict=True):
        np.testing.assert_allclose(got, w[: len(clip)], rtol=1e-5, atol=1e-7)
        assert np.all(got <= p + 1e-6) and np.abs(got - p).max() > 1e-3
    # The calibrated timeline still peaks at the clip probability.
    clip_probs, frames = back.predict_timeline(clips)
    for c, f in zip(clip_probs, frames, strict=True):
        np.testing.assert_allclose(f.max(axis=0), c, rtol=1e-5)


def test_head_file_keeps_frame_members_timeline_and_event_rules(tmp_path):
    names = [str(i) for i in range(C)]
    frame_member = _tiny("max", 4)
    rules = {"onset": [0.3] * C, "offset": [0.2] * C, "min_duration": 0.96, "merge_gap": 1.0}
    head = Head([_tiny("feature_attention", 5)], [_member_config("feature_attention")], names,
                frame_members=[frame_member], frame_member_configs=[_member_config("max")],
                timeline={"gamma": 0.7}, event_rules=rules)
    clips = [np.random.default_rng(1).integers(0, 256, (6, 128)).astype(np.uint8)]
    back = load_head(head.save(tmp_path / "h.npz"))
    assert back.timeline.gamma == 0.7 and back.event_rules == rules and len(back.frame_member_configs) == 1
    # Clip scores use only the members; the frame member gives the raw timeline.
    inputs = {"x": clips[0][None].astype(np.float32), "mask": np.ones((1, 6), np.float32)}
    np.testing.assert_allclose(back.predict_clips(clips), _run(head.members[0], inputs["x"], inputs["mask"]),
                               rtol=1e-5)
    np.testing.assert_allclose(back.predict_frames_raw(clips)[0],
                               np.asarray(frame_model(frame_member)(inputs))[0], rtol=1e-5)


def test_frame_member_equal_to_a_clip_member_is_stored_once(tmp_path):
    names = [str(i) for i in range(C)]
    shared, own = _tiny("single_attention", 6), _tiny("max", 7)
    head = Head([_tiny("feature_attention", 5), shared],
                [_member_config("feature_attention"), _member_config("single_attention")], names,
                frame_members=[shared, own], frame_member_configs=[_member_config("single_attention"),
                                                                   _member_config("max")])
    path = head.save(tmp_path / "h.npz", dtype="int8")
    with np.load(path) as arrays:
        config = json.loads(str(arrays["config"]))
        assert config["frame_shared"] == {"0": 1}
        assert not any(k.startswith("f0/") for k in arrays) and "f1/0" in arrays
    back = load_head(path)
    assert back.frame_member_configs == head.frame_member_configs
    for got, want in zip(back.frame_member_weights[0], back.member_weights[1], strict=True):
        np.testing.assert_array_equal(got, want)
    clips = [np.random.default_rng(2).integers(0, 256, (7, 128)).astype(np.uint8)]
    np.testing.assert_allclose(back.predict_frames_raw(clips)[0], head.predict_frames_raw(clips)[0],
                               atol=2e-2)  # int8 weights
    # A file whose frame_shared points at another kind of member is refused, naming the file.
    with np.load(path) as arrays:
        broken = dict(arrays)
    config["frame_shared"] = {"0": 0}
    broken["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "odd.npz", **broken)
    with pytest.raises(HeadError, match=r"odd\.npz: frame member f0 is stored as member m0"):
        load_head(tmp_path / "odd.npz")
    config["frame_shared"] = {"0": 9}
    broken["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "odd.npz", **broken)
    with pytest.raises(HeadError, match=r"odd\.npz: bad `frame_shared`"):
        load_head(tmp_path / "odd.npz")


def test_combine_heads_averages_all_members(tmp_path):
    from classifier.pretrained import combine_heads

    names = [str(i) for i in range(C)]
    a = Head([_tiny("single_attention", 0)], [_member_config("single_attention")], names, name="a")
    b = Head([_tiny("max", 1)], [_member_config("max")], names, name="b")
    clips = [np.full((5, 128), 90, np.uint8), np.full((10, 128), 200, np.uint8)]
    both = load_head(combine_heads([a, b], "ab", {"note": 1}).save(tmp_path / "ab.npz", dtype="float32"))
    assert both.name == "ab" and len(both.members) == 2 and both.info["sources"][1]["name"] == "b"
    expected = (a.predict_clips(clips) + b.predict_clips(clips)) / 2
    np.testing.assert_allclose(both.predict_clips(clips), expected, rtol=1e-6)
    other = Head([_tiny("max", 2)], [_member_config("max")], [f"x{i}" for i in range(C)], name="c")
    with pytest.raises(HeadError, match="classes differ"):
        combine_heads([a, other], "bad")


def test_log_odds_clips_saturated_probabilities_and_inverts():
    from classifier.head_file import LOGIT_EPS, from_log_odds, log_odds

    p = np.array([0.0, 0.25, 0.5, 0.9, 1.0], np.float32)
    z = log_odds(p)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_allclose(z[1:4], [np.log(1 / 3), 0.0, np.log(9.0)], rtol=1e-6)
    assert z[0] == pytest.approx(np.log(LOGIT_EPS), rel=1e-6)
    assert 15 < z[4] < 17  # 1 - LOGIT_EPS rounds to float32's 1 - 1.2e-7
    np.testing.assert_allclose(from_log_odds(z)[1:4], p[1:4], rtol=1e-6)
    assert from_log_odds(np.array([-1e4, 1e4])).tolist() == [0.0, 1.0]  # no overflow warning or NaN


def test_mean_logit_combination_averages_log_odds_and_survives_saving(tmp_path):
    from classifier.head_file import combine_probabilities
    from classifier.pretrained import combine_heads

    p = np.array([[0.9, 0.5, 1.0]], np.float32)
    q = np.array([[0.5, 0.1, 0.0]], np.float32)
    np.testing.assert_allclose(combine_probabilities([p, q]), [[0.7, 0.3, 0.5]], rtol=1e-6)
    odds = np.sqrt(9.0 * 1.0)  # odds 9:1 and 1:1 -> geometric mean 3:1
    np.testing.assert_allclose(combine_probabilities([p, q], "mean_logit")[0, :2], [odds / (1 + odds), 0.25],
                               rtol=1e-6)
    assert combine_probabilities([p, q], "mean_logit")[0, 2] == pytest.approx(0.5)  # saturated: clipped
    with pytest.raises(ValueError, match="combine rule"):
        combine_probabilities([p], "median")

    names = [str(i) for i in range(C)]
    a = Head([_tiny("single_attention", 0)], [_member_config("single_attention")], names, name="a")
    b = Head([_tiny("max", 1)], [_member_config("max")], names, name="b")
    clips = [np.full((5, 128), 90, np.uint8), np.full((10, 128), 200, np.uint8)]
    both = combine_heads([a, b], "ab", combine="mean_logit")
    path = both.save(tmp_path / "ab.npz", dtype="float32")
    loaded = load_head(path)
    assert loaded.combine == "mean_logit"
    expected = combine_probabilities([a.predict_clips(clips), b.predict_clips(clips)], "mean_logit")
    np.testing.assert_allclose(loaded.predict_clips(clips), expected, rtol=1e-6)
    assert not np.allclose(expected, combine_heads([a, b], "ab").predict_clips(clips))

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    config = json.loads(str(arrays["config"]))
    del config["combine"]  # heads written before the rule existed average probabilities
    np.savez(tmp_path / "old.npz", **(arrays | {"config": np.array(json.dumps(config))}))
    assert load_head(tmp_path / "old.npz").combine == "mean_probability"
    config["combine"] = "median"
    np.savez(tmp_path / "odd.npz", **(arrays | {"config": np.array(json.dumps(config))}))
    with pytest.raises(HeadError, match=r"odd\.npz: unknown combine rule"):
        load_head(tmp_path / "odd.npz")


def test_predict_clips_rejects_bad_shapes():
    head = Head([_tiny("average")], [_member_config("average")], [str(i) for i in range(C)])
    for bad in (np.zeros((0, 128), np.uint8), np.zeros((11, 128), np.uint8), np.zeros((3, 64), np.uint8)):
        with pytest.raises(ValueError, match="expected shape"):
            head.predict_clips([bad])


def test_load_head_errors_name_the_file(tmp_path):
    with pytest.raises(HeadError, match="not found"):
        load_head(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(HeadError, match=r"junk\.npz"):
        load_head(junk)
    model = _tiny("average")
    bad = save_head(tmp_path / "bad.npz", [_member_config("max")],
                    [[np.asarray(w) for w in model.weights][:-1]], [str(i) for i in range(C)], "bad")
    with pytest.raises(HeadError, match="do not match"):
        load_head(bad)


@pytest.mark.shared
def test_shipped_head_scores_real_eval_clips_far_above_chance(audioset_dir):
    from classifier import load_pretrained
    from classifier.metrics import compute_metrics
    from classifier.pretrained import heads_dir
    from classifier.readers import load_clipset

    head = load_pretrained()
    assert head.num_classes == 527 and head.class_names[0] == "Speech"
    assert sum(p.stat().st_size for p in heads_dir().glob("*.npz")) <= 25e6  # the budget for shipped heads
    clips = load_clipset(sorted((audioset_dir / "eval").glob("*.tfrecord"))[:100])
    assert len(clips) >= 400
    probs = head.predict_clips(clips.clips())
    assert probs.shape == (len(clips), 527) and probs.dtype == np.float32
    m = compute_metrics(clips.y, probs)
    chance = float(np.nanmean(np.where(clips.y.any(0), clips.y.mean(0), np.nan)))
    assert m.mAP > 0.2 > 20 * chance and m.mAUC > 0.9
    short = [c[:3] for c in clips.clips()[:8]]  # T < 10 goes through the mask
    assert head.predict_clips(short).shape == (8, 527)
    frames = head.predict_frames(short)
    assert [f.shape for f in frames] == [(3, 527)] * 8
