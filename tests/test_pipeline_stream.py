"""`audiotag tag -`, `tag --stream` and `listen`: SYNTHETIC VGGish checkpoint (plumbing, not accuracy) and the
shipped head; stdin results equal file results; a paced pipe for latency, Ctrl-C and "model first"; a
generated one-hour stream for flat memory; a fake sounddevice input stream for `listen` (no audio device)."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pipe_feeder import pipe_with

from classifier.events import EventRules
from pipeline.audio_input import RawFormat, open_file, open_raw
from pipeline.cli import main
from pipeline.formatting import to_json
from pipeline.listen import listen
from pipeline.stream import StreamTagger, run_stream
from pipeline.tagger import Tagger

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).with_name("stream_writer.py")
RATE = 16000
HOP_SAMPLES = 15360  # 0.96 s at 16 kHz
PATCH_SAMPLES = 15600  # samples one patch needs: 96 frames of 25 ms, 10 ms apart


def _signal(seconds: float, rate: int, channels: int = 2) -> np.ndarray:
    """float32 [n, channels] in [-1, 1]: chirps and bursts so that the scores move from patch to patch."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(1)
    left = 0.5 * np.sin(2 * np.pi * (200 + 60 * t) * t) * (np.sin(2 * np.pi * 0.15 * t) > -0.3)
    right = 0.2 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 0.4 * t) > 0)
    return np.stack([left, right][:channels], 1).astype(np.float32)


@pytest.fixture(scope="module")
def tagger(synthetic_checkpoint: Path) -> Iterator[Tagger]:
    with Tagger(synthetic_checkpoint) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """17 s of stereo PCM-16 at 44.1 kHz (resampled on the way: the streaming resampler is exercised)."""
    path = tmp_path_factory.mktemp("stream") / "clip.wav"
    sf.write(path, _signal(17.0, 44100), 44100, subtype="PCM_16")
    return path


@pytest.fixture()
def event_rules(tagger: Tagger, clip: Path) -> Iterator[EventRules]:
    """Per-class thresholds from the clip's own calibrated timeline (about its 70th and 50th percentiles), so
    that the meaningless synthetic scores still open and close events (the tagger's rules, as from a head
    file). Each threshold lies midway between two of the clip's scores that are clearly apart (classes
    without such a gap never fire): a stream's scores equal the file's only to float rounding (~1e-6)."""
    frames = np.sort(tagger.tag(clip).frame_scores, axis=0)
    high, low = int(0.7 * len(frames)), int(0.5 * len(frames))
    onset = (frames[high - 1] + frames[high]) / 2
    offset = (frames[low - 1] + frames[low]) / 2
    apart = np.minimum(frames[high] - frames[high - 1], frames[low] - frames[low - 1]) > 1e-3 * frames[high]
    onset[~apart] = offset[~apart] = 2.0
    rules = EventRules(onset, offset, min_duration=1.5, merge_gap=1.0)
    saved, tagger.event_rules = tagger.event_rules, rules
    yield rules
    tagger.event_rules = saved


@contextmanager
def stdin_bytes(data: bytes) -> Iterator[None]:
    """File descriptor 0 reads `data` from a pipe (filled by a thread) for the duration of the block."""
    with pipe_with(data, chunk=1 << 14) as read_end:
        saved = os.dup(0)
        os.dup2(read_end, 0)
        try:
            yield
        finally:
            os.dup2(saved, 0)
            os.close(saved)


