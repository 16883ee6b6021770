"""VGGish on LiteRT against VGGish on TensorFlow (SYNTHETIC checkpoint: plumbing and numerics, not accuracy):
the same tags, timelines, events and embeddings on real and generated clips; the engine choice of `tag`,
`extract`, `Tagger` and the HEAR API; no TensorFlow on the lite tagging path."""

from __future__ import annotations

import json
import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from import_probe import modules_imported_by

import vggish
from pipeline.cli import EXIT_ERROR, EXIT_OK, main
from pipeline.tagger import Tagger, TagResult
from vggish import lite_cache, params

pytestmark = pytest.mark.slow

# The agreement the engines must keep (docs: "The VGGish front end", engines).
CLIP_TOLERANCE = 1e-3  # clip scores
FRAME_TOLERANCE = 2e-3  # calibrated frame scores
MAX_LEVEL_CHANGES = 0.0005  # postprocessed embeddings: at most 0.05 % of values one level apart
EVENT_ONSET, EVENT_OFFSET = 0.02, 0.01  # event thresholds of the comparison (see `taggers`)

# Generated clips: (name, sample rate, channels, seconds, signal); the tones sweep over the mel bands.
GENERATED = (
    ("tone_44k_stereo.wav", 44100, 2, 10.0, "tones"),
    ("noise_16k.wav", 16000, 1, 5.0, "noise"),
    ("chirp_48k.wav", 48000, 1, 12.5, "chirp"),
    ("short_22k.wav", 22050, 1, 0.6, "tones"),
    ("silence_8k.wav", 8000, 1, 3.0, "silence"),
)


