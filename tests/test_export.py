"""`audiotag export`: the SavedModel and TF-Lite graphs against the Python Tagger, plain-TF loading, honesty.

The expensive export (SYNTHETIC checkpoint, the shipped head, SavedModel + float32 TF-Lite) is made once per
test session through the CLI; the parity tests print the measured maxima (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.tagger import window_starts as tagger_window_starts

# TF 2.21 warns that tf.lite.Interpreter will move to the ai_edge_litert package; it is still TF's own.
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")

TOLERANCE_RAW = 1e-4  # raw embeddings, SavedModel against the Tagger
TOLERANCE_SCORES = 2e-3
TOLERANCE_TFLITE = 1e-3
MAX_LEVEL_CHANGES = 0.001  # postprocessed embeddings: at most 0.1 % of values off, by one level


def _clips(shared_audio: Path) -> list[tuple[str, np.ndarray]]:
    """(name, 16 kHz float32 mono waveform) per real clip; other rates through the project's resampler."""
    from vggish import audio_io, resample

    out = []
    for path in sorted(shared_audio.iterdir()):
        samples, rate = audio_io.read_mono(path)
        out.append((path.name, resample.resample(samples, rate).astype(np.float32)))
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, synthetic_checkpoint: Path) -> Path:
    """OUT_DIR of `audiotag export --format all --allow-synthetic` (SavedModel + TF-Lite), made once."""
    out = tmp_path_factory.mktemp("export") / "out"
    status = main(["export", str(out), "--format", "all", "--allow-synthetic",
                   "--vggish-checkpoint", str(synthetic_checkpoint)])
    assert status == 0
    return out


@pytest.fixture(scope="session")
def served(exported: Path):
    import tensorflow as tf

    return tf.saved_model.load(str(exported / "savedmodel"))


def test_window_starts_match_the_tagger():
    from pipeline.export import window_starts

    for num_patches in (1, 5, 10, 11, 12, 19, 25, 100):
        for hop in (1, 2, 3, 7, 10, 15):
            got = window_starts(np.int32(num_patches), hop).numpy()
            np.testing.assert_array_equal(got, tagger_window_starts(num_patches, hop))


def test_synthetic_checkpoint_is_refused(tmp_path, synthetic_checkpoint, capsys):
    from pipeline.export import ExportError, build_module

    with pytest.raises(ExportError, match="SYNTHETIC"):
        build_module(synthetic_checkpoint)
    status = main(["export", str(tmp_path / "out"), "--vggish-checkpoint", str(synthetic_checkpoint)])
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert len(err.splitlines()) == 1 and "--allow-synthetic" in err
    assert not (tmp_path / "out").exists()


def test_used_destination_is_refused(tmp_path, synthetic_checkpoint, capsys):
    (tmp_path / "out" / "savedmodel").mkdir(parents=True)
    (tmp_path / "out" / "savedmodel" / "keep.txt").write_text("mine")
    status = main(["export", str(tmp_path / "out"), "--allow-synthetic",
                   "--vggish-checkpoint", str(synthetic_checkpoint)])
    assert status == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "out" / "savedmodel" / "keep.txt").read_text() == "mine"


@pytest.mark.shared
def test_tf_log_mel_matches_numpy_front_end(shared_audio):
    """The in-graph log-mel against vggish's numpy one, from the same float32 waveform the graph gets."""
    import tensorflow as tf

    from vggish import audio_io, framing, mel_features, resample, tf_frontend

    worst = {"float64": 0.0, "float32": 0.0, "float64 vs the file's float64 samples": 0.0}
    for path in sorted(shared_audio.iterdir()):
        samples, rate = audio_io.read_mono(path)
        exact = framing.pad_short(resample.resample(samples, rate))
        sent = exact.astype(np.float32)  # what a client sends; the padding zeros are exact either way
        from_sent = mel_features.log_mel_spectrogram(sent.astype(np.float64))
        from_file = mel_features.log_mel_spectrogram(exact)
        for dtype in (tf.float64, tf.float32):
            got = tf_frontend.log_mel_spectrogram(tf_frontend.pad_short(tf.constant(sent)), dtype).numpy()
            assert got.shape == from_sent.shape, path.name
            worst[dtype.name] = max(worst[dtype.name], float(np.abs(got - from_sent).max()))
            if dtype == tf.float64:
                key = "float64 vs the file's float64 samples"
                worst[key] = max(worst[key], float(np.abs(got - from_file).max()))
    print(f"\nmax |Δ log-mel| over the real clips: {worst}")
    assert max(worst.values()) <= 1e-4


