"""`audiotag export`: the whole tagger (waveform -> log-mel -> VGGish -> PCA -> head -> scores) as one
TensorFlow graph, saved as a SavedModel (TF Serving, plain `tf.saved_model.load`) or a TF-Lite model.

Every stage reuses the project's own definition: the log-mel front end and postprocessing are the TF-op
twins in vggish.tf_frontend (same constants, same filterbank), the CNN is vggish's TF-Slim graph with the
checkpoint's weights (vggish.tf_function), and the head is rebuilt from its member configs and float32
weights (classifier.tf_head). The graph reproduces pipeline.Tagger: clip scores are the maximum over
10-patch windows `window_hop` patches apart (one window of all patches for clips of up to 10; for a
multiclass head the mean of the windows' distributions, classifier.head_file.combine_windows), frame scores
are the calibrated timeline per 0.96 s patch (TimelineScores below: classifier.tf_timeline, the TF twin of
classifier.timeline, with the head's gamma).

SavedModel signatures:
  serving_default(waveform float32 [n], mono 16 kHz in [-1, 1]) -> scores [C], frame_scores [N, C],
      timestamps [N] (s), embedding uint8 [N, 128], raw_embedding float32 [N, 128];
  embed(waveform) -> embedding, raw_embedding, timestamps;
  labels() -> index int32 [C], mid string [C], name string [C] (also the asset labels.csv);
  metadata() -> synthetic bool, vggish_checkpoint string (its status), head string, window_hop int32,
      sample_rate int32, format string, task string (the head's: "multiclass" scores are one distribution
      over the classes) (also the asset export_info.json).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from pipeline.errors import PipelineError
from pipeline.tagger import WINDOW_PATCHES, class_table, load_head
from vggish import params, tf_frontend
from vggish.postprocess import Postprocessor
from vggish.tf_function import VGGishFunction

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "audiotag-export-v1"
LABELS_FILENAME = "labels.csv"
INFO_FILENAME = "export_info.json"
SAVEDMODEL_DIRNAME = "savedmodel"
TFLITE_DIRNAME = "tflite"
TFLITE_FILENAME = "audiotag.tflite"
TFLITE_INT8_FILENAME = "audiotag_int8.tflite"
WAVEFORM_SPEC = tf.TensorSpec([None], tf.float32, name="waveform")


class ExportError(PipelineError):
    """An export that cannot or must not be made (e.g. from a synthetic checkpoint without consent)."""


@dataclass(frozen=True)
class ExportInfo:
    """What an export was made from; stored as the asset export_info.json and the `metadata` signature."""

    synthetic: bool
    vggish_checkpoint: str  # vggish.checkpoint.checkpoint_status: verified-release / unverified / synthetic
    head: str
    window_hop: int
    task: str = "multilabel"  # the head's (classifier.head_file.TASKS)

    def as_dict(self) -> dict[str, Any]:
        return {"format": EXPORT_FORMAT, "synthetic": self.synthetic,
                "vggish_checkpoint": self.vggish_checkpoint, "head": self.head, "window_hop": self.window_hop,
                "sample_rate": params.SAMPLE_RATE, "task": self.task}


def window_starts(num_patches: tf.Tensor, hop: int) -> tf.Tensor:
    """First patch of each 10-patch window, int32 [W]: as pipeline.tagger.window_starts (0 alone for clips of
    up to 10 patches; the last window always ends at the last patch)."""
    width = tf.minimum(num_patches, WINDOW_PATCHES)
    last = num_patches - width
    return tf.concat([tf.range(0, last, hop), [last]], axis=0)


class TimelineScores(tf.Module):
    """The calibrated timeline [N, C] of a clip, as pipeline.Tagger.score: each window's raw frame
    scores (classifier.pretrained.Head.predict_frames_raw: the head's frame output, or each patch as
    a one-patch clip when it has none) calibrated with its clip probabilities and the head's gamma
    (classifier.tf_timeline.calibrate_frames), then merged by the maximum over covering windows."""

    def __init__(self, head: Any, gamma: float) -> None:
        super().__init__(name="timeline")
        self.head = head
        self.gamma = float(gamma)

    def raw_frames(self, windows: tf.Tensor) -> tf.Tensor:
        """windows float32 [W, T, 128] (uint8 embedding values) -> raw frame scores [W, T, C]."""
        if self.head.has_frames:
            return self.head.frame_probabilities(windows, tf.ones_like(windows[:, :, 0]))
        patches = tf.reshape(windows, [-1, 1, tf.shape(windows)[2]])
        probs = self.head.clip_probabilities(patches, tf.ones_like(patches[:, :, 0]))
        return tf.reshape(probs, [tf.shape(windows)[0], tf.shape(windows)[1], -1])

    def __call__(self, windows: tf.Tensor, first_patches: tf.Tensor, clip_probs: tf.Tensor,
                 num_patches: tf.Tensor) -> tf.Tensor:
        """windows float32 [W, T, 128] starting at patches first_patches int32 [W], their clip probabilities
        float32 [W, C] -> the timeline float32 [num_patches, C]."""
        from classifier import tf_timeline

        calibrated = tf_timeline.calibrate_frames(clip_probs, self.raw_frames(windows), self.gamma)
        return tf_timeline.merge_windows(calibrated, first_patches, num_patches)


class TaggerModule(tf.Module):
    """The exported graph. `dtype` of the front end and PCA: float64 (SavedModel, as the numpy reference)
    or float32 (TF-Lite)."""

    def __init__(self, vggish: VGGishFunction, head: Any, mids: list[str], names: list[str],
                 info: ExportInfo, postprocessor: Postprocessor) -> None:
        super().__init__(name="audiotag")
        from classifier.tf_head import HeadModule

        self.vggish = vggish
        self.head = HeadModule(head.member_configs, head.member_weights, head.combine,
                               head.frame_member_configs, head.frame_member_weights,
                               head.timeline.attention_exponent)
        self.timeline = TimelineScores(self.head, head.timeline.gamma)
        self.postprocessor = postprocessor
        self.mids, self.names, self.info = list(mids), list(names), info

    def embed(self, waveform: tf.Tensor, dtype: tf.DType = tf.float64) -> dict[str, tf.Tensor]:
        """waveform float32 [n] -> raw_embedding float32 [N,128], embedding uint8 [N,128], timestamps [N]."""
        raw = self.vggish(tf_frontend.waveform_to_examples(waveform, dtype))
        num_patches = tf.shape(raw)[0]
        hop = tf.constant(params.EXAMPLE_HOP_SECONDS, dtype)
        return {"raw_embedding": raw,
                "embedding": tf_frontend.postprocess(raw, self.postprocessor, dtype),
                "timestamps": tf.cast(tf.cast(tf.range(num_patches), dtype) * hop, tf.float32)}

    def window_probabilities(self, x: tf.Tensor, hop: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """x float32 [N, 128] -> the 10-patch windows `hop` patches apart float32 [W, T, 128], their first
        patches int32 [W] and the head's clip probabilities of each float32 [W, C]."""
        num_patches = tf.shape(x)[0]
        starts = window_starts(num_patches, hop)
        indices = starts[:, tf.newaxis] + tf.range(tf.minimum(num_patches, WINDOW_PATCHES))[tf.newaxis]
        windows = tf.gather(x, indices)
        return windows, starts, self.head.clip_probabilities(windows, tf.ones_like(windows[:, :, 0]))

    def scores(self, x: tf.Tensor, window_hop: int) -> tuple[tf.Tensor, tf.Tensor]:
        """x float32 [N, 128] -> clip scores float32 [C] (over windows `window_hop` patches apart: their
        maximum, or for a multiclass head their mean) and the calibrated timeline float32 [N, C] (windows at
        most 10 patches apart, as pipeline.Tagger)."""
        windows, starts, probs = self.window_probabilities(x, window_hop)
        if window_hop > WINDOW_PATCHES:
            windows, starts, frame_probs = self.window_probabilities(x, WINDOW_PATCHES)
        else:
            frame_probs = probs
        combine = tf.reduce_mean if self.info.task == "multiclass" else tf.reduce_max
        return combine(probs, axis=0), self.timeline(windows, starts, frame_probs, tf.shape(x)[0])

    def tag(self, waveform: tf.Tensor, dtype: tf.DType = tf.float64) -> dict[str, tf.Tensor]:
        """waveform float32 [n] -> scores, frame_scores, timestamps, embedding, raw_embedding."""
        out = self.embed(waveform, dtype)
        scores, frame_scores = self.scores(tf.cast(out["embedding"], tf.float32), self.info.window_hop)
        return {**out, "scores": scores, "frame_scores": frame_scores}

    def labels(self) -> dict[str, tf.Tensor]:
        return {"index": tf.range(len(self.names), dtype=tf.int32), "mid": tf.constant(self.mids),
                "name": tf.constant(self.names)}

    def metadata(self) -> dict[str, tf.Tensor]:
        info = self.info.as_dict()
        return {key: tf.constant(value, tf.int32 if isinstance(value, int) and not isinstance(value, bool)
                                 else None) for key, value in info.items()}


