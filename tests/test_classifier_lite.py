"""classifier.lite: the TF-Lite prediction engines of Head against the numpy reference, and their cache.

Small random heads (7 classes, 16 hidden units) keep the conversions to a few seconds; the flatbuffers are
cached in a per-module AUDIOTAG_HOME, so each head/engine pair is converted once unless a test asks again.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from classifier import lite

pytestmark = pytest.mark.slow

NAMES = [f"c{i}" for i in range(7)]
SINGLE = {"kind": "single_attention", "num_classes": 7, "hidden_units": 16, "num_layers": 1}
FEATURE = {"kind": "feature_attention", "num_classes": 7, "hidden_units": 16, "num_layers": 1}
MULTI = {"kind": "multi_attention", "num_classes": 7, "hidden_units": 16, "num_layers": 2}
FLOAT_TOLERANCE = 1e-5
INT8_TOLERANCE = 0.02  # dynamic-range int8 moves the shipped head's clip probabilities by at most 0.005


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """AUDIOTAG_HOME for the module: the compiled heads land in home/heads."""
    folder = tmp_path_factory.mktemp("audiotag_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDIOTAG_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def heads(home):
    """A decision-level head (two members, log-odds averaged), one with a frame member and one without
    frame scores."""
    import keras

    from classifier.models import build_model
    from classifier.pretrained import Head

    keras.utils.set_random_seed(3)
    return {
        "members": Head([build_model(**SINGLE), build_model(**FEATURE)], [SINGLE, FEATURE], NAMES,
                        combine="mean_logit", timeline={"attention_exponent": 0.5}),
        "frame member": Head([build_model(**FEATURE)], [FEATURE], NAMES, combine="mean_logit",
                             frame_members=[build_model(**MULTI)], frame_member_configs=[MULTI]),
        "feature only": Head([build_model(**FEATURE)], [FEATURE], NAMES),  # frames as one-patch clips
    }


def _clips(count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` uint8 clips [T, 128] with T cycling through 1..10."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (1 + i % 10, 128)).astype(np.uint8) for i in range(count)]


@pytest.mark.parametrize("kind", ["members", "frame member", "feature only"])
def test_lite_matches_numpy_on_clips_and_frames(heads, kind):
    """Two interpreter batches (LITE_BATCH + 44 clips) of every length 1..10."""
    head = heads[kind]
    clips = _clips(lite.LITE_BATCH + 44)
    fast = head.with_engine("lite", threads=1)
    np.testing.assert_allclose(fast.predict_clips(clips), head.predict_clips(clips), atol=FLOAT_TOLERANCE)
    want, got = head.predict_frames_raw(clips), fast.predict_frames_raw(clips)
    assert [g.shape for g in got] == [w.shape for w in want]
    assert max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True)) <= FLOAT_TOLERANCE


def test_int8_is_close_and_independent_of_the_batch(heads):
    head = heads["members"]
    clips = _clips(300, seed=1)
    fast = head.with_engine("lite-int8")
    probs = fast.predict_clips(clips)
    assert probs.shape == (300, 7) and probs.dtype == np.float32
    difference = float(np.abs(probs - head.predict_clips(clips)).max())
    assert 0.0 < difference <= INT8_TOLERANCE  # quantized, so not bit-identical, but close
    alone = np.concatenate([fast.predict_clips(clips[i : i + 1]) for i in (0, 5, 299)])
    np.testing.assert_allclose(alone, probs[[0, 5, 299]], atol=1e-6)
    assert fast.predict_clips([]).shape == (0, 7)


def test_compiled_head_is_cached_and_reused(heads, home, monkeypatch):
    head = heads["members"]
    clips = _clips(12, seed=2)
    first = head.with_engine("lite").predict_clips(clips)
    cached = home / "heads" / f"{lite.head_digest(head, 'lite')}.tflite"
    assert cached.is_file()

    def refuse(*_):
        raise AssertionError("a cached head was converted again")

    monkeypatch.setattr(lite, "convert", refuse)
    np.testing.assert_array_equal(head.with_engine("lite").predict_clips(clips), first)
    assert lite.head_digest(head, "lite") != lite.head_digest(head, "lite-int8")
    assert lite.head_digest(head.subset([0], "first"), "lite") != lite.head_digest(head, "lite")


def test_corrupt_cache_file_is_rebuilt(heads, home, caplog):
    head = heads["members"]
    clips = _clips(5, seed=3)
    want = head.with_engine("lite").predict_clips(clips)
    cached = home / "heads" / f"{lite.head_digest(head, 'lite')}.tflite"
    cached.write_bytes(b"not a flatbuffer")
    np.testing.assert_allclose(head.with_engine("lite").predict_clips(clips), want, atol=1e-7)
    assert "unusable" in caplog.text and cached.stat().st_size > 1000


def test_unwritable_cache_still_predicts(heads, tmp_path, monkeypatch, caplog):
    """The cache folder cannot be made (a file stands in its place): the head compiles and predicts, warns."""
    (tmp_path / "heads").write_text("in the way")
    monkeypatch.setenv("AUDIOTAG_HOME", str(tmp_path))
    head = heads["frame member"]
    clips = _clips(4, seed=4)
    np.testing.assert_allclose(head.with_engine("lite").predict_clips(clips), head.predict_clips(clips),
                               atol=FLOAT_TOLERANCE)
    assert "cannot cache the compiled head" in caplog.text
    assert (tmp_path / "heads").read_text() == "in the way"


def test_engine_heads_pickle_and_keep_their_engine(heads):
    fast = heads["frame member"].with_engine("lite", threads=1)
    clips = _clips(3, seed=5)
    want = fast.predict_clips(clips)  # builds the interpreter, which must not travel
    copied = pickle.loads(pickle.dumps(fast))
    assert copied.engine == "lite" and copied.engine_threads == 1 and copied._lite is None
    np.testing.assert_array_equal(copied.predict_clips(clips), want)
    assert fast.subset([0], "one").engine == "lite"
    assert heads["frame member"].engine == "numpy"  # with_engine copies


def test_unknown_engine_is_refused(heads):
    with pytest.raises(ValueError, match="lite-int8"):
        heads["members"].with_engine("gpu")
    with pytest.raises(ValueError, match="numpy"):
        lite.LiteHead(heads["members"], "numpy")


def test_wrong_shapes_are_refused(heads):
    runner = lite.LiteHead(heads["members"], "lite")
    with pytest.raises(ValueError, match="expected x"):
        runner.clip_probs(np.zeros((2, 11, 128), np.float32), np.ones((2, 11), np.float32))
    with pytest.raises(ValueError, match="no frame members"):
        lite.LiteHead(heads["feature only"], "lite").frame_probs(
            np.zeros((1, 2, 128), np.float32), np.ones((1, 2), np.float32))
