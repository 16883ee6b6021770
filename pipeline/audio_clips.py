"""Labelled audio (pipeline.labelled_audio) as a labelled ClipSet: extracted with `pipeline.extract` into
`FOLDER/features` (HDF5; resumable: a rerun skips finished files, and files that failed stay listed in
`FOLDER/features/errors.tsv`), its labels written as `FOLDER/labels.csv` (`id,labels`, the format of
`--labels`), then read back with classifier.readers.

Used by `audiotag train` and `audiotag evaluate` on audio. A class whose every file failed, or that keeps
fewer than `min_clips` readable files, is an error naming it; the extracted features stay for the rerun.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError
from pipeline.labelled_audio import LabelledAudio
from safeio.atomic import atomic_write_text
from safeio.names import printable_name

if TYPE_CHECKING:
    from classifier.clipset import ClipSet
    from pipeline.extract import ExtractReport

logger = logging.getLogger(__name__)

FEATURES_DIR = "features"
LABELS_NAME = "labels.csv"
FEATURES_FORMAT = "hdf5"


@dataclass
class AudioClips:
    """The clips of labelled audio: ``clipset`` (classifier.clipset.ClipSet), the files that could not be
    read as (path, reason), the errors report and the number of files."""

    clipset: ClipSet
    failed: list[tuple[str, str]]
    errors_path: Path
    files: int


def write_labels_csv(path: Path, labels: dict[str, list[str]]) -> Path:
    """`id,labels` rows, each label list one CSV-quoted field (as classifier.labels.read_labels_csv reads)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "labels"])
    for clip_id, names in labels.items():
        field = io.StringIO()
        csv.writer(field, lineterminator="").writerow(names)
        writer.writerow([clip_id, field.getvalue()])
    atomic_write_text(path, buffer.getvalue())
    return path


def extract_features(audio: LabelledAudio, folder: Path, checkpoint: Path, *,
                     progress: bool) -> ExtractReport:
    """Run pipeline.extract on the audio into ``folder/features``; returns its ExtractReport. The VGGish
    CNN runs on TensorFlow ("tf"), as `audiotag extract` by default: the release's numbers."""
    from pipeline import frontend
    from pipeline.extract import ExtractOptions, default_cnn_threads, extract
    from vggish.checkpoint import checkpoint_status
    from vggish.engines import load_embedder

    frontend.prestart()  # the workers' warm-up overlaps loading the model
    options = ExtractOptions(out_dir=folder / FEATURES_DIR, format=FEATURES_FORMAT, progress=progress)
    with load_embedder(checkpoint, "tf", intra_op_threads=default_cnn_threads(), inter_op_threads=1) as model:
        return extract(audio.inputs, model, options, checkpoint_status=checkpoint_status(checkpoint))


def audio_clips(audio: LabelledAudio, folder: Path, checkpoint: Path, class_names: Sequence[str], *,
                min_clips: int = 1, progress: bool = False) -> AudioClips:
    """Extract (or resume extracting) ``audio`` into ``folder`` and load its readable clips labelled with
    ``class_names`` (their order is the ClipSet's). PipelineError naming the classes with fewer than
    ``min_clips`` readable files."""
    from classifier.readers import load_clipset
    from pipeline.errorlog import ErrorLog
    from pipeline.writers import HDF5_NAME

    report = extract_features(audio, folder, checkpoint, progress=progress)
    logger.info("%s: %d files embedded, %d already done, %d failed", folder / FEATURES_DIR, report.done,
                report.skipped, report.failed + report.failed_before)
    failures = ErrorLog(folder / FEATURES_DIR).failed  # {clip id: reason}, this run's and earlier ones
    failed = [(str(item.path), failures[item.clip_id]) for item in audio.inputs if item.clip_id in failures]
    readable = {clip_id: names for clip_id, names in audio.labels.items() if clip_id not in failures}
    counts = {name: 0 for name in audio.classes}
    for names in readable.values():
        for name in names:
            counts[name] += 1
    short = [f"{printable_name(name)} ({n})" for name, n in counts.items() if n < min_clips]
    if short:
        raise PipelineError(f"{printable_name(audio.source)}: class(es) with fewer than {min_clips} readable "
                            f"audio file(s): {', '.join(short)}; the unreadable files are listed in "
                            f"{report.errors_path} (extracted features are kept for the rerun)")
    labels_csv = write_labels_csv(folder / LABELS_NAME, readable)
    clipset = load_clipset(folder / FEATURES_DIR / HDF5_NAME, labels_csv=labels_csv,
                           class_names=list(class_names))
    return AudioClips(clipset, failed, report.errors_path, len(audio.inputs))