def build_module(checkpoint: str | os.PathLike[str] | None = None, head: Any = None, *, window_hop: int = 1,
                 allow_synthetic: bool = False, download: bool = True) -> TaggerModule:
    """Load VGGish and a head (as pipeline.Tagger takes them) into one exportable module.

    Raises ExportError for a SYNTHETIC checkpoint unless `allow_synthetic` (the export is then marked).
    """
    from vggish.checkpoint import checkpoint_status
    from vggish.download import resolve_checkpoint

    if window_hop < 1:
        raise ValueError("window_hop must be at least 1 patch")
    path = resolve_checkpoint(checkpoint, download=download)
    status = checkpoint_status(path)
    if status == "synthetic" and not allow_synthetic:
        raise ExportError(f"{path}: is a SYNTHETIC VGGish checkpoint (random weights), not the released "
                          "model; pass --allow-synthetic (allow_synthetic=True) to export it anyway, marked "
                          "synthetic")
    head = load_head(head)
    mids, names = class_table(head)
    info = ExportInfo(synthetic=status == "synthetic", vggish_checkpoint=status, head=head.name,
                      window_hop=window_hop, task=getattr(head, "task", "multilabel"))
    if info.synthetic:
        logger.warning("exporting a SYNTHETIC VGGish checkpoint: the export is marked synthetic=True")
    return TaggerModule(VGGishFunction(path), head, mids, names, info, Postprocessor())


