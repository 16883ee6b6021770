"""`audiotag train`, `audiotag evaluate` and `audiotag pack-features`: classifier heads and their features.

The options and commands of train and evaluate are in pipeline.training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli_common import EXIT_OK
from pipeline.cli_options import Command, add_labels_csv
from pipeline.training import (
    add_evaluate_arguments,
    add_train_arguments,
    evaluate_command,
    features_source,
    train_command,
)


def _pack_arguments(p: argparse.ArgumentParser) -> None:
    """SOURCE, DEST and the labels of unlabelled sources."""
    p.add_argument("source", type=Path, metavar="SOURCE")
    p.add_argument("dest", type=Path, metavar="DEST")
    add_labels_csv(p, "labels CSV for sources without labels")


def cmd_pack_features(args: argparse.Namespace) -> int:
    """`audiotag pack-features`: SOURCE features rewritten as DEST (TFRecord or HDF5)."""
    from classifier.writers import pack_features

    pack_features(features_source(args.source), args.dest, labels_csv=args.labels)
    print(f"audiotag pack-features: wrote {args.dest}", file=sys.stderr)
    return EXIT_OK


COMMANDS = (
    Command("train", train_command, add_train_arguments, help="train a classifier head",
            description="Train a head on your own sounds (a folder with one subfolder of audio per class, or "
            "a CSV `path,labels` of audio files: extracted into the run folder, the model chosen by "
            "cross-validation, a report written; exit status 3 when some files could not be read), on the "
            "AudioSet release, or on extract outputs plus a labels CSV (--labels)."),
    Command("evaluate", evaluate_command, add_evaluate_arguments, help="evaluate a classifier head",
            description="mAP, AUC and d' of a head (and accuracy, macro-F1 and the confusion matrix of a "
            "multiclass head) on labelled features or labelled audio; per-class report files."),
    Command("pack-features", cmd_pack_features, _pack_arguments, help="convert features TFRecord <-> HDF5",
            description="Convert AudioSet-format TFRecords or extract outputs to Kong's HDF5 layout and back "
            "(direction by the extension of DEST)."),
)
