"""Readers for AudioSet-format embeddings: the TFRecord release (tf.data), HDF5 layouts, extract outputs.

Every reader returns clips of at most 10 frames (≈1 s each): shorter clips are zero-padded with a False mask,
longer clips keep their first 10 frames only.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from classifier.clipset import EMBEDDING_SIZE, MAX_FRAMES, ClipSet, pad_clips
from classifier.labels import ClassLabels, LabelsError, load_class_labels, read_labels_csv
from safeio.atomic import atomic_output

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
HDF5_SUFFIXES = (".h5", ".hdf5")


class ReaderError(ValueError):
    """An embeddings file or directory is missing, unreadable or not in the expected layout; names it."""


# --------------------------------------------------------------------------------------------- file lists


def tfrecord_files(source: PathLike | Sequence[PathLike]) -> list[Path]:
    """Resolve a TFRecord source to a sorted list of shard files.

    source: a directory (its *.tfrecord / *.tfrecords files, not recursive), a glob pattern, one file,
    or a sequence of any of those.
    """
    if not isinstance(source, (str, os.PathLike)):
        files = [f for item in source for f in tfrecord_files(item)]
        if not files:
            raise ReaderError(f"no TFRecord files in {list(source)!r}")
        return files
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in TFRECORD_SUFFIXES and p.is_file())
        if not files:
            raise ReaderError(f"{path}: directory contains no .tfrecord files")
        return files
    if path.is_file():
        return [path]
    if glob.has_magic(str(source)):
        files = sorted(Path(p) for p in glob.glob(str(source)) if Path(p).is_file())
        if not files:
            raise ReaderError(f"{source}: glob pattern matches no files")
        return files
    raise ReaderError(f"{path}: no such file or directory")


# ------------------------------------------------------------------------------------- TFRecord (tf.data)


def _context_spec() -> dict:
    import tensorflow as tf

    return {
        "video_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "start_time_seconds": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        "end_time_seconds": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        "labels": tf.io.VarLenFeature(tf.int64),
    }


def _sequence_spec() -> dict:
    import tensorflow as tf

    return {"audio_embedding": tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)}


def audioset_dataset(
    files: PathLike | Sequence[PathLike],
    *,
    num_classes: int = 527,
    multi_hot_float: bool = False,
    file_shard: tuple[int, int] | None = None,
    num_parallel_reads: int = 4,
    num_parallel_calls: int = 2,
):
    """Stream AudioSet SequenceExamples as a tf.data.Dataset, one clip per element, nothing held in memory.

    files: directory / glob / file / list (see tfrecord_files); scales to the 2-million-clip release.
    Shards are read in sorted order, `num_parallel_reads` at a time (interleaved deterministically).
    file_shard=(count, index) keeps every count-th shard file starting at index (cheap worker sharding);
    record-level sharding works too: `dataset.shard(count, index)`. Shuffle / batch as usual.

    Elements are tuples (x uint8 [10,128], mask bool [10], y [num_classes] bool (float32 multi-hot when
    multi_hot_float), video_id string). Clips longer than 10 frames keep their first 10. A label index
    outside [0, num_classes) or an embedding frame that is not 128 bytes fails the pipeline
    (tf.errors.InvalidArgumentError).
    """
    import tensorflow as tf

    paths = [str(p) for p in tfrecord_files(files)]
    if file_shard is not None:
        count, index = file_shard
        if not paths[index::count]:
            raise ReaderError(f"file_shard {file_shard}: no shard files left out of {len(paths)}")
        paths = paths[index::count]
    context_spec, sequence_spec = _context_spec(), _sequence_spec()

    def parse(serialized):
        context, sequence = tf.io.parse_single_sequence_example(
            serialized, context_features=context_spec, sequence_features=sequence_spec
        )
        frames = sequence["audio_embedding"][:MAX_FRAMES]
        labels = context["labels"].values
        checks = [
            tf.debugging.assert_equal(tf.strings.length(frames), EMBEDDING_SIZE,
                                      message="audio_embedding frame is not 128 bytes"),
            tf.debugging.assert_less(labels, tf.constant(num_classes, tf.int64),
                                     message="label index too large"),
            tf.debugging.assert_non_negative(labels, message="negative label index"),
        ]
        with tf.control_dependencies(checks):
            t = tf.shape(frames)[0]
            x = tf.reshape(tf.io.decode_raw(frames, tf.uint8), [-1, EMBEDDING_SIZE])
        x = tf.ensure_shape(tf.pad(x, [[0, MAX_FRAMES - t], [0, 0]]), [MAX_FRAMES, EMBEDDING_SIZE])
        mask = tf.ensure_shape(tf.range(MAX_FRAMES) < t, [MAX_FRAMES])
        counts = tf.reduce_sum(tf.one_hot(labels, num_classes, dtype=tf.float32), axis=0)
        y = tf.ensure_shape(tf.minimum(counts, 1.0), [num_classes])
        if not multi_hot_float:
            y = y > 0
        return x, mask, y, context["video_id"]

    dataset = tf.data.TFRecordDataset(paths, num_parallel_reads=min(num_parallel_reads, len(paths)))
    return dataset.map(parse, num_parallel_calls=num_parallel_calls, deterministic=True)


def _raise_for_bad_shard(paths: Sequence[Path], exc: Exception) -> None:
    """After a tf.data failure, find the first shard that does not parse and raise a ReaderError naming it."""
    import tensorflow as tf

    context_spec, sequence_spec = _context_spec(), _sequence_spec()

    def parse_batch(serialized):
        return tf.io.parse_sequence_example(serialized, context_features=context_spec,
                                            sequence_features=sequence_spec)[2]

    for path in paths:
        try:
            for _ in tf.data.TFRecordDataset(str(path)).batch(1024).map(parse_batch):
                pass
        except tf.errors.OpError as shard_exc:
            message = (shard_exc.message or str(shard_exc)).splitlines()[0]
            raise ReaderError(f"{path}: not a readable AudioSet SequenceExample TFRecord: {message}") from exc
    raise ReaderError(f"reading {_describe(paths)} failed: {exc}") from exc


@dataclass
class ClipBatch:
    """A batch of parsed clips: x uint8 [B,10,128], mask bool [B,10], y bool [B,C], ids str [B],
    start/end float64 [B] seconds."""

    x: np.ndarray
    mask: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    start: np.ndarray
    end: np.ndarray


def iter_tfrecord_batches(
    files: PathLike | Sequence[PathLike], num_classes: int = 527, *, batch_size: int = 2048
) -> Iterator[ClipBatch]:
    """Stream AudioSet TFRecords as numpy batches with vectorized parsing (fast; memory ~ one batch).

    Shards are read 16 at a time, interleaved deterministically. Raises ReaderError naming the shard
    (corrupt record, not a SequenceExample) or the clip (label index out of range, embedding not 128 bytes).
    """
    import tensorflow as tf

    paths = tfrecord_files(files)
    context_spec, sequence_spec = _context_spec(), _sequence_spec()

    def parse_batch(serialized):
        context, sequence, lengths = tf.io.parse_sequence_example(
            serialized, context_features=context_spec, sequence_features=sequence_spec
        )
        frames = sequence["audio_embedding"]
        n = lengths["audio_embedding"]
        real = tf.range(tf.shape(frames)[1], dtype=tf.int64)[None, :] < n[:, None]
        bad_size = tf.reduce_any(real & (tf.strings.length(frames) != EMBEDDING_SIZE), axis=1)
        x = tf.io.decode_raw(frames[:, :MAX_FRAMES], tf.uint8, fixed_length=EMBEDDING_SIZE)
        labels = context["labels"]
        return (x, n, labels.indices[:, 0], labels.values, context["video_id"],
                context["start_time_seconds"], context["end_time_seconds"], bad_size)

    dataset = tf.data.TFRecordDataset([str(p) for p in paths], num_parallel_reads=min(16, len(paths)))
    dataset = dataset.batch(batch_size).map(parse_batch, num_parallel_calls=2).prefetch(2)
    iterator = dataset.as_numpy_iterator()
    truncated = 0
    while True:
        try:
            x, n, label_rows, values, vid, start, end, bad_size = next(iterator)
        except StopIteration:
            if truncated:
                logger.warning("%s: %d clips are longer than %d frames and keep their first %d",
                               _describe(paths), truncated, MAX_FRAMES, MAX_FRAMES)
            return
        except tf.errors.OpError as exc:
            _raise_for_bad_shard(paths, exc)
        ids = np.array([v.decode("utf-8", errors="replace") for v in vid], dtype=str)
        if bad_size.any():
            raise ReaderError(f"clip {ids[bad_size.argmax()]!r} in {_describe(paths)}: an audio_embedding "
                              f"frame is not {EMBEDDING_SIZE} bytes")
        out_of_range = (values < 0) | (values >= num_classes)
        if out_of_range.any():
            k = int(out_of_range.argmax())
            raise ReaderError(f"clip {ids[label_rows[k]]!r} in {_describe(paths)}: label index {values[k]} "
                              f"outside 0..{num_classes - 1}")
        padded = np.zeros((len(x), MAX_FRAMES, EMBEDDING_SIZE), np.uint8)
        padded[:, : x.shape[1]] = x
        y = np.zeros((len(x), num_classes), bool)
        y[label_rows, values] = True
        mask = np.arange(MAX_FRAMES)[None, :] < n[:, None]
        truncated += int((n > MAX_FRAMES).sum())
        yield ClipBatch(x=padded, mask=mask, y=y, ids=ids, start=start.astype(np.float64),
                        end=end.astype(np.float64))


def _describe(paths: Sequence[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{len(paths)} shards under {paths[0].parent}"


def _empty_batch(num_classes: int) -> ClipBatch:
    return ClipBatch(
        x=np.zeros((0, MAX_FRAMES, EMBEDDING_SIZE), np.uint8), mask=np.zeros((0, MAX_FRAMES), bool),
        y=np.zeros((0, num_classes), bool), ids=np.zeros(0, str), start=np.zeros(0), end=np.zeros(0),
    )


def _concat_batches(batches: Sequence[ClipBatch], num_classes: int) -> ClipBatch:
    if not batches:
        return _empty_batch(num_classes)
    return ClipBatch(*(np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(ClipBatch)))


# ------------------------------------------------------------------------------------ HDF5 / npz inputs


def _open_hdf5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ReaderError(f"{path}: not a readable HDF5 file: {exc}") from exc


def _decode_ids(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=str)


def read_kong_hdf5(path: PathLike) -> tuple[ClipBatch, list[str] | None]:
    """Read a whole Kong-layout file: `x` uint8 [N,10,128], `y` bool [N,C], `video_id_list` [N].

    Returns (batch, class names stored in the file or None). See iter_kong_hdf5 for the mask rule.
    """
    _, names, batches = iter_kong_hdf5(path, batch_size=None)
    return next(batches), names


def iter_kong_hdf5(path: PathLike, *, batch_size: int | None = 4096
                   ) -> tuple[int, list[str] | None, Iterator[ClipBatch]]:
    """Stream a Kong-layout HDF5 file in chunks of batch_size clips (None: one batch).

    Returns (clip count, class names or None, batches). The mask comes from our optional `mask` dataset;
    files without it (Kong's own) get mask = "frame is not all zeros" (zero-padded short clips).
    Optional datasets (our extensions): `class_names` [C], `start_time_seconds`, `end_time_seconds` [N].
    """
    path = Path(path)
    with _open_hdf5(path) as f:
        missing = [name for name in ("x", "y", "video_id_list") if name not in f]
        if missing:
            raise ReaderError(f"{path}: not a Kong-layout HDF5 file (missing datasets {missing})")
        x, y, vid = f["x"], f["y"], f["video_id_list"]
        n = len(x)
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != EMBEDDING_SIZE or x.shape[1] < 1:
            raise ReaderError(f"{path}: `x` must be uint8 [N,10,128], got {x.dtype} {x.shape}")
        if y.ndim != 2 or len(y) != n or vid.shape != (n,):
            raise ReaderError(f"{path}: shapes of `y` {y.shape}, `video_id_list` {vid.shape} and `x` "
                              f"{x.shape} disagree")
        if "mask" in f and f["mask"].shape != x.shape[:2]:
            raise ReaderError(f"{path}: `mask` {f['mask'].shape} does not match `x` {x.shape}")
        names = _decode_ids(f["class_names"][()]).tolist() if "class_names" in f else None
        if names is not None and len(names) != y.shape[1]:
            raise ReaderError(f"{path}: {len(names)} class names for {y.shape[1]} label columns")

    def batches() -> Iterator[ClipBatch]:
        step = batch_size or max(n, 1)
        with _open_hdf5(path) as f:
            for a in range(0, n, step):
                b = min(a + step, n)
                x = f["x"][a:b]
                mask = f["mask"][a:b].astype(bool) if "mask" in f else x.any(axis=2)
                x, mask = _fit_frames(x, mask)
                start = f["start_time_seconds"][a:b] if "start_time_seconds" in f else np.zeros(b - a)
                end = (f["end_time_seconds"][a:b] if "end_time_seconds" in f
                       else mask.sum(axis=1).astype(np.float64))
                yield ClipBatch(x=x, mask=mask, y=f["y"][a:b].astype(bool),
                                ids=_decode_ids(f["video_id_list"][a:b]), start=start, end=end)
            if n == 0:
                yield _empty_batch(len(names) if names else f["y"].shape[1])

    return n, names, batches()


def _fit_frames(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Truncate or zero-pad [N,T,128] / [N,T] to T = 10 (padded frames zeroed)."""
    if x.shape[1] == MAX_FRAMES:
        return np.where(mask[:, :, None], x, 0).astype(np.uint8), mask
    out = np.zeros((len(x), MAX_FRAMES, EMBEDDING_SIZE), np.uint8)
    out_mask = np.zeros((len(x), MAX_FRAMES), bool)
    t = min(x.shape[1], MAX_FRAMES)
    out[:, :t], out_mask[:, :t] = x[:, :t], mask[:, :t]
    return out, out_mask


def read_extract_hdf5(path: PathLike) -> tuple[list[np.ndarray], np.ndarray]:
    """Read `audiotag extract --format hdf5`: (clips as uint8 [T_i,128] arrays of every patch, ids [N])."""
    path = Path(path)
    with _open_hdf5(path) as f:
        missing = [name for name in ("embedding", "clip_offsets", "video_id") if name not in f]
        if missing:
            raise ReaderError(f"{path}: not an audiotag extract HDF5 file (missing datasets {missing})")
        embedding, offsets = f["embedding"][()], f["clip_offsets"][()].astype(np.int64)
        ids = _decode_ids(f["video_id"][()])
    if embedding.dtype != np.uint8 or embedding.ndim != 2 or embedding.shape[1] != EMBEDDING_SIZE:
        raise ReaderError(f"{path}: `embedding` must be uint8 [P,128], got {embedding.dtype} "
                          f"{embedding.shape}")
    consistent = (
        len(offsets) == len(ids) + 1 and offsets[0] == 0 and offsets[-1] == len(embedding)
        and not np.any(np.diff(offsets) < 0)
    )
    if not consistent:
        raise ReaderError(f"{path}: `clip_offsets` inconsistent with {len(ids)} clips, {len(embedding)} rows")
    return [embedding[a:b] for a, b in itertools.pairwise(offsets)], ids


def npz_files(root: Path) -> list[Path]:
    """The `*.npz` files below root (hidden files and folders skipped), sorted."""
    return sorted(
        p for p in root.rglob("*.npz")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_npz_dir(root: PathLike) -> tuple[list[np.ndarray], np.ndarray]:
    """Read `audiotag extract --format npz`: every `*.npz` below root (hidden folders skipped), sorted.

    Returns (clips uint8 [T_i,128], ids) where id = path relative to root without the trailing `.npz`
    (e.g. `dogs/bark1.wav`).
    """
    root = Path(root)
    files = npz_files(root)
    if not files:
        raise ReaderError(f"{root}: no .npz files found")
    clips, ids = [], []
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as data:
                embedding = data["embedding"]
        except (OSError, ValueError, KeyError) as exc:
            raise ReaderError(f"{path}: not an extract npz with an `embedding` array: {exc}") from exc
        if embedding.dtype != np.uint8 or embedding.ndim != 2 or embedding.shape[1] != EMBEDDING_SIZE:
            raise ReaderError(f"{path}: `embedding` must be uint8 [N,128], got {embedding.dtype} "
                              f"{embedding.shape}")
        clips.append(embedding)
        ids.append(path.relative_to(root).as_posix()[: -len(".npz")])
    return clips, np.array(ids, dtype=str)


def iter_source_batches(
    source: PathLike | Sequence[PathLike], classes: ClassLabels, *, keep_labels: bool = True
) -> tuple[ClassLabels, Iterator[ClipBatch]]:
    """Batches of any readable source (see load_clipset), unlabelled (y all False) for extract outputs.

    Returns the class list of the batches' labels and the batches. A Kong file's stored class names are
    that list (when keep_labels); a Kong file without them must have one label column per class.
    Extract outputs have start time 0 and end time = number of frames (s).
    """
    kind = source_kind(source)
    if kind == "tfrecord":
        return classes, iter_tfrecord_batches(source, len(classes))
    if kind == "kong_hdf5":
        _, stored, batches = iter_kong_hdf5(source)
        if not keep_labels:
            return classes, batches
        if stored is not None:
            return _class_list(stored), batches
        with _open_hdf5(Path(source)) as f:
            width = f["y"].shape[1]
        if width != len(classes):
            raise ReaderError(f"{source}: {width} label columns but {len(classes)} classes; pass class_names")
        return classes, batches
    clips, ids = read_extract_hdf5(source) if kind == "extract_hdf5" else read_npz_dir(source)
    longer = sum(len(c) > MAX_FRAMES for c in clips)
    if longer:
        logger.warning("%s: %d clips are longer than %d frames and keep their first %d", source, longer,
                       MAX_FRAMES, MAX_FRAMES)
    x, mask = pad_clips(clips)
    batch = ClipBatch(x=x, mask=mask, y=np.zeros((len(x), len(classes)), bool), ids=ids,
                      start=np.zeros(len(x)), end=mask.sum(axis=1).astype(np.float64))
    return classes, iter([batch])


def source_kind(source: PathLike | Sequence[PathLike]) -> str:
    """"tfrecord", "kong_hdf5", "extract_hdf5" or "npz_dir" for a load_clipset source."""
    if not isinstance(source, (str, os.PathLike)):
        return "tfrecord"
    path = Path(source)
    if path.is_file() and path.suffix.lower() in HDF5_SUFFIXES:
        with _open_hdf5(path) as f:
            return "extract_hdf5" if "clip_offsets" in f else "kong_hdf5"
    if path.is_dir() and not any(p.suffix in TFRECORD_SUFFIXES for p in path.iterdir()):
        return "npz_dir"
    return "tfrecord"


# ------------------------------------------------------------------------------------------------ labels


def classes_from_labels_csv(labels_csv: PathLike) -> list[str]:
    """The sorted set of labels used in a user labels CSV (a class list for retraining on new labels)."""
    return sorted({label for labels in read_labels_csv(labels_csv).values() for label in labels})


def label_table(labels_csv: PathLike, classes: ClassLabels) -> dict[str, list[int]]:
    """Clip id -> class indices from a user labels CSV (labels given as names or mids of `classes`).

    Raises LabelsError naming the CSV for a label that is not in `classes`.
    """
    table: dict[str, list[int]] = {}
    for clip_id, labels in read_labels_csv(labels_csv).items():
        try:
            table[clip_id] = sorted(set(classes.indices_of(labels)))
        except KeyError as exc:
            raise LabelsError(
                f"{labels_csv}: clip {clip_id!r}: {exc.args[0]}, not one of the {len(classes)} classes "
                f"(a label containing a comma is quoted inside the field: "
                f'id,"""Male speech, man speaking"",Speech")'
            ) from None
    return table


def _relabel(batches: Iterator[ClipBatch], labels_csv: PathLike, classes: ClassLabels) -> Iterator[ClipBatch]:
    """Replace each batch's labels by the CSV's; clips without a CSV row are dropped (counted, logged)."""
    table = label_table(labels_csv, classes)
    matched: set[str] = set()
    dropped = 0
    for batch in batches:
        keep = np.array([clip_id in table for clip_id in batch.ids], bool)
        y = np.zeros((len(batch.ids), len(classes)), bool)
        for i in np.flatnonzero(keep):
            y[i, table[batch.ids[i]]] = True
            matched.add(batch.ids[i])
        dropped += int((~keep).sum())
        yield ClipBatch(x=batch.x[keep], mask=batch.mask[keep], y=y[keep], ids=batch.ids[keep],
                        start=batch.start[keep], end=batch.end[keep])
    if not matched:
        raise ReaderError(f"{labels_csv}: none of its {len(table)} ids match any of the {dropped} clips")
    if dropped or len(matched) < len(table):
        logger.warning("%s: %d clips have no row (dropped); %d of its ids match no clip",
                       labels_csv, dropped, len(table) - len(matched))


def _drop_empty(batches: Iterator[ClipBatch], source: object) -> Iterator[ClipBatch]:
    """Drop clips with no frames at all (logged)."""
    dropped = 0
    for batch in batches:
        keep = batch.mask.any(axis=1)
        dropped += int((~keep).sum())
        yield batch if keep.all() else ClipBatch(*(getattr(batch, f.name)[keep] for f in fields(ClipBatch)))
    if dropped:
        logger.warning("%s: dropped %d clips with no frames", source, dropped)


def _class_list(class_names: Sequence[str] | None) -> ClassLabels:
    """AudioSet's classes (with mids) for None or for exactly its display names; else a user label set."""
    audioset = load_class_labels()
    if class_names is None or list(class_names) == audioset.names:
        return audioset
    return ClassLabels.from_names(class_names)


def labelled_batches(
    source: PathLike | Sequence[PathLike], labels_csv: PathLike | None, class_names: Sequence[str] | None,
    *, require_labels: bool,
) -> tuple[ClassLabels, Iterator[ClipBatch]]:
    """(class list, batches) of a source, relabelled from labels_csv when given."""
    classes = _class_list(class_names)
    kind = source_kind(source)
    if kind == "npz_dir" and not npz_files(Path(source)):
        raise ReaderError(f"{source}: no features in this folder (no .tfrecord, .h5 or .npz files)")
    if require_labels and labels_csv is None and kind in ("extract_hdf5", "npz_dir"):
        raise ReaderError(
            f"{source}: extract outputs carry no labels; pass labels_csv (a CSV `id,labels`: --labels on the "
            "command line)"
        )
    found, batches = iter_source_batches(source, classes, keep_labels=labels_csv is None)
    if labels_csv is not None:
        batches = _relabel(batches, labels_csv, classes)
    elif class_names is not None and found.names != classes.names:
        raise ReaderError(f"{source}: the file's {len(found)} classes differ from the {len(classes)} given")
    return found, _drop_empty(batches, source)


# ------------------------------------------------------------------------------------------- load_clipset


def load_clipset(
    source: PathLike | Sequence[PathLike],
    *,
    labels_csv: PathLike | None = None,
    class_names: Sequence[str] | None = None,
) -> ClipSet:
    """Load a whole labelled set into memory as a ClipSet (x uint8 [N,10,128], mask, y bool [N,C], ids).

    source: an AudioSet-format TFRecord directory / file / glob / list of those (labels from the records:
    indices into the class list); a Kong-layout HDF5 file; an `audiotag extract` HDF5 file; or an extract
    npz directory. labels_csv (`id,labels`; required for extract outputs) replaces the source's labels;
    clips without a CSV row are dropped. class_names: the class list (default: the 527 AudioSet display
    names; class names stored in a Kong file win when present). Clips longer than 10 frames keep their
    first 10; clips with no frames are dropped (logged). Order: the source's (deterministic).
    """
    classes, batches = labelled_batches(source, labels_csv, class_names, require_labels=True)
    batch = _concat_batches(list(batches), len(classes))
    logger.info("loaded %d clips from %s", len(batch.ids), source)
    return ClipSet(x=batch.x, mask=batch.mask, y=batch.y, ids=np.asarray(batch.ids, dtype=str),
                   class_names=list(classes.names))


# ----------------------------------------------------------------------------------------------- caching


def _fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_clipset(source: PathLike | Sequence[PathLike], cache_path: PathLike) -> ClipSet:
    """load_clipset(source) through an explicit .npz cache file (for experiments; never used implicitly).

    source: TFRecords (directory / glob / file / list) with their own labels. The cache stores a
    fingerprint of the shard paths, sizes and mtimes and is rebuilt when they change. Written atomically.
    """
    cache_path = Path(cache_path)
    fingerprint = _fingerprint(tfrecord_files(source))
    if cache_path.is_file():
        try:
            with np.load(cache_path, allow_pickle=False) as data:
                if str(data["fingerprint"]) == fingerprint:
                    return ClipSet(x=data["x"], mask=data["mask"], y=data["y"], ids=data["ids"],
                                   class_names=[str(n) for n in data["class_names"]])
            logger.info("%s: stale cache (source changed), rebuilding", cache_path)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("%s: unreadable cache (%s), rebuilding", cache_path, exc)
    clipset = load_clipset(source)
    with atomic_output(cache_path) as tmp, open(tmp, "wb") as f:
        np.savez(f, x=clipset.x, mask=clipset.mask, y=clipset.y, ids=clipset.ids.astype(str),
                 class_names=np.array(clipset.class_names), fingerprint=np.array(fingerprint))
    return clipset