def _signal(kind: str, rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    if kind == "tones":
        x = sum(0.2 * np.sin(2 * np.pi * f * t + 3 * np.sin(2 * np.pi * 0.5 * t)) for f in (220, 1300, 3100))
        x = x + 0.02 * rng.standard_normal(len(t))
    elif kind == "noise":
        x = 0.3 * np.cumsum(rng.standard_normal(len(t))) / np.sqrt(len(t))
    elif kind == "chirp":
        x = 0.5 * np.sin(2 * np.pi * (100 + 300 * t) * t)
    else:
        x = np.zeros(len(t))
    return np.repeat(np.clip(x, -1, 1)[:, None], channels, axis=1)


@pytest.fixture(scope="module")
def generated_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("generated")
    paths = []
    for seed, (name, rate, channels, seconds, kind) in enumerate(GENERATED):
        sf.write(folder / name, _signal(kind, rate, seconds, channels, seed), rate, subtype="PCM_16")
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def taggers(synthetic_lite_checkpoint: Path) -> Iterator[dict[str, Tagger]]:
    """The shipped head over VGGish on each engine. Its event thresholds are lowered to EVENT_ONSET /
    EVENT_OFFSET so that the synthetic weights' small scores open events to compare."""
    from classifier.events import EventRules

    with Tagger(synthetic_lite_checkpoint, vggish_engine="tf") as tf_tagger, \
            Tagger(synthetic_lite_checkpoint, vggish_engine="lite") as lite_tagger:
        for tagger in (tf_tagger, lite_tagger):
            rules = tagger.event_rules
            tagger.event_rules = EventRules(np.full(rules.num_classes, EVENT_ONSET),
                                            np.full(rules.num_classes, EVENT_OFFSET),
                                            rules.min_duration, rules.merge_gap)
        yield {"tf": tf_tagger, "lite": lite_tagger}


def _compare(results: list[tuple[TagResult, TagResult]]) -> dict[str, float]:
    """The worst differences, TF against LiteRT, over the clips; asserts the events are the same."""
    worst = {"clip": 0.0, "frame": 0.0, "raw": 0.0, "levels": 0.0, "events": 0}
    changed = total = 0
    for tf_result, lite_result in results:
        worst["clip"] = max(worst["clip"], float(np.abs(tf_result.scores - lite_result.scores).max()))
        worst["frame"] = max(worst["frame"], float(np.abs(tf_result.frame_scores
                                                          - lite_result.frame_scores).max()))
        worst["raw"] = max(worst["raw"], float(np.abs(tf_result.embeddings.raw
                                                      - lite_result.embeddings.raw).max()))
        levels = np.abs(tf_result.embeddings.embedding.astype(int)
                        - lite_result.embeddings.embedding.astype(int))
        worst["levels"] = max(worst["levels"], float(levels.max()))
        changed += int((levels > 0).sum())
        total += levels.size
        assert [(e.index, e.start, e.end) for e in tf_result.events] == \
            [(e.index, e.start, e.end) for e in lite_result.events], tf_result.source
        for ours, theirs in zip(tf_result.events, lite_result.events, strict=True):
            assert abs(ours.score - theirs.score) <= FRAME_TOLERANCE
        worst["events"] += len(tf_result.events)
    worst["changed_fraction"] = changed / total
    return worst


def _assert_agree(worst: dict[str, float]) -> None:
    assert worst["clip"] <= CLIP_TOLERANCE and worst["frame"] <= FRAME_TOLERANCE
    assert worst["levels"] <= 1 and worst["changed_fraction"] <= MAX_LEVEL_CHANGES


@pytest.mark.shared
def test_lite_tags_real_clips_as_tensorflow(taggers: dict[str, Tagger], shared_audio: Path) -> None:
    clips = sorted(p for p in shared_audio.iterdir() if p.suffix in (".wav", ".mp3", ".flac"))
    assert len(clips) >= 9
    worst = _compare([(taggers["tf"].tag(p), taggers["lite"].tag(p)) for p in clips])
    print(f"\nTF vs LiteRT on {len(clips)} real clips: {worst}")
    _assert_agree(worst)


def test_lite_tags_generated_clips_as_tensorflow(taggers: dict[str, Tagger],
                                                 generated_clips: list[Path]) -> None:
    worst = _compare([(taggers["tf"].tag(p), taggers["lite"].tag(p)) for p in generated_clips])
    print(f"\nTF vs LiteRT on {len(generated_clips)} generated clips: {worst}")
    _assert_agree(worst)


def test_batches_do_not_change_the_lite_embeddings(taggers: dict[str, Tagger]) -> None:
    model = taggers["lite"].vggish
    assert isinstance(model, vggish.LiteVGGish) and model.engine == "lite" and model.synthetic
    examples = np.random.default_rng(0).normal(-2, 2, (11, 96, 64)).astype(np.float32)
    whole = model.embed(examples, batch_size=64)
    for batch_size in (1, 4):
        np.testing.assert_allclose(model.embed(examples, batch_size=batch_size), whole, rtol=0, atol=1e-5)
    assert model.embed(examples[:0]).shape == (0, 128)
    with pytest.raises(ValueError, match="expected examples of shape"):
        model.embed(examples[:, :, :10])


def test_the_synthetic_conversion_warns_when_loaded(synthetic_lite_checkpoint: Path, caplog) -> None:
    record = json.loads(Path(f"{synthetic_lite_checkpoint}{params.LITE_RECORD_SUFFIX}").read_text())
    assert record["synthetic"] is True
    with caplog.at_level("WARNING"), vggish.load_embedder(synthetic_lite_checkpoint, "lite") as model:
        assert model.conversion_path == Path(f"{synthetic_lite_checkpoint}{params.LITE_SUFFIX}")
    assert "SYNTHETIC" in caplog.text


def test_a_conversion_litert_cannot_load_is_rebuilt(synthetic_lite_checkpoint: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A flatbuffer with the right size and identifier but garbage inside: LiteRT refuses it, so it is built
    again (by a stand-in converter that hands over the session's real conversion)."""
    real = Path(f"{synthetic_lite_checkpoint}{params.LITE_SUFFIX}").read_bytes()
    monkeypatch.setitem(sys.modules, "vggish.lite_convert",
                        types.SimpleNamespace(convert_checkpoint=lambda path: real))
    checkpoint = tmp_path / "stand_in.ckpt"
    checkpoint.write_bytes(b"not really a checkpoint")
    place = lite_cache.locations(checkpoint)[0]
    lite_cache.ensure(checkpoint, progress=False)
    place.model.write_bytes(real[:8] + b"\xff" * (len(real) - 8))
    assert lite_cache.inspect(checkpoint).usable  # size and identifier are right
    with vggish.load_embedder(checkpoint, "lite") as model:
        assert model.embed(np.zeros((2, 96, 64), np.float32)).shape == (2, 128)
    err = capsys.readouterr().err
    assert "converting the VGGish checkpoint to LiteRT again" in err and "LiteRT cannot load it" in err
    assert place.model.read_bytes() == real


def test_engine_option_of_tag_listen_extract_and_the_hear_api(synthetic_lite_checkpoint: Path) -> None:
    from pipeline import hear
    from pipeline.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["tag", "a.wav"]).vggish_engine == "auto"
    assert parser.parse_args(["tag", "a.wav", "--vggish-engine", "tf"]).vggish_engine == "tf"
    assert parser.parse_args(["listen", "--vggish-engine", "lite"]).vggish_engine == "lite"
    assert parser.parse_args(["extract", "a.wav", "-o", "out"]).vggish_engine == "tf"
    for engine, kind in (("auto", vggish.LiteVGGish), ("tf", vggish.VGGish)):
        model = hear.load_model(str(synthetic_lite_checkpoint), vggish_engine=engine)
        assert type(model.vggish) is kind
        model.vggish.close()
    with pytest.raises(ValueError, match="vggish_engine must be one of"):
        Tagger(synthetic_lite_checkpoint, vggish_engine="onnx")


def test_info_shows_the_engine_and_the_conversion(synthetic_lite_checkpoint: Path, capsys) -> None:
    assert main(["--vggish-checkpoint", str(synthetic_lite_checkpoint), "info"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "VGGish engine (auto):  lite\n" in out
    assert f"LiteRT conversion:     {synthetic_lite_checkpoint}{params.LITE_SUFFIX} (ready, SYNTHETIC)" in out


@pytest.mark.shared
def test_extract_on_lite_within_one_level_of_tensorflow(synthetic_lite_checkpoint: Path, shared_audio: Path,
                                                        tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("bus_chatter.wav", "speech_16k.wav", "esc10_crying_baby_1.mp3"):
        shutil.copy(shared_audio / name, inputs / name)
    outputs = {}
    for engine in ("tf", "lite"):
        out = tmp_path / engine
        args = ["--vggish-checkpoint", str(synthetic_lite_checkpoint), "extract", str(inputs), "-o", str(out),
                "--format", "npz", "--raw", "--no-progress", "--vggish-engine", engine]
        assert main(args) == EXIT_OK
        outputs[engine] = {p.name: dict(np.load(p)) for p in sorted(out.rglob("*.npz"))}
    resumed = [*args[:5], str(tmp_path / "tf"), *args[6:]]  # the tf folder, resumed on lite: refused
    assert main(resumed) == EXIT_ERROR
    assert "different vggish_engine ('tf' then, 'lite' now)" in capsys.readouterr().err
    assert outputs["tf"].keys() == outputs["lite"].keys() and len(outputs["tf"]) == 3
    changed = total = 0
    for name, tf_arrays in outputs["tf"].items():
        lite_arrays = outputs["lite"][name]
        levels = np.abs(tf_arrays["embedding"].astype(int) - lite_arrays["embedding"].astype(int))
        assert levels.max() <= 1, name
        changed, total = changed + int((levels > 0).sum()), total + levels.size
        np.testing.assert_allclose(lite_arrays["raw"], tf_arrays["raw"], rtol=0, atol=1e-4)
    assert changed / total <= MAX_LEVEL_CHANGES


WATCHED = ("tensorflow", "keras", "tf_slim", "sklearn", "scipy", "matplotlib", "resampy", "numba")


def test_a_lite_tag_imports_no_tensorflow(synthetic_lite_checkpoint: Path, tmp_path: Path) -> None:
    """A cold `audiotag tag` (the CLI's main in a fresh interpreter) with the conversion cached: none of the
    heavy libraries; `--format json --events --frames`, `--stream`, `--html`, `--plot`, standard input and
    the HEAR API: no TensorFlow."""
    clip = tmp_path / "clip.wav"
    sf.write(clip, _signal("tones", 44100, 10.0, 2, 0), 44100, subtype="PCM_16")
    checkpoint = str(synthetic_lite_checkpoint)
    base = f"from pipeline.cli import main\nbase = ['--vggish-checkpoint', {checkpoint!r}]\n"
    plain = f"{base}assert main([*base, 'tag', {str(clip)!r}]) == 0\n"
    assert modules_imported_by(plain, WATCHED) == []
    outputs = [("--format", "json", "--events", "--frames"), ("--stream",),
               ("--html", str(tmp_path / "page.html")), ("--plot", str(tmp_path / "plot.png"))]
    every = base + "".join(f"assert main([*base, 'tag', {str(clip)!r}, *{list(options)!r}]) == 0\n"
                           for options in outputs)
    every += (f"import os\nos.dup2(os.open({str(clip)!r}, os.O_RDONLY), 0)\n"
              "assert main([*base, 'tag', '-']) == 0\n"
              f"import numpy as np\nfrom pipeline import hear\nmodel = hear.load_model({checkpoint!r})\n"
              "hear.get_scene_embeddings(np.zeros((2, 16000), np.float32), model)\n")
    imported = modules_imported_by(every, WATCHED)
    assert "tensorflow" not in imported and "keras" not in imported, imported
    assert (tmp_path / "page.html").is_file() and (tmp_path / "plot.png").is_file()