def _tag_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[dict]:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_tag_stdin_equals_tag_file(
    synthetic_checkpoint: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--vggish-checkpoint", str(synthetic_checkpoint), "--format", "json", "--frames",
              "--top-k", "5"]
    expected = _tag_json(capsys, ["tag", str(clip), *common])[0]
    samples, rate = sf.read(clip, dtype="int16")
    flac, ogg = tmp_path / "clip.flac", tmp_path / "clip.ogg"
    sf.write(flac, samples, rate, subtype="PCM_16")
    sf.write(ogg, samples, rate)
    cases = [
        ([], clip.read_bytes(), clip),
        ([], flac.read_bytes(), flac),
        ([], ogg.read_bytes(), ogg),
        (["--raw-format", "s16le", "--rate", str(rate), "--channels", "2"], samples.astype("<i2").tobytes(),
         clip),
    ]
    for options, data, same_as in cases:
        with stdin_bytes(data):
            got = _tag_json(capsys, ["tag", "-", *common, *options])[0]
        reference = expected if same_as == clip else _tag_json(capsys, ["tag", str(same_as), *common])[0]
        assert got["file"] == "<stdin>"
        assert got["duration"] == reference["duration"] == pytest.approx(17.0)
        assert {k: v for k, v in got.items() if k != "file"} == {
            k: v for k, v in reference.items() if k != "file"
        }, options or same_as.suffix


