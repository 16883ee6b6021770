"""What `audiotag train` and `audiotag evaluate` were given: labelled audio or features, told apart here.

Labelled audio is either
- a folder of class folders: each direct subfolder is a class, named as the folder, holding its audio
  files (AUDIO_EXTENSIONS, searched recursively; clip ids `class/.../file`, as `extract` gives them), or
- a CSV with the header `path,labels`: an audio file per row (paths relative to the CSV's folder) and its
  labels, comma-separated in one field as in the labels CSV of `--labels` (a clip id is the path as written,
  normalised).

Features are what classifier.readers reads: a folder with .tfrecord files, an extract output (embeddings.h5,
or .npz files below it), an HDF5 or TFRecord file, or a glob. A folder holding both audio class folders and
features, audio files outside any class folder, a class folder without audio, or a folder with neither, is
an error that names what was found.
"""

from __future__ import annotations

import glob
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.inputs import AUDIO_EXTENSIONS, AudioInput, collect_inputs
from safeio.names import printable_name

CLASS_FOLDERS = "class_folders"
AUDIO_CSV = "audio_csv"
FEATURES = "features"
FEATURE_FILE_SUFFIXES = (".tfrecord", ".tfrecords", ".h5", ".hdf5")
EXTRACT_HDF5 = "embeddings.h5"
CSV_KEY = "path"  # the first column of an audio CSV
EXAMPLES_SHOWN = 3  # file or folder names quoted in an error message


@dataclass(frozen=True)
class LabelledAudio:
    """Audio files and their labels: ``inputs`` (path, clip id) in a stable order, ``labels`` {clip id:
    class names}, ``classes`` sorted, ``source`` the folder or CSV they came from."""

    inputs: list[AudioInput]
    labels: dict[str, list[str]]
    classes: list[str]
    source: Path


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and _visible(path) and path.is_file()


def _has_audio(folder: Path) -> bool:
    """Whether an audio file lies anywhere below ``folder`` (hidden files and folders skipped)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(_is_audio(Path(root) / name) for name in files):
            return True
    return False


def _feature_files(folder: Path) -> list[str]:
    """What makes ``folder`` a features folder: its TFRecord files, an extract HDF5, .npz files below it."""
    found = [p.name for p in folder.iterdir() if p.suffix in FEATURE_FILE_SUFFIXES[:2] and p.is_file()]
    if (folder / EXTRACT_HDF5).is_file():
        found.append(EXTRACT_HDF5)
    npz = next((p for p in folder.rglob("*.npz") if not any(part.startswith(".")
                                                            for part in p.relative_to(folder).parts)), None)
    if npz is not None:
        found.append(npz.relative_to(folder).as_posix())
    return found


def _names(items: list[str]) -> str:
    shown = ", ".join(printable_name(i) for i in items[:EXAMPLES_SHOWN])
    return shown + (f" and {len(items) - EXAMPLES_SHOWN} more" if len(items) > EXAMPLES_SHOWN else "")


def input_kind(path: str | os.PathLike[str]) -> str:
    """CLASS_FOLDERS, AUDIO_CSV or FEATURES for a train / evaluate input; PipelineError naming the path and
    what was found when it is none of them or several."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return AUDIO_CSV
        if path.suffix.lower() in FEATURE_FILE_SUFFIXES:
            return FEATURES
        raise PipelineError(f"{printable_name(path)}: not a folder of class folders, a `path,labels` CSV or "
                            "features (.tfrecord, .h5)")
    if not path.is_dir():
        if glob.has_magic(str(path)):
            return FEATURES
        raise PipelineError(f"{printable_name(path)}: no such file or directory")
    features = _feature_files(path)
    classes = [p for p in sorted(path.iterdir()) if p.is_dir() and _visible(p)]
    with_audio = [p for p in classes if _has_audio(p)]
    loose = [p.name for p in sorted(path.iterdir()) if _is_audio(p)]
    if features and (with_audio or loose):
        audio = _names([p.name for p in with_audio] or loose)
        raise PipelineError(f"{printable_name(path)}: holds both audio ({audio}) and features "
                            f"({_names(features)}); pass a folder of class folders of audio, or a features "
                            "folder, not both")
    if features:
        return FEATURES
    if loose:
        raise PipelineError(f"{printable_name(path)}: {len(loose)} audio file(s) outside any class folder "
                            f"({_names(loose)}); put each file in a subfolder named after its class")
    if not with_audio:
        raise PipelineError(f"{printable_name(path)}: no features in this folder (.tfrecord, .h5, .npz) and "
                            "no class folders of audio")
    empty = [p.name for p in classes if p not in with_audio]
    if empty:
        raise PipelineError(f"{printable_name(path)}: class folder(s) without audio files: {_names(empty)}; "
                            "add clips to them or remove them")
    return CLASS_FOLDERS


def class_folders(root: str | os.PathLike[str]) -> LabelledAudio:
    """The audio below ``root``'s class folders (checked by :func:`input_kind`), each labelled with its
    folder's name."""
    root = Path(root)
    inputs = [item for item in collect_inputs([root]) if not item.clip_id.startswith(".")]  # hidden folders
    labels = {item.clip_id: [item.clip_id.split("/", 1)[0]] for item in inputs}
    classes = sorted({names[0] for names in labels.values()})
    return LabelledAudio(inputs, labels, classes, root)


def audio_csv(path: str | os.PathLike[str]) -> LabelledAudio:
    """The audio files of a `path,labels` CSV and their labels (LabelsError for a malformed CSV; a missing
    file is reported by the extraction, as any unreadable audio)."""
    from classifier.labels import read_labels_csv

    path = Path(path)
    rows = read_labels_csv(path, key=CSV_KEY)
    if not rows:
        raise PipelineError(f"{printable_name(path)}: no audio files listed (header `path,labels`, then one "
                            "file and its labels per line)")
    inputs, labels = [], {}
    for written, names in rows.items():
        clip_id = printable_name(posixpath.normpath(written.replace(os.sep, "/")).lstrip("/"))
        if clip_id in labels:
            raise PipelineError(f"{printable_name(path)}: {written!r} names the same file as another row")
        file = Path(written) if Path(written).is_absolute() else path.parent / written
        inputs.append(AudioInput(file, clip_id))
        labels[clip_id] = names
    classes = sorted({name for names in labels.values() for name in names})
    if not classes:
        raise PipelineError(f"{printable_name(path)}: no file has a label")
    return LabelledAudio(inputs, labels, classes, path)


def labelled_audio(path: str | os.PathLike[str], kind: str) -> LabelledAudio:
    """The labelled audio of ``path``, whose kind (CLASS_FOLDERS or AUDIO_CSV) :func:`input_kind` gave."""
    return class_folders(path) if kind == CLASS_FOLDERS else audio_csv(path)
