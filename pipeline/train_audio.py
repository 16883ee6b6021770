"""`audiotag train` and `audiotag evaluate` on labelled audio (a folder of class folders, or a `path,labels`
CSV; pipeline.labelled_audio): the audio is extracted into the output folder (pipeline.audio_clips), then
classifier.autotrain chooses and trains a head, or classifier.evaluate scores one.

The run folder of `train DIR -o RUN`: `features/` (the extraction, with `errors.tsv`), `labels.csv`,
`training/` (the models' training runs), `head.npz` and `report/` (report.html, summary.json, cv.csv, ...).
Rerunning the same command resumes: finished files are not extracted again, finished training runs are
reused. Exit status 3 when some audio files could not be read and the command went on without them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli_common import EXIT_OK, EXIT_SOME_FAILED, UserError, checkpoint_path
from pipeline.labelled_audio import CLASS_FOLDERS, LabelledAudio, labelled_audio
from safeio.names import printable_name

if TYPE_CHECKING:
    from classifier.autotrain import AutoTrainResult
    from classifier.pretrained import Head
    from pipeline.audio_clips import AudioClips

MIN_TRAINING_CLIPS = 2  # per class: one to train on and one to test, in every cross-validation
# TrainConfig fields (command-line options) that apply to features only: the audio path chooses them itself
FEATURES_ONLY = ("holdout_fraction", "fold", "eval_every", "snapshots", "snapshot_average",
                 "ontology_smoothing", "teacher", "distill_weight")
AUTOTRAIN_OWN = ("kind", "folds", "seed", "task", "progress")  # options autotrain takes as arguments


def _option(field: str) -> str:
    """The command-line option of a TrainConfig field (hidden_units -> --hidden-units)."""
    return "--" + field.replace("_", "-")


def _refuse_feature_options(args: argparse.Namespace, given: list[str]) -> None:
    """UserError naming the options (and --labels) that apply to features only, when some were given."""
    given = given + (["--labels"] if args.labels is not None else [])
    if given:
        raise UserError(f"{', '.join(given)}: for features only; {args.features} is labelled audio, which "
                        "carries its own labels (see `audiotag train -h`)")


def _check_output(args: argparse.Namespace, audio: LabelledAudio, kind: str) -> None:
    """UserError when the output folder lies inside the folder of class folders (it would become a class)."""
    if kind != CLASS_FOLDERS:
        return
    root, out = audio.source.resolve(), Path(args.output).resolve()
    if out == root or root in out.parents:
        raise UserError(f"{args.output}: the output folder is inside {audio.source}, where every folder is a "
                        "class; choose one outside it")


def _progress(args: argparse.Namespace) -> bool:
    """Whether to show progress bars: not --no-progress, and stderr is a terminal."""
    return not args.no_progress and sys.stderr.isatty()


def _report_failures(command: str, clips: AudioClips) -> int:
    """The exit status, after saying on stderr which files were left out."""
    if not clips.failed:
        return EXIT_OK
    print(f"audiotag {command}: {len(clips.failed)} of {clips.files} audio files could not be read and were "
          f"left out (listed with the reasons in {clips.errors_path})", file=sys.stderr)
    return EXIT_SOME_FAILED


def comparison_text(result: AutoTrainResult) -> str:
    """The comparison table of an autotrain result as text, the chosen model starred."""
    from classifier.crossval import METRICS

    metrics = METRICS[result.task]
    lines = ["  " + f"{'model':20s}" + "".join(f"{m:>18s}" for m in metrics) + f"{'s/fit':>8s}"]
    for r in result.results:
        mark = "*" if r.name == result.chosen else " "
        cells = "".join(f"{f'{r.mean(m):.3f} ± {r.std(m):.3f}':>18s}" for m in metrics)
        lines.append(f"{mark} {r.name:20s}{cells}{r.fit_seconds:8.1f}")
    return "\n".join(lines)


def train_on_audio(args: argparse.Namespace, settings: dict[str, object], kind: str) -> int:
    """`audiotag train DIR|CSV -o RUN`: extract, choose and train (see the module docstring)."""
    from classifier.autotrain import autotrain
    from classifier.crossval import AUTO_MODEL
    from classifier.tasks import AUTO_TASK
    from pipeline.audio_clips import audio_clips
    from safeio.lock import FolderLock

    _refuse_feature_options(args, [_option(f) for f in FEATURES_ONLY if f in settings])
    audio = labelled_audio(args.features, kind)
    _check_output(args, audio, kind)
    with FolderLock(args.output, wait=args.wait):  # refused at once, before the model is loaded
        clips = audio_clips(audio, Path(args.output), checkpoint_path(args), audio.classes,
                            min_clips=MIN_TRAINING_CLIPS, progress=_progress(args))
        result = autotrain(
            clips.clipset, args.output, task=args.task or AUTO_TASK, model=args.kind or AUTO_MODEL,
            folds=args.folds, settings={k: v for k, v in settings.items() if k not in AUTOTRAIN_OWN},
            seed=args.seed or 0, source=printable_name(audio.source), progress=_progress(args),
            extra={"files": clips.files, "files_failed": len(clips.failed), "errors": str(clips.errors_path)},
            failed=clips.failed)
    data = clips.clipset
    print(f"audiotag train: {len(data)} clips, {data.num_classes} classes ({result.task}); "
          f"{result.evaluation.scheme}:")
    print(comparison_text(result))
    print(f"chosen: {result.chosen} ({result.reason})")
    print(f"head:   {result.head_path}")
    print(f"report: {result.report_dir / 'report.html'}")
    return _report_failures("train", clips)


def evaluate_on_audio(args: argparse.Namespace, kind: str, head: Head) -> tuple[dict, int]:
    """`audiotag evaluate DIR|CSV --head H -o OUT`: extract into OUT, score with ``head``; returns the
    summary to print and the exit status."""
    from classifier.evaluate import evaluate_head
    from pipeline.audio_clips import audio_clips

    _refuse_feature_options(args, [])
    audio = labelled_audio(args.features, kind)
    unknown = sorted(set(audio.classes) - set(head.class_names))
    if unknown:
        raise UserError(f"{audio.source}: class(es) the head {head.name!r} does not know: "
                        f"{', '.join(printable_name(n) for n in unknown)}")
    clips = audio_clips(audio, Path(args.output), checkpoint_path(args), head.class_names, min_clips=0)
    evaluate_head(head, clips.clipset, args.output)
    summary = json.loads((Path(args.output) / "summary.json").read_text(encoding="utf-8"))
    summary |= {"clips": len(clips.clipset), "files_failed": len(clips.failed), "report": str(args.output)}
    return summary, _report_failures("evaluate", clips)