def test_stdin_errors_are_one_line(synthetic_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with stdin_bytes(b"this is not audio" * 100):
        status = main(["tag", "-", "--vggish-checkpoint", str(synthetic_checkpoint)])
    assert status == 3
    assert capsys.readouterr().err.strip().endswith("<stdin>: not a readable audio stream, or corrupt "
                                                    "(Format not recognised.)")
    assert main(["tag", "clip.wav", "--raw-format", "s16le", "--rate", "8000"]) == 1
    assert "give - as the FILE" in capsys.readouterr().err
    assert main(["tag", "-", "--raw-format", "s16le"]) == 1
    assert "needs --rate" in capsys.readouterr().err
    assert main(["tag", "a.wav", "b.wav", "--stream"]) == 1
    assert "one input" in capsys.readouterr().err


def _stream_records(tagger: Tagger, audio, events: bool, top_k: int = 5) -> list[dict]:
    out = io.StringIO()
    assert run_stream(StreamTagger(tagger, top_k=top_k, events=events), audio, out) is False
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_stream_matches_the_file_windows_and_events(
    tagger: Tagger, clip: Path, event_rules: EventRules
) -> None:
    result = tagger.tag(clip)
    records = _stream_records(tagger, open_file(str(clip)), events=True)
    patches = [r for r in records if r["type"] == "patch"]
    assert len(patches) == len(result.frame_starts) == 17
    for i, patch in enumerate(patches):
        assert (patch["start"], patch["end"]) == pytest.approx((0.96 * i, 0.96 * i + 0.96))
        assert patch["window_start"] == pytest.approx(0.96 * max(0, i - 9))
        if i >= 9:  # a full 10-patch window: the file's window starting at patch i - 9
            scores = result.window_scores[i - 9]
            assert [lab["index"] for lab in patch["labels"]] == list(np.argsort(-scores, kind="stable")[:5])
            np.testing.assert_allclose([lab["score"] for lab in patch["labels"]],
                                       np.sort(scores)[::-1][:5], atol=2e-6)
    expected = json.loads(to_json([result], 5, events=True))[0]["events"]  # what `tag --events` writes
    assert len(expected) >= 3, "the test's thresholds should give several events"
    ends = [r for r in records if r["type"] == "event_end"]
    starts = [r for r in records if r["type"] == "event_start"]
    key = lambda r: (r["index"], r["start"])  # noqa: E731
    assert sorted(map(key, ends)) == sorted(map(key, starts))  # every reported start gets its end
    assert sorted(ends, key=key) == sorted(({"type": "event_end"} | e for e in expected), key=key)
    # an event is reported once it has lasted min_duration on the final timeline, which lags by 9 patches
    position = {id(r): n for n, r in enumerate(records)}
    for start in starts:
        confirmed = next(i for i, p in enumerate(patches)
                         if p["end"] >= start["start"] + event_rules.min_duration - 1e-6)
        assert position[id(start)] > position[id(patches[min(confirmed + 9, len(patches) - 1)])]
    assert records[-1] == {"type": "end", "duration": pytest.approx(17.0), "patches": 17,
                           "interrupted": False}


class FakeInputStream:
    """Stands in for sounddevice.InputStream (no audio device here): start() runs a thread that calls the
    callback with float32 [blocksize, channels] blocks of `AUDIO`, as PortAudio does, then goes inactive."""

    AUDIO: np.ndarray

    def __init__(self, *, samplerate: int, channels: int, device, dtype: str, blocksize: int, callback):
        assert (dtype, channels, device) == ("float32", self.AUDIO.shape[1], "fake:0")
        self.samplerate, self.blocksize, self.callback = samplerate, blocksize, callback
        self.active = False
        self.closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(0, len(self.AUDIO), self.blocksize):
            block = self.AUDIO[i : i + self.blocksize]
            self.callback(block, len(block), None, None)
        self.active = False

    def start(self) -> None:
        self.active = True
        self._thread.start()

    def stop(self) -> None:
        self._thread.join()

    def close(self) -> None:
        self.closed = True


def test_listen_plumbing_with_a_fake_input_stream(tagger: Tagger, event_rules: EventRules) -> None:
    FakeInputStream.AUDIO = _signal(12.0, RATE)
    out = io.StringIO()
    assert listen(tagger, out, FakeInputStream, device="fake:0", sample_rate=RATE, channels=2, top_k=3,
                  events=True) is False
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records[0]["type"] == "ready" and records[0]["source"] == "sound card fake:0"
    # the same audio as raw float32 PCM through a pipe: the same lines
    with stdin_bytes(FakeInputStream.AUDIO.astype("<f4").tobytes()):
        expected = _stream_records(tagger, open_raw(0, RawFormat("f32le", RATE, 2)), events=True, top_k=3)
    assert records[1:] == expected
    assert sum(r["type"] == "patch" for r in records) == 12


def test_listen_without_portaudio_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        pass
    else:
        pytest.skip("sounddevice and PortAudio are installed here: the missing-library message cannot show")
    assert main(["listen"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "audiotag[live]" in err or "libportaudio2" in err


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so that Python turns it into KeyboardInterrupt
    (a shell starts background jobs with SIGINT ignored, and an ignored SIGINT is inherited across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _audiotag(checkpoint: Path, *args: str, stdin: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tag", "-", "--stream", "--raw-format", "s16le", "--rate",
         str(RATE), "--vggish-checkpoint", str(checkpoint), *args],
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        preexec_fn=_default_sigint,
    )


def _cnn_call_seconds(checkpoint: Path) -> float:
    """Median time of one VGGish call on one patch, measured here (same machine, same load, the engine that
    `tag` runs by default)."""
    import vggish

    patch = np.random.default_rng(0).standard_normal((1, 96, 64)).astype(np.float32)
    with vggish.load_embedder(checkpoint) as model:
        model.embed(patch)
        times = []
        for _ in range(7):
            start = time.perf_counter()
            model.embed(patch)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def test_paced_pipe_latency_model_first_and_ctrl_c(synthetic_lite_checkpoint: Path) -> None:
    read_end, write_end = os.pipe()
    proc = _audiotag(synthetic_lite_checkpoint, stdin=read_end)
    os.close(read_end)
    writer = None
    try:
        ready = json.loads(proc.stdout.readline())  # nothing has been written to the pipe yet
        assert ready["type"] == "ready" and ready["source"] == "<stdin>"
        writer = subprocess.Popen([sys.executable, str(WRITER), "--seconds", "30", "--rate", str(RATE),
                                   "--realtime"], stdout=write_end, stderr=subprocess.PIPE, text=True)
        os.close(write_end)
        t0 = float(writer.stderr.readline().split()[1])
        arrivals = []
        for line in proc.stdout:
            record = json.loads(line)
            if record["type"] == "patch":
                arrivals.append((record["index"], time.monotonic()))
            if len(arrivals) == 8:
                break
        proc.send_signal(signal.SIGINT)
        rest = [json.loads(line) for line in proc.stdout]
        assert proc.wait(timeout=60) == 130
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rest[-1]["type"] == "end" and rest[-1]["interrupted"] is True
    assert rest[-1]["patches"] == 8 + sum(r["type"] == "patch" for r in rest)
    assert "interrupted" in proc.stderr.read()
    # patch i's last sample (index 15360 i + 15599) is written with 10 ms chunk 1536 i + 97, at t0 + its end
    latencies = [t - (t0 + ((index * HOP_SAMPLES + PATCH_SAMPLES - 1) // 160 + 1) * 0.01)
                 for index, t in arrivals]
    bound = 0.96 + _cnn_call_seconds(synthetic_lite_checkpoint)
    print(f"latency per patch (s): {np.round(latencies, 3).tolist()}; bound {bound:.3f} s")
    assert max(latencies) <= bound
    assert min(latencies) > 0


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak RSS is read from /proc (Linux)")
def test_one_hour_stream_memory_is_flat(synthetic_lite_checkpoint: Path) -> None:
    read_end, write_end = os.pipe()
    proc = _audiotag(synthetic_lite_checkpoint, stdin=read_end)
    os.close(read_end)
    writer = subprocess.Popen([sys.executable, str(WRITER), "--seconds", "3600", "--rate", str(RATE)],
                              stdout=write_end)
    os.close(write_end)
    peaks: dict[int, int] = {}  # VmHWM, the peak so far (KiB)
    current: dict[int, int] = {}  # VmRSS (KiB): a slow leak shows here before it passes the start-up peak
    last, patches = None, 0
    try:
        for line in proc.stdout:
            last = json.loads(line)
            if last["type"] != "patch":
                continue
            patches += 1
            for minute in (10, 60):
                if minute not in peaks and last["end"] >= minute * 60 - 6:  # the last patches of the minute
                    peaks[minute], current[minute] = _rss_kib(proc.pid)
        assert proc.wait(timeout=60) == 0
        assert writer.wait(timeout=60) == 0
    finally:
        for p in (writer, proc):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert last == {"type": "end", "duration": 3600.0, "patches": patches, "interrupted": False}
    assert patches == 3749  # 1 + (359,998 log-mel frames - 96) // 96
    print(f"peak RSS: {peaks[10] / 1024:.1f} MiB at 10 min, {peaks[60] / 1024:.1f} MiB at 60 min; "
          f"RSS: {current[10] / 1024:.1f} MiB at 10 min, {current[60] / 1024:.1f} MiB at 60 min")
    assert peaks[60] <= peaks[10] * 1.05
    assert current[60] <= current[10] * 1.05


def _rss_kib(pid: int) -> tuple[int, int]:
    """(peak, current) resident set size of process `pid` in KiB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])


def test_ctrl_c_ends_a_stalled_wav_pipe(synthetic_lite_checkpoint: Path) -> None:
    """A WAV stream that stops sending (the writer keeps the pipe open): Ctrl-C still ends it at once. The
    header gives unknown sizes (0xFFFFFFFF), as streaming writers such as ffmpeg do on a pipe."""
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, RATE, 2 * RATE, 2, 16)
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF)
    tone = (0.3 * np.sin(np.arange(4 * RATE) * 0.1) * 32767).astype("<i2").tobytes()
    read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tag", "-", "--stream", "--top-k", "1", "--vggish-checkpoint",
         str(synthetic_lite_checkpoint)], stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env=env, cwd=REPO, preexec_fn=_default_sigint)
    os.close(read_end)
    try:
        os.write(write_end, header + tone)  # then nothing more, and the pipe stays open
        patches = 0
        while patches < 4:
            patches += json.loads(proc.stdout.readline())["type"] == "patch"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        rest = [json.loads(line) for line in proc.stdout]
        assert proc.wait(timeout=60) == 130
        assert time.monotonic() - sent < 10
    finally:
        os.close(write_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    end = rest[-1]
    assert end == {"type": "end", "duration": end["duration"], "patches": 4, "interrupted": True}
    assert 3.855 <= end["duration"] <= 4.0  # the audio read when Ctrl-C came: 4 patches need 3.855 s
