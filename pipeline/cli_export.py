"""`audiotag export`: the whole tagger as a SavedModel and/or a TF-Lite model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli_common import EXIT_OK, checkpoint_path
from pipeline.cli_options import Command, add_format, add_head, add_window_hop


def _export_arguments(p: argparse.ArgumentParser) -> None:
    """OUT_DIR, the head and the model formats."""
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    add_head(p)
    add_format(p, ("savedmodel", "tflite", "all"))
    add_window_hop(p, over="inputs, as in `tag`")
    p.add_argument(
        "--allow-synthetic",
        action="store_true",
        help="export even a SYNTHETIC checkpoint (tests only); the export is then marked synthetic",
    )
    p.add_argument("--tflite-int8", action="store_true", help="also a dynamic-range int8 TF-Lite model")


def cmd_export(args: argparse.Namespace) -> int:
    """`audiotag export`: refuses a used destination at once, then builds and writes the graph(s)."""
    from pipeline import export

    out = args.out_dir
    targets = {"savedmodel": [export.SAVEDMODEL_DIRNAME], "tflite": [export.TFLITE_DIRNAME],
               "all": [export.SAVEDMODEL_DIRNAME, export.TFLITE_DIRNAME]}[args.format]
    for name in targets:  # before the slow part: refuse a used folder at once
        export.check_destination(out / name)
    module = export.build_module(checkpoint_path(args), args.head, window_hop=args.window_hop,
                                 allow_synthetic=args.allow_synthetic)
    if export.SAVEDMODEL_DIRNAME in targets:
        path = export.export_savedmodel(out / export.SAVEDMODEL_DIRNAME, module)
        print(f"audiotag export: SavedModel -> {path}", file=sys.stderr)
    if export.TFLITE_DIRNAME in targets:
        path = export.export_tflite(out / export.TFLITE_DIRNAME, module, int8=args.tflite_int8)
        print(f"audiotag export: TF-Lite -> {path.parent}", file=sys.stderr)
    if module.info.synthetic:
        print("audiotag export: the export is from a SYNTHETIC checkpoint and is marked synthetic",
              file=sys.stderr)
    return EXIT_OK


COMMANDS = (
    Command("export", cmd_export, _export_arguments,
            help="export the tagger as a SavedModel (TF Serving) and/or TF-Lite model",
            description="Write the whole tagger (16 kHz waveform -> log-mel -> VGGish -> head -> scores) as "
            "one TensorFlow graph: OUT_DIR/savedmodel and/or OUT_DIR/tflite (each must be new or empty)."),
)
