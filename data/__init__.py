"""audiotag's runtime data, installed as the package ``audiotag_data``.

Files: ``class_labels_indices.csv`` and ``ontology.json`` (the AudioSet label table and ontology),
``vggish_pca_params.npz`` (the released VGGish PCA parameters) and ``heads/`` (the shipped classifier
heads and their model card). Every package finds them through :func:`data_dir`.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

DATA_DIR_ENV = "AUDIOTAG_DATA_DIR"


class DataDirError(RuntimeError):
    """The installed data files cannot be reached as ordinary files (e.g. a zipped install)."""


def data_dir() -> Path:
    """The folder of audiotag's data files: ``$AUDIOTAG_DATA_DIR`` when set, else this installed package."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    root = files(__name__)
    if not isinstance(root, Path):
        raise DataDirError(
            f"audiotag's data files are inside {root} and not on the file system; install audiotag "
            f"unzipped (pip does) or set {DATA_DIR_ENV} to a folder holding them"
        )
    return root
