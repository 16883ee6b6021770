"""`audiotag train` and `audiotag evaluate`: classifier heads over labelled audio, the AudioSet release or
extract outputs.

DATA is labelled audio (a folder of class folders, or a `path,labels` CSV of audio files: extracted into the
output folder, then pipeline.train_audio) or FEATURES. FEATURES is an AudioSet-format TFRecord folder / file /
glob (the release, or `extract --format tfrecord` output), an HDF5 file (Kong's layout or `extract --format
hdf5`; an extract output folder holding `embeddings.h5` works too) or an `extract --format npz` folder.
Features without labels in them (extract outputs) need `--labels CSV` (header `id,labels`, ids = the clip
ids of the extract run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from classifier.crossval import AUTO_MODEL, CANDIDATES, DEFAULT_FOLDS, SMALL_DATA_CLIPS
from classifier.head_file import TASKS
from classifier.inference import (
    ATTENTIONS,
    CONTEXT_KINDS,
    MODEL_KINDS,
    TRANSFORMER_LAYERS,
    TRANSFORMER_NUM_HEADS,
)
from classifier.tasks import AUTO_TASK
from pipeline.cli_common import UserError
from pipeline.cli_options import add_engine, add_head, add_labels_csv, add_output_folder, add_wait


def features_source(path: str | Path) -> str:
    """What the readers should open for FEATURES: an extract folder's embeddings.h5, else FEATURES itself."""
    from pipeline.writers import HDF5_NAME  # here: building the CLI's parser must not import the writers

    candidate = Path(path)
    if candidate.is_dir() and (candidate / HDF5_NAME).is_file():
        return str(candidate / HDF5_NAME)
    return str(path)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `audiotag train` (defaults: for audio, the small-data settings of classifier.crossval; for
    features, the reference recipe of classifier.train.TrainConfig)."""
    parser.add_argument("features", metavar="DATA",
                        help="a folder with one subfolder of audio per class, a CSV `path,labels` of audio "
                        "files, or features (see the description)")
    add_output_folder(parser, "run folder: the head (head.npz), its report, checkpoints and, for audio, the "
                      "extracted features (rerun to resume)")
    add_labels_csv(
        parser,
        "labels CSV (id,labels) of FEATURES: train on its own label set (any classes) and report on a "
        "held-out part; without it, FEATURES must carry AudioSet labels",
    )
    parser.add_argument(
        "--model",
        dest="kind",
        default=None,
        choices=(AUTO_MODEL, *MODEL_KINDS),
        help=f"the model kind; {AUTO_MODEL} (audio only, its default): the best of "
        f"{', '.join(CANDIDATES)} by cross-validation",
    )
    parser.add_argument(
        "--task", default=None, choices=(AUTO_TASK, *TASKS),
        help=f"multiclass (one label per clip: softmax, accuracy), multilabel (sigmoid, mAP) or {AUTO_TASK} "
        "(audio only, its default: multiclass when every clip has exactly one label)",
    )
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument(
        "--lr-schedule", default=None, choices=("constant", "cosine"),
        help="constant, or cosine decay to 0 over --iterations",
    )
    parser.add_argument("--hidden-units", type=int, default=None)
    parser.add_argument("--num-layers", type=int, default=None)
    parser.add_argument("--dropout", type=float, default=None)
    parser.add_argument(
        "--num-heads", type=int, default=None,
        help=f"--model transformer: attention heads per block ({TRANSFORMER_NUM_HEADS}); must divide "
        "--hidden-units",
    )
    parser.add_argument(
        "--transformer-layers", type=int, default=None,
        help=f"--model transformer: encoder blocks over the frames ({TRANSFORMER_LAYERS})",
    )
    parser.add_argument(
        "--attention", default=None, choices=ATTENTIONS,
        help="attention weights over the frames: normalised sigmoid (the papers', default) or a softmax "
        "over time",
    )
    parser.add_argument(
        "--context", action="store_true", default=None,
        help="the output layers also read the mean of each frame's two neighbours "
        f"(--model {', '.join(CONTEXT_KINDS)})",
    )
    parser.add_argument(
        "--holdout-fraction",
        type=float,
        default=None,
        help="part of the training clips held out for model selection",
    )
    parser.add_argument(
        "--folds", type=int, default=None, metavar="K",
        help=f"audio: compare the models by stratified K-fold cross-validation (default {DEFAULT_FOLDS} when "
        f"a class has fewer than {SMALL_DATA_CLIPS} clips, else a held-out part); features: hold out fold "
        "--fold of a stratified K-fold split instead of --holdout-fraction (K runs, --fold 0..K-1)",
    )
    parser.add_argument("--fold", type=int, default=None, metavar="I", help="with --folds: the held-out fold")
    parser.add_argument(
        "--eval-every", type=int, default=None, help="iterations between held-out evaluations"
    )
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--snapshots", type=int, default=None, help="snapshots averaged into the head")
    parser.add_argument("--mixup-alpha", type=float, default=None, help="mixup Beta(alpha, alpha); 0 = off")
    parser.add_argument(
        "--label-smoothing", type=float, default=None, help="targets become y(1 - s) + s/2; 0 = off"
    )
    parser.add_argument(
        "--smoothing-target", default=None, choices=("half", "prior"),
        help="label smoothing toward 0.5 (half) or toward each class's frequency (prior)",
    )
    parser.add_argument(
        "--frame-dropout", type=float, default=None, help="drop each 1-s frame with this probability"
    )
    parser.add_argument(
        "--time-mask", type=int, default=None, help="mask up to N consecutive frames per clip"
    )
    parser.add_argument(
        "--input-dropout", type=float, default=None, help="dropout on the 128 embedding dimensions"
    )
    parser.add_argument(
        "--ontology-smoothing", type=float, default=None,
        help="raise the targets of the labels' ontology ancestors to at least this value",
    )
    parser.add_argument(
        "--teacher", default=None, metavar="HEAD",
        help="distil: mix this head's probabilities on the training clips into the targets",
    )
    parser.add_argument(
        "--distill-weight", type=float, default=None, help="teacher's share of the targets (0.5)"
    )
    parser.add_argument(
        "--snapshot-average", default=None, choices=("predictions", "weights"),
        help="combine the chosen snapshots as members (predictions) or as one member of mean weights",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    add_wait(parser)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `audiotag evaluate`."""
    parser.add_argument("features", metavar="DATA",
                        help="labelled audio (a folder of class folders, a CSV `path,labels`) or features")
    add_head(parser)
    add_output_folder(parser, "report folder: summary.json, per_class.csv/json, ap_vs_train_count.png (and "
                      "confusion.csv/png for multiclass heads; for audio, the extracted features)")
    add_labels_csv(parser, "labels CSV (id,labels) for unlabelled features")
    add_engine(parser)


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """TrainConfig fields the user set on the command line."""
    names = (
        "kind",
        "iterations",
        "batch_size",
        "learning_rate",
        "lr_schedule",
        "hidden_units",
        "num_layers",
        "dropout",
        "num_heads",
        "transformer_layers",
        "attention",
        "context",
        "holdout_fraction",
        "folds",
        "fold",
        "eval_every",
        "checkpoint_every",
        "snapshots",
        "mixup_alpha",
        "label_smoothing",
        "smoothing_target",
        "frame_dropout",
        "time_mask",
        "input_dropout",
        "ontology_smoothing",
        "teacher",
        "distill_weight",
        "snapshot_average",
        "seed",
        "task",
    )
    values = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    values["progress"] = not args.no_progress and sys.stderr.isatty()
    return values


