"""`audiotag tag --plot OUT.png`: the log-mel spectrogram above a heat map of the top classes over time."""

from __future__ import annotations

import os

import numpy as np

from pipeline.tagger import TagResult
from safeio.atomic import atomic_output, sweep_folder_once
from safeio.names import printable_name

PLOT_SIZE_INCHES = (10.0, 6.0)
PLOT_DPI = 100  # so the PNG is 1000 x 600 pixels


def plot_result(result: TagResult, path: str | os.PathLike[str], top_k: int = 10) -> None:
    """Write a PNG (PLOT_SIZE_INCHES at PLOT_DPI) for one tagged clip; needs `result.embeddings.examples`.

    Top panel: log-mel (64 bands x 10 ms frames, the patches laid end to end; 0.96 s hop means no overlap).
    Bottom panel: the calibrated per-patch scores of the clip's `top_k` classes. Temporaries that killed runs
    left in the PNG's folder are deleted first (safeio.atomic.sweep_folder_once).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    examples = result.embeddings.examples
    if examples is None:
        raise ValueError("plot_result needs the log-mel examples: tag with keep_examples=True")
    logmel = examples.reshape(-1, examples.shape[-1]) if len(examples) else np.zeros((1, 64), np.float32)
    columns = result.top_columns(result.scores, top_k)
    labels = [result.names[k] for k in columns]
    heat = result.frame_scores[:, columns].T if len(columns) else np.zeros((1, 1))
    end = max(len(result.frame_starts), 1) * 0.96

    figure = Figure(figsize=PLOT_SIZE_INCHES, dpi=PLOT_DPI, layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1]})
    top.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, end, 0, logmel.shape[1]))
    top.set_ylabel("mel band")
    top.set_title(f"{printable_name(os.path.basename(result.source))} — log-mel spectrogram")
    image = bottom.imshow(
        heat,
        origin="upper",
        aspect="auto",
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
        extent=(0, end, len(labels), 0),
    )
    bottom.set_yticks(np.arange(len(labels)) + 0.5, labels, fontsize=8)
    bottom.set_xlabel("time (s)")
    bottom.set_title("calibrated class score per 0.96 s patch")
    figure.colorbar(image, ax=[top, bottom], fraction=0.03, pad=0.01, label="probability")
    sweep_folder_once(os.path.dirname(os.path.abspath(path)))
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        figure.savefig(f, format="png", dpi=PLOT_DPI)
