"""Checking VGGish checkpoints before use: readable, complete, right shapes; and where one came from.

Both TensorFlow checkpoint formats are accepted: the released vggish_model.ckpt is a TF1 "V1"
single file (Google restores it with a Saver using write_version=1), and a V2 checkpoint is
given by its prefix (`PREFIX.index` + `PREFIX.data-*`). Every variable of the released VGGish
graph must be present with the released shape; extra variables (e.g. a global_step or optimizer
slots) are allowed and ignored, as Google's loader restores only the VGGish variables by name.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

from vggish import layout, params, synthetic
from vggish.errors import CheckpointError
from vggish.hashing import sha256_file

logger = logging.getLogger(__name__)


def _exists(path: Path) -> bool:
    return path.is_file() or Path(f"{path}.index").is_file()


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files holding a checkpoint: the V1 file itself, or a V2 prefix's index and data files (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(path.parent.glob(f"{glob.escape(path.name)}.index")) + sorted(
        path.parent.glob(f"{glob.escape(path.name)}.data-*"))


def checkpoint_status(path: str | Path) -> str:
    """"missing" | "verified-release" (size and sha256 of the released file) | "synthetic" (marker
    file present) | "unverified" (anything else). Hashes the file only when its size matches."""
    path = Path(path)
    if not _exists(path):
        return "missing"
    is_release_size = path.is_file() and path.stat().st_size == params.CHECKPOINT_SIZE_BYTES
    if is_release_size and sha256_file(path) == params.CHECKPOINT_SHA256:
        return "verified-release"
    if synthetic.marker_path(path).is_file():
        return "synthetic"
    return "unverified"


def check_present(path: str | Path) -> None:
    """CheckpointError for what is visible without reading the checkpoint (nor importing TensorFlow): a
    directory, no file, an empty file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(path, "is a directory; give the checkpoint file (or a V2 checkpoint prefix)")
    if not _exists(path):
        raise CheckpointError(path, "file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(path, "file is empty (0 bytes): an interrupted download?")


def read_variable_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Variable names and shapes stored in a checkpoint (V1 file or V2 prefix), without loading values."""
    path = Path(path)
    check_present(path)
    import tensorflow as tf  # deferred: checkpoint_status() does not need TensorFlow

    try:
        reader = tf.compat.v1.train.NewCheckpointReader(str(path))
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            path, f"not a readable TensorFlow checkpoint: truncated or corrupt ({detail})"
        ) from exc
    return {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}


def validate_checkpoint(path: str | Path) -> None:
    """Raise CheckpointError unless `path` holds every released VGGish variable with its released shape."""
    path = Path(path)
    found = read_variable_shapes(path)
    expected = layout.expected_variables()
    missing = sorted(set(expected) - set(found))
    if missing:
        raise CheckpointError(
            path, f"wrong layout: {len(missing)} VGGish variable(s) missing, e.g. {', '.join(missing[:3])}"
        )
    wrong = [f"{name} is {list(found[name])}, expected {list(shape)}"
             for name, shape in expected.items() if found[name] != shape]
    if wrong:
        raise CheckpointError(path, f"wrong layout: {'; '.join(wrong[:3])}")
    extra = sorted(set(found) - set(expected))
    if extra:
        logger.info("%s: ignoring %d variable(s) that VGGish does not use: %s", path, len(extra),
                    ", ".join(extra[:5]))