def test_tf_calibration_and_merge_match_numpy_timeline():
    """classifier.tf_timeline against classifier.timeline on crafted inputs: a class whose raw frames are
    all exactly 0 (the 1e-12 floor), exact zeros among nonzero frames, gamma 0 (0 ** 0 = 1) and 0.25,
    overlapping windows and patches no window covers."""
    import tensorflow as tf

    from classifier import tf_timeline, timeline

    rng = np.random.default_rng(5)
    clip = rng.uniform(0, 1, (3, 4)).astype(np.float32)
    frames = rng.uniform(0, 1, (3, 6, 4)).astype(np.float32)
    frames[:, :, 1] = 0.0
    frames[0, 2:, 2] = 0.0
    for gamma in (0.0, 0.25, 2.0):
        want = timeline.calibrate_frames(clip, frames, timeline.TimelineParams(gamma))
        got = tf_timeline.calibrate_frames(tf.constant(clip), tf.constant(frames), gamma).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.all(want[:, :, 1] == 0.0)
    calibrated = want  # gamma 2: windows of 6 patches starting at 0, 3 and 4 over 14 patches
    firsts = np.array([0, 3, 4])
    want = timeline.merge_windows(list(calibrated), firsts, 14)
    got = tf_timeline.merge_windows(tf.constant(calibrated), tf.constant(firsts, tf.int32), tf.constant(14))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)
    assert np.all(got.numpy()[10:] == 0.0) and np.all(got.numpy()[:10, 0] > 0.0)


def _heads() -> dict:
    """Small heads covering TimelineScores' three sources of raw frames, each with its own gamma, and raw
    frames weighted by attention (single and multi attention)."""
    import keras

    from classifier.models import build_model
    from classifier.pretrained import Head

    keras.utils.set_random_seed(1)
    names = [f"c{i}" for i in range(7)]
    feature = {"kind": "feature_attention", "num_classes": 7, "hidden_units": 16, "num_layers": 1}
    single = {"kind": "single_attention", "num_classes": 7, "hidden_units": 16, "num_layers": 1}
    multi = {"kind": "multi_attention", "num_classes": 7, "hidden_units": 16, "num_layers": 2}
    return {
        "one-patch clips": Head([build_model(**feature)], [feature], names, combine="mean_logit",
                                timeline={"gamma": 0.5}),
        "decision-level members": Head([build_model(**single), build_model(**feature)], [single, feature],
                                       names, combine="mean_probability", timeline={"gamma": 0.0}),
        "frame members": Head([build_model(**feature)], [feature], names, combine="mean_logit",
                              frame_members=[build_model(**multi)], frame_member_configs=[multi],
                              timeline={"attention_exponent": 1.0}),
        "attention-weighted members": Head([build_model(**single), build_model(**feature)], [single, feature],
                                           names, combine="mean_logit",
                                           timeline={"gamma": 0.25, "attention_exponent": 0.5}),
    }


_TRANSFORMER = {"kind": "transformer", "num_classes": 7, "hidden_units": 16, "num_layers": 1, "num_heads": 4,
                "transformer_layers": 2}