def train_command(args: argparse.Namespace) -> int:
    """Labelled audio: pipeline.train_audio (extract, choose by cross-validation, report). Features with
    --labels: classifier.retrain (the CSV's own label set, held-out report). Features alone: classifier.train
    on the labels stored in FEATURES (the AudioSet release). Prints the head's path (and held-out metrics)."""
    from pipeline.labelled_audio import FEATURES, input_kind
    from safeio.lock import FolderLock

    kind = input_kind(args.features)
    if kind != FEATURES:
        from pipeline.train_audio import train_on_audio

        return train_on_audio(args, _overrides(args), kind)
    for option, given, auto in (("--task", args.task, AUTO_TASK), ("--model", args.kind, AUTO_MODEL)):
        if given == auto:
            raise UserError(f"{option} {auto}: for labelled audio only; with features, name the "
                            f"{option.lstrip('-')} (see `audiotag train -h`)")
    source = features_source(args.features)
    with FolderLock(args.output, wait=args.wait):  # refused at once, before the features are loaded
        if args.labels is not None:
            from classifier.retrain import retrain

            result = retrain(source, args.labels, args.output, **_overrides(args))
            summary: dict[str, object] = {"head": str(result.head_path)}
            if result.metrics is not None:
                summary.update(_metrics_summary(result.metrics), report=str(result.report_dir))
            else:
                summary["notes"] = ["no held-out part (too few clips, or --holdout-fraction 0): no report"]
            _print_json(summary)
            return 0
        from classifier.train import TrainConfig, train

        known = {f.name for f in dataclasses.fields(TrainConfig)}
        settings = {"train_data": source, "out_dir": str(args.output), **_overrides(args)}
        head_path = train(TrainConfig(**{k: v for k, v in settings.items() if k in known}))
    _print_json({"head": str(head_path)})
    return 0


def _print_json(summary: dict[str, object]) -> None:
    """Strict JSON on stdout (no NaN or Infinity: json_safe turns them into null)."""
    from classifier.report import json_safe

    print(json.dumps(json_safe(summary), indent=2, allow_nan=False))


def _metrics_summary(metrics: object) -> dict[str, object]:
    """The scalar metrics (null where they cannot be computed) and notes saying why."""
    summary: dict[str, object] = {
        "mAP": float(metrics.mAP),
        "mAUC": float(metrics.mAUC),
        "d_prime": float(metrics.d_prime),
        "classes_used": int(metrics.n_classes_used),
        "classes_excluded": int(metrics.n_classes_excluded),
    }
    notes = metrics.notes()
    if notes:
        summary["notes"] = notes
    return summary


def evaluate_command(args: argparse.Namespace) -> int:
    """Score DATA with a head and write the evaluation report; prints the summary as JSON (exit status 3
    when some audio files could not be read)."""
    from classifier.evaluate import evaluate_head
    from classifier.readers import load_clipset
    from pipeline.labelled_audio import FEATURES, input_kind
    from pipeline.tagger import load_head

    head = load_head(args.head, args.engine)
    kind = input_kind(args.features)
    if kind != FEATURES:
        from pipeline.train_audio import evaluate_on_audio

        summary, status = evaluate_on_audio(args, kind, head)
        _print_json(summary)
        return status
    clipset = load_clipset(
        features_source(args.features), labels_csv=args.labels, class_names=list(head.class_names)
    )
    metrics = evaluate_head(head, clipset, args.output)
    summary = {**_metrics_summary(metrics), "clips": len(clipset), "report": str(args.output)}
    if head.task == "multiclass":
        written = json.loads((Path(args.output) / "summary.json").read_text(encoding="utf-8"))
        summary |= {key: written[key] for key in ("accuracy", "macro_F1") if key in written}
    _print_json(summary)
    return 0
