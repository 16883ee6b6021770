"""`audiotag tag --html OUT.html`: one self-contained page per run, one section per tagged file.

Each section shows the file's duration and top labels (for a multiclass head, first its class), an audio
player, the log-mel spectrogram, the calibrated timeline of the top classes as a heat map, and the event
list. Clicking an event, the spectrogram or the heat map seeks the player to that moment and plays it; a line
marks the playing position.

Self-contained: styles and the script are inline, images are PNG data URIs, and a Content-Security-Policy
forbids fetching anything else. Audio files up to EMBED_LIMIT_BYTES are embedded as base64 (formats
browsers cannot play, such as AIFF, are converted to 16-bit WAV first); larger files are linked by their
path relative to the page (so keep the page beside its audio, or the player shows nothing). Audio read from
standard input has no file to embed or link: its section has no player.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np

from pipeline.formatting import top_class
from pipeline.tagger import TagResult
from safeio.atomic import atomic_output, sweep_folder_once
from safeio.names import printable_name

EMBED_LIMIT_BYTES = 20 * 1024 * 1024  # audio files up to this size are embedded; larger ones are linked
MAX_IMAGE_COLUMNS = 4000  # spectrogram and heat-map images are max-pooled down to this width (pixels)
PATCH_SECONDS = 0.96
BROWSER_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
                 ".opus": "audio/ogg", ".mp3": "audio/mpeg"}  # containers that browsers play

_CSP = ("default-src 'none'; img-src data:; media-src data: file: 'self'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'")

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
section.file { border-top: 1px solid #ccc; padding: 0.5em 0 1.5em; }
h2 { font-size: 1.15em; margin: 0.4em 0; word-break: break-all; }
.meta { color: #666; margin: 0 0 0.6em; }
audio { width: 100%; }
.columns { display: grid; grid-template-columns: 14em 1fr; gap: 0.3em 0.8em; align-items: center; }
.track { position: relative; cursor: pointer; line-height: 0; }
.track img { width: 100%; image-rendering: pixelated; }
img.spectrogram { height: 128px; }
.playhead { position: absolute; top: 0; bottom: 0; left: 0; width: 2px; background: #e33;
            pointer-events: none; }
.rownames { display: grid; font-size: 12px; text-align: right; }
.rownames span { height: 18px; line-height: 18px; overflow: hidden; white-space: nowrap; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { padding: 2px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { display: inline-block; height: 10px; background: #4a7; vertical-align: middle; }
.eventlist { max-height: 24em; overflow-y: auto; display: inline-block; }
tr.event { cursor: pointer; }
tr.event:hover { background: #eef; }
.note { color: #a60; }
.verdict { font-size: 1.1em; margin: 0.3em 0 0.6em; }
"""

_SCRIPT = """
document.querySelectorAll("section.file").forEach(function (section) {
  var audio = section.querySelector("audio");
  var span = parseFloat(section.dataset.span);
  function seek(seconds) {
    if (!audio) { return; }
    audio.currentTime = seconds;
    var playing = audio.play();
    if (playing) { playing.catch(function (err) { console.warn("audiotag: cannot play:", err.message); }); }
  }
  section.querySelectorAll("[data-seek]").forEach(function (el) {
    el.addEventListener("click", function () { seek(parseFloat(el.dataset.seek)); });
  });
  section.querySelectorAll(".track").forEach(function (el) {
    el.addEventListener("click", function (ev) {
      var box = el.getBoundingClientRect();
      seek(Math.max(0, Math.min(1, (ev.clientX - box.left) / box.width)) * span);
    });
  });
  if (audio) {
    audio.addEventListener("timeupdate", function () {
      section.querySelectorAll(".playhead").forEach(function (line) {
        line.style.left = Math.min(100, 100 * audio.currentTime / span) + "%";
      });
    });
  }
});
"""


def write_report(results: Sequence[TagResult], path: str | os.PathLike[str], top_k: int = 10,
                 embed_limit: int = EMBED_LIMIT_BYTES) -> None:
    """Write the page for `results` (tagged with keep_examples=True, for the spectrogram) atomically, after
    deleting the temporaries that killed runs left in its folder. The page is valid UTF-8 whatever the file
    names: bytes that are not UTF-8 are shown as `\\xNN` and linked percent-encoded."""
    out_dir = Path(path).resolve().parent
    sections = "\n".join(_section(i, r, top_k, out_dir, embed_limit) for i, r in enumerate(results))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>audiotag report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>audiotag report</h1>
