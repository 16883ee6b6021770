"""`audiotag tag --html`: the page's content, and a real headless Chromium (Debian's, driven by Playwright):
no console errors, no network, the events list equals the JSON output, clicks seek the player.
SYNTHETIC VGGish checkpoint and an untrained head (plumbing, not accuracy)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from classifier.events import EventRules
from pipeline.cli import main
from pipeline.html_report import write_report
from pipeline.tagger import Tagger

pytestmark = pytest.mark.slow

RATE = 22050
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """14 s of tones and noise bursts, PCM-16 WAV."""
    t = np.arange(14 * RATE) / RATE
    rng = np.random.default_rng(2)
    audio = 0.4 * np.sin(2 * np.pi * (300 + 40 * t) * t) * (np.sin(2 * np.pi * 0.2 * t) > 0)
    audio += 0.2 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 0.3 * t + 1) > 0.3)
    path = tmp_path_factory.mktemp("html") / "scene.wav"
    sf.write(path, audio.astype(np.float32), RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def head_with_events(
    tmp_path_factory: pytest.TempPathFactory, synthetic_checkpoint: Path, clip: Path
) -> Path:
    """An untrained single-attention head over the AudioSet classes whose stored event thresholds sit midway
    between the clip's calibrated scores (about its 75th/55th percentiles), so the clip has events."""
    import keras

    from classifier.head_file import save_head
    from classifier.labels import load_class_labels
    from classifier.models import build_model

    keras.utils.set_random_seed(0)
    config = {"kind": "single_attention", "num_classes": 527, "hidden_units": 32, "num_layers": 1,
              "dropout": 0.0}
    weights = [[np.asarray(w) for w in build_model(**config).weights]]
    folder = tmp_path_factory.mktemp("head")
    names = load_class_labels().names
    plain = save_head(folder / "plain.npz", [config], weights, names, "tiny-untrained")
    with Tagger(synthetic_checkpoint, head=str(plain)) as tagger:
        frames = np.sort(tagger.tag(clip).frame_scores, axis=0)
    high, low = int(0.75 * len(frames)), int(0.55 * len(frames))
    onset, offset = (frames[high - 1] + frames[high]) / 2, (frames[low - 1] + frames[low]) / 2
    apart = np.minimum(frames[high] - frames[high - 1], frames[low] - frames[low - 1]) > 1e-3 * frames[high]
    onset[~apart] = offset[~apart] = 2.0
    rules = EventRules(onset, offset, min_duration=1.0, merge_gap=0.5)
    return save_head(folder / "events.npz", [config], weights, names, "tiny-untrained-events",
                     event_rules=rules.to_config())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, synthetic_checkpoint: Path, clip: Path,
           head_with_events: Path) -> tuple[Path, dict]:
    """`audiotag tag --html page.html --format json --events`: the page and the JSON document's item."""
    import contextlib
    import io

    page = tmp_path_factory.mktemp("page") / "report.html"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["tag", str(clip), "--head", str(head_with_events), "--html", str(page), "--format",
                       "json", "--events", "--top-k", "5", "--vggish-checkpoint", str(synthetic_checkpoint)])
    assert status == 0
    item = json.loads(out.getvalue())[0]
    assert len(item["events"]) >= 3, "the head's thresholds should give the clip several events"
    return page, item


def test_page_is_self_contained(report: tuple[Path, dict], clip: Path) -> None:
    page, item = report
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)  # every resource is a data URI
    assert "<script src" not in text and "<link" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert text.count("data:audio/wav;base64,") == 1
    assert "duration 14.00 s" in text and html.escape(clip.as_posix()) in text
    for label in item["labels"]:
        assert html.escape(label["name"]) in text


