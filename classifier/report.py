"""Evaluation report files: per-class CSV/JSON, summary JSON, the AP-vs-training-clips plot and, for
single-label heads, the confusion matrix as CSV and PNG (atomic; the temporaries that killed runs left in the
report folder are deleted before its first file is written)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifier.metrics import ClassMetrics, Metrics
from safeio.atomic import atomic_output, sweep_folder_once
from safeio.names import printable_name

PER_CLASS_FIELDS = ("index", "mid", "name", "train_count", "n_eval_positives", "AP", "AUC")
SINGLE_LABEL_FIELDS = ("precision", "recall", "F1")  # per-class columns added for single-label heads
CONFUSION_ANNOTATED_CLASSES = 30  # up to this many classes the confusion plot writes each cell's count


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write data to path atomically and durably (safeio.atomic), after deleting the temporaries of dead
    processes in its folder (once per folder and process)."""
    sweep_folder_once(Path(path).parent)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def json_safe(data: object) -> object:
    """`data` with every non-finite float (nan, ±inf: not JSON numbers) replaced by None and the bytes of file
    names that are not UTF-8 written `\\xNN` (safeio.names.printable_name), recursively."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, str):
        return printable_name(data)
    if isinstance(data, dict):
        return {json_safe(key): json_safe(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(value) for value in data]
    return data


def per_class_rows(
    metrics: Metrics, mids: Sequence[str], names: Sequence[str], train_counts: np.ndarray | None,
    single_label: ClassMetrics | None = None,
) -> list[dict]:
    """One dict per class (PER_CLASS_FIELDS, and SINGLE_LABEL_FIELDS with ``single_label``); AP/AUC None
    when excluded, precision/recall/F1 None when undefined, train_count None when unknown."""
    rows = [
        {
            "index": k, "mid": mids[k], "name": names[k],
            "train_count": None if train_counts is None else int(train_counts[k]),
            "n_eval_positives": int(metrics.n_positives[k]),
            "AP": _number(metrics.ap[k]), "AUC": _number(metrics.auc[k]),
        }
        for k in range(len(names))
    ]
    if single_label is not None:
        values = (single_label.precision, single_label.recall, single_label.f1)
        for k, row in enumerate(rows):
            row |= {field: _number(v[k]) for field, v in zip(SINGLE_LABEL_FIELDS, values, strict=True)}
    return rows


def write_per_class_csv(rows: list[dict], path: Path) -> Path:
    """per_class.csv: the rows' columns (PER_CLASS_FIELDS, maybe SINGLE_LABEL_FIELDS); empty cells for
    undefined values."""
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else PER_CLASS_FIELDS
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {k: ("" if v is None else f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()}
        writer.writerow(cells)
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def write_json(data: object, path: Path) -> Path:
    """Pretty, strict JSON (nan and ±inf written as null)."""
    text = json.dumps(json_safe(data), indent=2, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def plot_ap_vs_count(
    metrics: Metrics, counts: np.ndarray, path: Path, *, count_label: str, title: str = ""
) -> Path:
    """PNG scatter of per-class AP against clips per class (log x), with the mAP as a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    used = ~np.isnan(metrics.ap)
    x = np.maximum(np.asarray(counts, dtype=np.float64)[used], 1.0)  # log axis: show 0 at 1
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if used.any():
        axes.scatter(x, metrics.ap[used], s=8, alpha=0.6)
        axes.axhline(metrics.mAP, color="tab:red", linestyle="--", linewidth=1,
                     label=f"mAP {metrics.mAP:.3f}")
        axes.set_xscale("log")
        axes.legend(loc="upper left")
    else:  # nothing to place on a log axis
        axes.text(0.5, 0.5, "no class has both positive and negative clips:\nno AP to show",
                  ha="center", va="center", transform=axes.transAxes)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel(count_label)
    axes.set_ylabel("average precision")
    axes.set_title(title or f"per-class AP: {metrics.n_classes_used} classes ({metrics.n_classes_excluded} "
                   f"without positives or negatives left out), {metrics.n_clips} clips")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def write_confusion_csv(confusion: np.ndarray, names: Sequence[str], path: Path) -> Path:
    """confusion.csv: a header `true class,<name>...` (the predicted classes), then one row per true class of
    the counts int [C, C]."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true class", *names])
    for name, row in zip(names, confusion, strict=True):
        writer.writerow([name, *(int(v) for v in row)])
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def plot_confusion(confusion: np.ndarray, names: Sequence[str], path: Path, *, title: str = "") -> Path:
    """PNG of the confusion matrix int [C, C] (rows true class, columns predicted), each row coloured by its
    share of the row's clips, with the counts written in the cells up to CONFUSION_ANNOTATED_CLASSES."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = len(names)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    side = min(4 + 0.45 * c, 20)
    figure = Figure(figsize=(side + 1.5, side), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class's clips")
    if c <= CONFUSION_ANNOTATED_CLASSES:
        for i in range(c):
            for j in range(c):
                if confusion[i, j]:
                    axes.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8,
                              color="white" if shares[i, j] > 0.5 else "black")
    axes.set_xticks(range(c), [printable_name(n) for n in names], rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(c), [printable_name(n) for n in names], fontsize=8)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title or f"confusion matrix ({int(confusion.sum())} clips)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())
