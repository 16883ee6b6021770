"""The report of a trained-and-chosen head (:mod:`classifier.autotrain`): what was compared, what won and
why, and how the winner scored on clips it had not been trained on.

Files in the report folder (each written atomically):
  summary.json, per_class.csv/json, ap_vs_train_count.png, and for single-label tasks confusion.csv/png:
      :func:`classifier.evaluate.evaluate_predictions` on the chosen model's out-of-fold predictions;
  cv.csv        one row per model and split: the split's scores and fit time;
  report.html   all of it on one self-contained page (inline style, images as data URIs, no script).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifier.clipset import ClipSet
from classifier.crossval import METRICS, CandidateResult, Evaluation
from classifier.evaluate import CONFUSION_PNG, evaluate_predictions
from classifier.metrics import class_metrics
from classifier.report import SINGLE_LABEL_FIELDS, atomic_write_bytes, json_safe
from safeio.names import printable_name

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
td, th { padding: 3px 10px; text-align: left; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.chosen { background: #e8f4ea; font-weight: 600; }
.note { color: #a60; }
img { max-width: 100%; }
"""
MAX_FAILED_LISTED = 200  # failed files listed on the page; the rest are counted


def out_of_fold_rows(result: CandidateResult) -> np.ndarray:
    """Rows (clip indices, int64) that some split scored out of fold."""
    return np.flatnonzero(np.isfinite(result.oof).all(axis=1))


def write_training_report(report_dir: str | Path, *, data: ClipSet, task: str, evaluation: Evaluation,
                          results: Sequence[CandidateResult], chosen: str, reason: str, head_path: Path,
                          extra: dict | None = None,
                          failed: Sequence[tuple[str, str]] = ()) -> dict:
    """Write the report files for ``results`` (the compared models; ``chosen`` among them) on ``data``;
    ``failed`` lists (file, reason) of inputs that could not be used. Returns the summary (JSON-ready)."""
    out = Path(report_dir)
    winner = next(r for r in results if r.name == chosen)
    rows = out_of_fold_rows(winner)
    y, probs = data.y[rows], winner.oof[rows]
    counts = dict(zip(data.class_names, (int(n) for n in data.class_counts()), strict=True))
    summary = {
        "task": task, "classes": list(data.class_names), "clips": len(data), "clips_per_class": counts,
        "evaluation": evaluation.scheme, "chosen": chosen, "why": reason,
        "comparison": [r.row(task) for r in results], "head": str(head_path),
        "scores_are": f"the chosen model's out-of-fold predictions on {len(rows)} clips",
        **(extra or {}),
    }
    metrics = evaluate_predictions(y, probs, data.class_names, data.class_counts(), out, extra=summary,
                                   task=task)
    summary = {**metrics.summary(), **summary}
    if task == "multiclass":
        summary |= class_metrics(y, probs).summary()
    _write_cv_csv(out / "cv.csv", results, task)
    page = _page(out, summary, results, task, chosen, failed)
    atomic_write_bytes(out / "report.html", page.encode("utf-8"))
    return json_safe(summary)


def _write_cv_csv(path: Path, results: Sequence[CandidateResult], task: str) -> None:
    """cv.csv: model, split, the split's METRICS[task], fit_seconds (the model's mean per fit)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "split", *METRICS[task], "fit_seconds"])
    for result in results:
        for i, scores in enumerate(result.split_scores):
            writer.writerow([result.name, i, *(f"{scores[m]:.6f}" for m in METRICS[task]),
                             f"{result.fit_seconds:.2f}"])
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _image(path: Path) -> str:
    """An <img> of a PNG file, as a data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.3f}</td>' if np.isfinite(value) else '<td class="num">–</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(printable_name(str(value)))}</td>"


def _comparison_table(results: Sequence[CandidateResult], task: str, chosen: str) -> str:
    head = "".join(f"<th>{m}</th>" for m in METRICS[task])
    rows = []
    for r in results:
        cells = "".join(f'<td class="num">{r.mean(m):.3f} ± {r.std(m):.3f}</td>' for m in METRICS[task])
        css = ' class="chosen"' if r.name == chosen else ""
        seconds = f'<td class="num">{r.fit_seconds:.1f}</td>'
        rows.append(f"<tr{css}><td>{html.escape(r.name)}</td>{cells}{seconds}</tr>")
    return f"<table><tr><th>model</th>{head}<th>seconds per fit</th></tr>{''.join(rows)}</table>"


def _per_class_table(out: Path, task: str) -> str:
    """The per-class rows of per_class.json as a table."""
    rows = json.loads((out / "per_class.json").read_text(encoding="utf-8"))
    single_label = SINGLE_LABEL_FIELDS if task == "multiclass" else ()
    fields = ["name", "train_count", "n_eval_positives", *single_label, "AP"]
    labels = {"train_count": "clips", "n_eval_positives": "scored clips"}
    header = "".join(f"<th>{labels.get(f, f)}</th>" for f in fields)
    body = "".join("<tr>" + "".join(_cell(math.nan if row[f] is None else row[f]) for f in fields) + "</tr>"
                   for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _page(out: Path, summary: dict, results: Sequence[CandidateResult], task: str, chosen: str,
          failed: Sequence[tuple[str, str]]) -> str:
    """The report page."""
    scores = ", ".join(f"{m} {summary[m]:.3f}" for m in METRICS[task] if summary.get(m) is not None)
    confusion = f"<h2>Confusion matrix</h2>{_image(out / CONFUSION_PNG)}" \
        if (out / CONFUSION_PNG).is_file() and task == "multiclass" else ""
    failed_items = "".join(f"<li>{html.escape(printable_name(path))}: {html.escape(why)}</li>"
                           for path, why in failed[:MAX_FAILED_LISTED])
    more = f"<li>… and {len(failed) - MAX_FAILED_LISTED} more</li>" if len(failed) > MAX_FAILED_LISTED else ""
    failed_part = (f'<h2>Files left out ({len(failed)})</h2><p class="note">These inputs could not be read; '
                   f"training went on without them.</p><ul>{failed_items}{more}</ul>") if failed else ""
    counts = ", ".join(f"{html.escape(name)} {n}" for name, n in summary["clips_per_class"].items())
    head = html.escape(printable_name(summary["head"]))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>audiotag training report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>audiotag training report</h1>
<p>{summary['clips']} clips, {len(summary['classes'])} classes ({counts}); task: <b>{task}</b>.</p>
<h2>Chosen model: {html.escape(chosen)}</h2>
<p>{html.escape(summary['why'])}. Evaluation: {html.escape(summary['evaluation'])}; the chosen model was then
trained again on all {summary['clips']} clips: <code>{head}</code>.</p>
<h2>Comparison (mean ± standard deviation over the splits)</h2>
{_comparison_table(results, task, chosen)}
<h2>The chosen model on clips it was not trained on</h2>
<p>{html.escape(summary['scores_are'])}: {scores}.</p>
{confusion}
<h2>Per class</h2>
{_per_class_table(out, task)}
{failed_part}
</body>
</html>
"""