def test_large_and_unplayable_audio(tmp_path: Path, synthetic_checkpoint: Path, clip: Path) -> None:
    aiff = tmp_path / "audio" / "scene.aiff"
    aiff.parent.mkdir()
    sf.write(aiff, sf.read(clip, dtype="int16")[0], RATE, subtype="PCM_16")
    with Tagger(synthetic_checkpoint) as tagger:
        result = tagger.tag(aiff, keep_examples=True)
    write_report([result], tmp_path / "small.html")
    assert "data:audio/wav;base64," in (tmp_path / "small.html").read_text()  # converted to WAV, embedded
    write_report([result], tmp_path / "large.html", embed_limit=1000)
    large = (tmp_path / "large.html").read_text()
    assert 'src="audio/scene.aiff"' in large and "browsers may not play this format" in large
    result.source = "<stdin>"
    write_report([result], tmp_path / "stdin.html")
    assert "no player" in (tmp_path / "stdin.html").read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium under Playwright; skips when either is missing, fails instead when
    AUDIOTAG_REQUIRE_BROWSER is set (as .ci/run sets it, having installed both)."""
    missing = pytest.fail if os.environ.get("AUDIOTAG_REQUIRE_BROWSER") else pytest.skip
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        missing("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright is not installed: pip install -e '.[browser]' (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _open(browser, url: str) -> tuple[object, list[str], list[str]]:
    """A page at `url`, with the console errors and the non-local requests it makes."""
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: requests.append(req.url)
            if not req.url.startswith(("data:", "file:")) else None)
    page.goto(url)
    _wait_for_audio(page, "audio.readyState >= 1")  # metadata loaded: the audio is there and readable
    return page, errors, requests


def _wait_for_audio(page, condition: str, timeout: float = 20.0) -> None:
    """Poll a JavaScript condition on the page's `audio` element (page.wait_for_function would evaluate a
    string, which the page's Content-Security-Policy rightly forbids)."""
    check = f"() => {{ const audio = document.querySelector('audio'); return {condition}; }}"
    deadline = time.monotonic() + timeout
    while not page.evaluate(check):
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        time.sleep(0.1)


def _current_time(page) -> float:
    return page.evaluate("() => document.querySelector('audio').currentTime")


@pytest.mark.browser
def test_page_in_chromium(browser, report: tuple[Path, dict], tmp_path: Path) -> None:
    page_path, item = report
    page, errors, requests = _open(browser, page_path.as_uri())
    rows = page.eval_on_selector_all(
        "tr.event", "rows => rows.map(r => [r.dataset.seek, ...[...r.cells].map(c => c.textContent)])")
    assert rows == [
        [f"{e['start']:.3f}", f"{e['start']:.2f}", f"{e['end']:.2f}", e["name"], f"{e['score']:.3f}"]
        for e in item["events"]
    ]
    assert page.evaluate("() => document.querySelector('audio').duration") == pytest.approx(14.0, abs=0.01)
    target = max(item["events"], key=lambda e: e["start"])
    assert target["start"] > 1.0
    page.click(f"tr.event[data-seek='{target['start']:.3f}']")
    _wait_for_audio(page, f"Math.abs(audio.currentTime - {target['start']}) < 1.0")
    assert _current_time(page) >= target["start"] - 0.01
    timeline = page.locator("img.timeline")  # click a point a quarter of the way along the timeline
    box = timeline.bounding_box()
    timeline.click(position={"x": box["width"] / 4, "y": box["height"] / 2})
    quarter = 14 * 0.96 / 4  # the timeline spans the 14 patches
    _wait_for_audio(page, f"Math.abs(audio.currentTime - {quarter}) < 0.5")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)  # kept in pytest's tmp, never the repo
    assert errors == [] and requests == []


@pytest.mark.browser
def test_linked_audio_plays_in_chromium(
    browser, tmp_path: Path, synthetic_checkpoint: Path, clip: Path
) -> None:
    audio = tmp_path / "sounds" / clip.name
    audio.parent.mkdir()
    shutil.copy(clip, audio)
    with Tagger(synthetic_checkpoint) as tagger:
        result = tagger.tag(audio, keep_examples=True)
    (tmp_path / "pages").mkdir()
    write_report([result], tmp_path / "pages" / "linked.html", embed_limit=0)  # linked: ../sounds/scene.wav
    assert 'src="../sounds/scene.wav"' in (tmp_path / "pages" / "linked.html").read_text()
    page, errors, requests = _open(browser, (tmp_path / "pages" / "linked.html").as_uri())
    spectrogram = page.locator("img.spectrogram")
    spectrogram.click(position={"x": spectrogram.bounding_box()["width"] / 2, "y": 5})
    _wait_for_audio(page, f"Math.abs(audio.currentTime - {14 * 0.96 / 2}) < 0.5")
    assert errors == [] and requests == []