_FEATURE = {"kind": "feature_attention", "num_classes": 7, "hidden_units": 16, "num_layers": 1}
_CONTEXT_SINGLE = {"kind": "single_attention", "num_classes": 7, "hidden_units": 16, "num_layers": 2,
                   "context": True}
_ACROSS_FRAMES = {"transformer": (_TRANSFORMER, _FEATURE),
                  "context": (_CONTEXT_SINGLE, _FEATURE | {"context": True})}


@pytest.mark.slow
@pytest.mark.parametrize("configs", list(_ACROSS_FRAMES.values()), ids=list(_ACROSS_FRAMES))
def test_head_module_with_context_members_matches_the_numpy_head(configs):
    """Members that look across frames (a transformer, or neighbour context), with a feature-attention one,
    log-odds averaged, in the TF graph of the export, traced once for any clip length, against
    Head.predict_arrays: clips of 1, 4 and 10 patches, padded; and converted to TF-Lite with built-in ops
    only, as `export --format tflite` converts it."""
    import keras
    import tensorflow as tf

    from classifier.models import build_model
    from classifier.pretrained import Head
    from classifier.tf_head import HeadModule

    keras.utils.set_random_seed(2)
    head = Head([build_model(**c) for c in configs], list(configs), [f"c{i}" for i in range(7)],
                combine="mean_logit")
    module = HeadModule(head.member_configs, head.member_weights, head.combine)
    assert module.has_frames == (configs[0]["kind"] != "transformer")
    signature = [tf.TensorSpec([None, None, 128], tf.float32), tf.TensorSpec([None, None], tf.float32)]
    clip_probabilities = tf.function(module.clip_probabilities, input_signature=signature)
    rng = np.random.default_rng(7)
    for frames, lengths in ((1, [1, 1]), (4, [4, 2, 1]), (10, [10, 3, 7, 1])):
        x = rng.integers(0, 256, (len(lengths), frames, 128)).astype(np.float32)
        mask = (np.arange(frames)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
        want = head.predict_arrays(x, mask)
        assert want.std() > 1e-3
        np.testing.assert_allclose(clip_probabilities(x, mask).numpy(), want, rtol=0, atol=1e-5)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [clip_probabilities.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    run = tf.lite.Interpreter(model_content=converter.convert()).get_signature_runner()
    (tflite,) = run(x=x, mask=mask).values()
    np.testing.assert_allclose(tflite, want, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_scores_and_timeline_match_tagger_score(synthetic_checkpoint):
    """TaggerModule.scores (clip scores and the calibrated timeline) against Tagger.score on the same
    embeddings, for every source of raw frames, short and long inputs and hops below, at and above 10;
    raw frames against Head.predict_frames_raw."""
    import tensorflow as tf

    from pipeline.export import build_module
    from pipeline.tagger import Embeddings, Tagger

    rng = np.random.default_rng(0)
    worst = {"scores": 0.0, "frame_scores": 0.0, "raw_frames": 0.0}
    for label, head in _heads().items():
        module = build_module(synthetic_checkpoint, head, allow_synthetic=True)
        assert module.timeline.gamma == head.timeline.gamma
        with Tagger(synthetic_checkpoint, head) as tagger:
            for num_patches in (1, 7, 10, 13, 26):
                x = rng.integers(0, 256, (num_patches, 128)).astype(np.uint8)
                emb = Embeddings(raw=np.zeros((num_patches, 128), np.float32), embedding=x,
                                 starts=np.arange(num_patches) * 0.96, duration=num_patches * 0.96)
                for hop in (1, 3, 10, 12):
                    tagger.window_hop = hop
                    want = tagger.score(emb)
                    scores, frames = module.scores(tf.constant(x, tf.float32), hop)
                    assert frames.shape == want.frame_scores.shape, (label, num_patches, hop)
                    worst["scores"] = max(worst["scores"], float(np.abs(scores.numpy() - want.scores).max()))
                    frame_error = float(np.abs(frames.numpy() - want.frame_scores).max())
                    worst["frame_scores"] = max(worst["frame_scores"], frame_error)
                window = x[:10]
                raw = module.timeline.raw_frames(tf.constant(window[np.newaxis], tf.float32)).numpy()[0]
                raw_error = float(np.abs(raw - head.predict_frames_raw([window])[0]).max())
                worst["raw_frames"] = max(worst["raw_frames"], raw_error)
    print(f"\nTaggerModule.scores vs Tagger.score, max over heads, lengths and hops: {worst}")
    assert max(worst.values()) <= 1e-5


@pytest.mark.slow
@pytest.mark.shared
def test_savedmodel_matches_the_tagger(exported, served, synthetic_checkpoint, shared_audio):
    """Raw/postprocessed embeddings, clip and frame scores, timestamps: SavedModel vs pipeline.Tagger."""
    import tensorflow as tf

    from pipeline.tagger import Tagger

    serve = served.signatures["serving_default"]
    worst = {"raw": 0.0, "levels_changed": 0.0, "scores": 0.0, "frame_scores": 0.0, "timestamps": 0.0}
    with Tagger(synthetic_checkpoint, vggish_engine="tf") as tagger:  # the graph's own engine
        for name, samples in _clips(shared_audio):
            expected = tagger.tag(shared_audio / name)
            got = {k: v.numpy() for k, v in serve(waveform=tf.constant(samples)).items()}
            emb = expected.embeddings
            assert got["embedding"].dtype == np.uint8 and got["embedding"].shape == emb.embedding.shape, name
            levels = np.abs(got["embedding"].astype(int) - emb.embedding.astype(int))
            assert levels.max() <= 1, name
            worst["levels_changed"] = max(worst["levels_changed"], float((levels > 0).mean()))
            # frame_scores: the calibrated timeline (gamma of the shipped head), as Tagger reports it.
            for key, want in (("raw_embedding", emb.raw), ("scores", expected.scores),
                              ("frame_scores", expected.frame_scores), ("timestamps", expected.frame_starts)):
                assert got[key].shape == want.shape, (name, key)
                short = {"raw_embedding": "raw"}.get(key, key)
                worst[short] = max(worst[short], float(np.abs(got[key] - want).max()))
    print(f"\nSavedModel vs Tagger, max over the real clips: {worst}")
    assert worst["raw"] <= TOLERANCE_RAW
    assert worst["levels_changed"] <= MAX_LEVEL_CHANGES
    assert worst["scores"] <= TOLERANCE_SCORES and worst["frame_scores"] <= TOLERANCE_SCORES
    assert worst["timestamps"] <= 1e-6


@pytest.mark.slow
def test_labels_metadata_and_embed_signature(exported, served):
    import tensorflow as tf

    from classifier.labels import load_class_labels

    labels = served.signatures["labels"]()
    audioset = load_class_labels()
    assert [m.decode() for m in labels["mid"].numpy()] == list(audioset.mids)
    assert [n.decode() for n in labels["name"].numpy()] == list(audioset.names)
    metadata = {k: v.numpy() for k, v in served.signatures["metadata"]().items()}
    assert metadata["synthetic"] and metadata["vggish_checkpoint"] == b"synthetic"
    info = json.loads((exported / "savedmodel" / "assets" / "export_info.json").read_text())
    assert info["synthetic"] is True
    csv_lines = (exported / "savedmodel" / "assets" / "labels.csv").read_text().splitlines()
    assert csv_lines[0] == "index,mid,display_name" and len(csv_lines) == 1 + len(audioset.mids)
    wave = np.sin(np.arange(40_000) * 0.05).astype(np.float32) * 0.5
    embed = served.signatures["embed"](waveform=tf.constant(wave))
    full = served.signatures["serving_default"](waveform=tf.constant(wave))
    assert sorted(embed) == ["embedding", "raw_embedding", "timestamps"]
    np.testing.assert_array_equal(embed["embedding"].numpy(), full["embedding"].numpy())
    short = served.signatures["serving_default"](waveform=tf.zeros([100]))  # padded to one patch
    assert short["frame_scores"].shape == (1, len(audioset.mids))


LOADER = """
import json, sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
wave = np.load(sys.argv[2])
out = model.signatures["serving_default"](waveform=tf.constant(wave))
meta = model.signatures["metadata"]()
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("vggish", "classifier", "pipeline", "safeio"))
print(json.dumps({"modules": ours, "scores": out["scores"].numpy().tolist(),
                  "synthetic": bool(meta["synthetic"].numpy())}))
"""


@pytest.mark.slow
def test_loads_in_plain_tensorflow_without_audiotag(exported, served, tmp_path):
    """`python -I` from an empty folder: no audiotag module is imported, and the scores are the same."""
    import tensorflow as tf

    wave = (np.random.default_rng(3).standard_normal(30_000) * 0.1).astype(np.float32)
    np.save(tmp_path / "wave.npy", wave)
    (tmp_path / "load.py").write_text(textwrap.dedent(LOADER))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-I", "load.py", str(exported / "savedmodel"), "wave.npy"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    assert result["synthetic"] is True
    expected = served.signatures["serving_default"](waveform=tf.constant(wave))["scores"].numpy()
    np.testing.assert_allclose(result["scores"], expected, atol=1e-6)


@pytest.mark.slow
def test_saved_model_cli_runs_it(exported, served, tmp_path):
    import tensorflow as tf

    cli = Path(sys.executable).with_name("saved_model_cli")
    module = "tensorflow.python.tools.saved_model_cli"
    command = [str(cli)] if cli.is_file() else [sys.executable, "-m", module]
    wave = (np.random.default_rng(4).standard_normal(20_000) * 0.1).astype(np.float32)
    np.save(tmp_path / "wave.npy", wave)
    subprocess.run([*command, "run", "--dir", str(exported / "savedmodel"), "--tag_set", "serve",
                    "--signature_def", "serving_default", "--inputs", f"waveform={tmp_path / 'wave.npy'}",
                    "--outdir", str(tmp_path / "out")],
                   capture_output=True, text=True, timeout=600, check=True,
                   env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"})
    expected = served.signatures["serving_default"](waveform=tf.constant(wave))
    for key in ("scores", "frame_scores", "embedding"):
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{key}.npy"), expected[key].numpy(), atol=1e-6)


@pytest.mark.slow
@pytest.mark.shared
def test_tflite_matches_the_savedmodel(exported, served, shared_audio):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(str(exported / "tflite" / "audiotag.tflite"))
    run = interpreter.get_signature_runner()
    serve = served.signatures["serving_default"]
    worst = {"scores": 0.0, "frame_scores": 0.0, "raw_embedding": 0.0, "levels_changed": 0}
    for name, samples in _clips(shared_audio):
        got = run(waveform=samples)
        expected = {k: v.numpy() for k, v in serve(waveform=tf.constant(samples)).items()}
        levels = np.abs(got["embedding"].astype(int) - expected["embedding"].astype(int))
        assert levels.max() <= 1, name
        worst["levels_changed"] += int((levels > 0).sum())
        for key in ("scores", "frame_scores", "raw_embedding"):
            assert got[key].shape == expected[key].shape, (name, key)
            worst[key] = max(worst[key], float(np.abs(got[key] - expected[key]).max()))
    print(f"\nTF-Lite (float32) vs SavedModel, max over the real clips: {worst}")
    assert worst["scores"] <= TOLERANCE_TFLITE and worst["frame_scores"] <= TOLERANCE_TFLITE
    assert (exported / "tflite" / "labels.csv").read_text() == (exported / "savedmodel" / "assets" /
                                                                "labels.csv").read_text()
    assert json.loads((exported / "tflite" / "export_info.json").read_text())["synthetic"] is True
