"""Rendering tag results as text, JSON or CSV (`audiotag tag --format`).

JSON: one document, a list of `{"file", "duration", "labels": [{"index", "mid", "name", "score"}, ...]}`
with labels sorted by score; with frames, each item also has `"frames": [{"start", "end", "labels"}]` (top
classes of each 0.96 s patch) and `"windows": [{"start", "end", "labels"}]` (each 10-patch window of a long
clip); with events, `"events": [{"index", "mid", "name", "start", "end", "score"}]`. Labels and events of
flagged classes carry `"rolled_up"`, `"abstract"` or `"blacklisted": true`. CSV: header
`file,scope,start,end,rank,index,mid,name,score`; scope `clip` rows (start 0, end = duration), with frames
`frame` and `window` rows, with events `event` rows (rank = order in the file). For a multiclass head (one
class per clip; its scores sum to 1) the JSON item also has `"class"`, the top label, and the text's header
line ends with it. Audacity: one label track
per file, `start<TAB>end<TAB>name` lines (seconds), the events of the file.

File names are valid UTF-8 in every format: each byte that is not UTF-8 is written `\\xNN`, as in clip ids
(safeio.names.printable_name).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from pipeline.tagger import WINDOW_PATCHES, Label, TagResult
from safeio.names import printable_name

PATCH_SECONDS = 0.96
CSV_HEADER = ("file", "scope", "start", "end", "rank", "index", "mid", "name", "score")


def _segments(result: TagResult, top_k: int) -> dict[str, list[tuple[float, float, list[Label]]]]:
    """Frame and window rows: (start s, end s, top labels)."""
    frames = [
        (
            float(t),
            min(float(t) + PATCH_SECONDS, max(result.duration, PATCH_SECONDS)),
            result.frame_top(i, top_k),
        )
        for i, t in enumerate(result.frame_starts)
    ]
    windows = []
    if len(result.window_scores) > 1:
        for i, t in enumerate(result.window_starts):
            labels = result._labels(result.window_scores[i], top_k)
            windows.append((float(t), float(t) + WINDOW_PATCHES * PATCH_SECONDS, labels))
    return {"frames": frames, "windows": windows}


def clip_item(source: str, duration: float, labels: Sequence[Label]) -> dict[str, Any]:
    """The JSON object of one clip: {"file", "duration", "labels": [{"index", "mid", "name", "score"}]};
    "file" is `source` as valid UTF-8 (printable_name)."""
    return {"file": printable_name(source), "duration": round(duration, 6),
            "labels": [label.as_dict() for label in labels]}


def _event_dicts(result: TagResult) -> list[dict[str, Any]]:
    flags = dict(zip(result.mids, result.flags or [()] * len(result.mids), strict=True))
    return [event.to_dict() | {flag: True for flag in flags.get(event.mid, ())} for event in result.events]


def top_class(result: TagResult) -> Label | None:
    """The clip's class: the top label of a multiclass result (None for multilabel, or no label left)."""
    top = result.top(1) if result.task == "multiclass" else []
    return top[0] if top else None


def to_json(results: Sequence[TagResult], top_k: int, frames: bool = False, events: bool = False) -> str:
    """One JSON document for all files."""
    items: list[dict[str, Any]] = []
    for result in results:
        item = clip_item(result.source, result.duration, result.top(top_k))
        if (label := top_class(result)) is not None:
            item["class"] = label.as_dict()
        if frames:
            for key, rows in _segments(result, top_k).items():
                item[key] = [
                    {"start": round(s, 3), "end": round(e, 3), "labels": [lab.as_dict() for lab in labels]}
                    for s, e, labels in rows
                ]
        if events:
            item["events"] = _event_dicts(result)
        items.append(item)
    return json.dumps(items, indent=2, ensure_ascii=False) + "\n"


def to_csv(results: Sequence[TagResult], top_k: int, frames: bool = False, events: bool = False) -> str:
    """CSV rows for all files (see the module docstring)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for result in results:
        rows = [("clip", 0.0, result.duration, result.top(top_k), 1)]
        if frames:
            segments = _segments(result, top_k)
            rows += [("frame", *row, 1) for row in segments["frames"]]
            rows += [("window", *row, 1) for row in segments["windows"]]
        if events:  # one label per row; rank = the event's place in the file
            rows += [("event", e.start, e.end, [Label(e.index, e.mid, e.name, e.score)], rank)
                     for rank, e in enumerate(result.events, 1)]
        for scope, start, end, labels, first_rank in rows:
            for rank, label in enumerate(labels, first_rank):
                writer.writerow(
                    (
                        printable_name(result.source),
                        scope,
                        f"{start:.3f}",
                        f"{end:.3f}",
                        rank,
                        label.index,
                        label.mid,
                        label.name,
                        f"{label.score:.6f}",
                    )
                )
    return out.getvalue()


def to_text(results: Sequence[TagResult], top_k: int, frames: bool = False, events: bool = False) -> str:
    """Human-readable: per file a header line, then `score  name` lines, then an optional timeline."""
    lines = []
    for result in results:
        label = top_class(result)
        verdict = f": {label.name} ({label.score:.3f})" if label is not None else ""
        lines.append(f"{printable_name(result.source)} ({result.duration:.2f} s){verdict}")
        lines += [f"  {label.score:6.3f}  {label.name}" for label in result.top(top_k)]
        if frames:
            lines.append("  timeline (0.96 s patches):")
            for start, end, labels in _segments(result, min(top_k, 3))["frames"]:
                tags = ", ".join(f"{label.name} {label.score:.2f}" for label in labels)
                lines.append(f"    {start:7.2f}-{end:7.2f} s  {tags}")
        if events:
            lines.append("  events:")
            lines += [f"    {e.start:7.2f}-{e.end:7.2f} s  {e.name} {e.score:.2f}" for e in result.events]
    return "\n".join(lines) + "\n" if lines else ""


def to_audacity(result: TagResult) -> str:
    """An Audacity label track of one file's events: `start<TAB>end<TAB>name` per line, seconds."""
    return "".join(f"{e.start:.6f}\t{e.end:.6f}\t{e.name}\n" for e in result.events)


RENDERERS = {"text": to_text, "json": to_json, "csv": to_csv}