def labels_csv(module: TaggerModule) -> str:
    """The class table as CSV text: index,mid,display_name (the layout of AudioSet's class_labels_indices)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "mid", "display_name"])
    rows = enumerate(zip(module.mids, module.names, strict=True))
    writer.writerows([i, mid, name] for i, (mid, name) in rows)
    return out.getvalue()


def _write_sidecars(folder: Path, module: TaggerModule) -> tuple[Path, Path]:
    (folder / LABELS_FILENAME).write_text(labels_csv(module), encoding="utf-8")
    (folder / INFO_FILENAME).write_text(json.dumps(module.info.as_dict(), indent=2) + "\n", encoding="utf-8")
    return folder / LABELS_FILENAME, folder / INFO_FILENAME


def _publish(tmp: Path, dest: Path) -> Path:
    """Move a finished folder into place (dest must not exist or be empty)."""
    if dest.exists():
        dest.rmdir()
    os.replace(tmp, dest)
    return dest


def check_destination(dest: Path) -> None:
    """ExportError unless `dest` is absent or an empty folder."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest}: already exists and is not an empty folder; remove it or choose another")


def export_savedmodel(out_dir: str | os.PathLike[str], module: TaggerModule | None = None,
                      **build: Any) -> Path:
    """Write the SavedModel into `out_dir` (a new or empty folder; written beside it, then moved into place).

    module: from build_module; else build_module(**build) (checkpoint, head, window_hop, allow_synthetic).
    """
    dest = Path(out_dir)
    check_destination(dest)
    module = build_module(**build) if module is None else module
    serve = tf.function(lambda waveform: module.tag(waveform), input_signature=[WAVEFORM_SPEC])
    embed = tf.function(lambda waveform: module.embed(waveform), input_signature=[WAVEFORM_SPEC])
    signatures = {"serving_default": serve, "embed": embed,
                  "labels": tf.function(module.labels, input_signature=[]),
                  "metadata": tf.function(module.metadata, input_signature=[])}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        with tempfile.TemporaryDirectory() as sidecars:
            labels_path, info_path = _write_sidecars(Path(sidecars), module)
            module.labels_asset = tf.saved_model.Asset(str(labels_path))
            module.info_asset = tf.saved_model.Asset(str(info_path))
            tf.saved_model.save(module, str(tmp), signatures=signatures)
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("SavedModel written to %s", dest)
    return dest


def tflite_bytes(module: TaggerModule, *, int8: bool = False) -> bytes:
    """Convert the float32 variant of the graph (front end and PCA in float32: TF-Lite's FFT is float32
    only) to a TF-Lite flatbuffer with built-in ops only; the waveform may have any length. int8:
    dynamic-range quantization (weights int8, activations float)."""
    serve = tf.function(lambda waveform: module.tag(waveform, tf.float32), input_signature=[WAVEFORM_SPEC])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def export_tflite(out_dir: str | os.PathLike[str], module: TaggerModule | None = None, *, int8: bool = False,
                  **build: Any) -> Path:
    """Write OUT_DIR/audiotag.tflite (and audiotag_int8.tflite when `int8`), labels.csv and
    export_info.json into `out_dir` (a new or empty folder). Returns the float32 model's path."""
    dest = Path(out_dir)
    check_destination(dest)
    module = build_module(**build) if module is None else module
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        for name, quantized in ((TFLITE_FILENAME, False), (TFLITE_INT8_FILENAME, True))[: 1 + int8]:
            (tmp / name).write_bytes(tflite_bytes(module, int8=quantized))
        _write_sidecars(tmp, module)
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("TF-Lite model written to %s", dest / TFLITE_FILENAME)
    return dest / TFLITE_FILENAME