<p class="meta">{len(results)} file(s). Click an event, the spectrogram or the timeline to play from
there.</p>
{sections}
<script>{_SCRIPT}</script>
</body>
</html>
"""
    sweep_folder_once(out_dir)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")


def _section(number: int, result: TagResult, top_k: int, out_dir: Path, embed_limit: int) -> str:
    span = max(len(result.frame_starts), 1) * PATCH_SECONDS
    columns = result.top_columns(result.scores, top_k)
    labels = "".join(
        f'<tr><td>{html.escape(label.name)}</td><td class="num">{label.score:.3f}</td>'
        f'<td><span class="bar" style="width:{100 * label.score:.1f}px"></span></td></tr>'
        for label in result.top(top_k)
    )
    events = "".join(
        f'<tr class="event" data-seek="{e.start:.3f}" data-index="{e.index}">'
        f'<td class="num">{e.start:.2f}</td><td class="num">{e.end:.2f}</td><td>{html.escape(e.name)}</td>'
        f'<td class="num">{e.score:.3f}</td></tr>'
        for e in result.events
    )
    row_names = "".join(f"<span>{html.escape(result.names[k])}</span>" for k in columns)
    heat = result.frame_scores[:, columns].T if len(columns) else np.zeros((1, 1), np.float32)
    heat_height = 18 * max(len(columns), 1)
    label = top_class(result)
    verdict = "" if label is None else (f'<p class="verdict">class: <b>{html.escape(label.name)}</b> '
                                        f"(probability {label.score:.3f})</p>")
    return f"""<section class="file" id="file-{number}" data-span="{span:.3f}">
<h2>{html.escape(printable_name(result.source))}</h2>
<p class="meta">duration {result.duration:.2f} s · {len(result.frame_starts)} patches of 0.96 s</p>
{verdict}
{_player(result.source, out_dir, embed_limit)}
<table class="labels"><tr><th>label</th><th>score</th><th></th></tr>{labels}</table>
<div class="columns">
<div class="rownames"><span>log-mel spectrogram</span></div>
<div class="track"><img class="spectrogram" alt="log-mel spectrogram" src="{_spectrogram_png(result)}">
<div class="playhead"></div></div>
<div class="rownames">{row_names}</div>
<div class="track"><img class="timeline" alt="timeline of the top classes" style="height:{heat_height}px"
 src="{_png(heat, 'viridis', 0.0, 1.0)}"><div class="playhead"></div></div>
</div>
<h3>events ({len(result.events)})</h3>
<div class="eventlist"><table class="events"><tr><th>start (s)</th><th>end (s)</th><th>class</th>
<th>score</th></tr>{events}</table></div>
</section>"""


def _player(source: str, out_dir: Path, embed_limit: int) -> str:
    """The <audio> element: the file embedded (up to `embed_limit` bytes) or linked, or a note."""
    path = Path(source)
    if not path.is_file():
        return '<p class="note">audio read from standard input: no player (tag a file to get one)</p>'
    mime = BROWSER_TYPES.get(path.suffix.lower())
    size = path.stat().st_size
    if size <= embed_limit:
        data = path.read_bytes() if mime else _as_wav(path, embed_limit)
        if data is not None:
            encoded = base64.b64encode(data).decode("ascii")
            uri = f"data:{mime or 'audio/wav'};base64,{encoded}"
            return f'<audio controls preload="auto" src="{uri}"></audio>'
    try:
        link = quote(os.fsencode(os.path.relpath(path.resolve(), out_dir).replace(os.sep, "/")))
    except ValueError:  # another drive (Windows): an absolute file URI
        link = path.resolve().as_uri()
    note = "" if mime else '<p class="note">browsers may not play this format; convert it to WAV or FLAC</p>'
    return f'<audio controls preload="auto" src="{html.escape(link)}"></audio>{note}'


def _as_wav(path: Path, limit: int) -> bytes | None:
    """A format browsers do not play, as 16-bit WAV bytes (None when that would exceed `limit`)."""
    import soundfile as sf

    info = sf.info(str(path))
    if info.frames * info.channels * 2 > limit:
        return None
    data, rate = sf.read(str(path), dtype="int16", always_2d=True)
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _spectrogram_png(result: TagResult) -> str:
    """The log-mel patches laid end to end (10 ms frames x 64 bands, low bands at the bottom)."""
    examples = result.embeddings.examples
    if examples is None:
        raise ValueError("the HTML report needs the log-mel examples: tag with keep_examples=True")
    logmel = examples.reshape(-1, examples.shape[-1]) if len(examples) else np.zeros((1, 64), np.float32)
    low, high = np.percentile(logmel, [1, 99]) if logmel.size else (0.0, 1.0)
    return _png(logmel.T[::-1], "magma", float(low), float(max(high, low + 1e-6)))


def _png(values: np.ndarray, cmap: str, vmin: float, vmax: float) -> str:
    """A float [rows, columns] array as a colour-mapped PNG data URI, columns max-pooled to at most
    MAX_IMAGE_COLUMNS."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.image import imsave

    values = np.asarray(values, np.float32)
    if values.shape[1] > MAX_IMAGE_COLUMNS:
        group = -(-values.shape[1] // MAX_IMAGE_COLUMNS)
        padded = np.pad(values, ((0, 0), (0, -values.shape[1] % group)), mode="edge")
        values = padded.reshape(values.shape[0], -1, group).max(axis=2)
    buffer = io.BytesIO()
    imsave(buffer, values, cmap=cmap, vmin=vmin, vmax=vmax, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
