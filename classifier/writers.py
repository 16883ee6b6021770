"""Writers for AudioSet-format embeddings: Kong's HDF5 layout, sharded TFRecords in the release's
SequenceExample format, and `pack_features`, which converts between them (`audiotag pack-features`).

All outputs appear atomically (safeio.atomic).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from classifier.clipset import EMBEDDING_SIZE, MAX_FRAMES, ClipSet
from classifier.readers import (
    HDF5_SUFFIXES,
    TFRECORD_SUFFIXES,
    ClipBatch,
    PathLike,
    ReaderError,
    labelled_batches,
)
from safeio.atomic import atomic_output, temp_path_for

logger = logging.getLogger(__name__)


def write_kong_hdf5(clipset: ClipSet, path: PathLike) -> Path:
    """Write a ClipSet atomically in Kong's layout: `x` uint8 [N,10,128], `y` bool [N,C], `video_id_list`
    [N], plus our extensions `mask` bool [N,10] and `class_names` [C] (Kong-layout readers ignore them)."""
    batch = ClipBatch(x=clipset.x, mask=clipset.mask, y=clipset.y, ids=clipset.ids,
                      start=np.zeros(len(clipset)), end=clipset.lengths.astype(np.float64))
    _write_kong_stream(iter([batch]), Path(path), clipset.class_names, with_times=False)
    return Path(path)


def _write_kong_stream(batches: Iterator[ClipBatch], path: Path, class_names: Sequence[str], *,
                       with_times: bool = True) -> int:
    """Append batches to resizable Kong-layout datasets in a temp file, then rename it to path."""
    import h5py

    strings = h5py.string_dtype("utf-8")
    c = len(class_names)
    n = 0
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        frame_shape = (MAX_FRAMES, EMBEDDING_SIZE)
        x = f.create_dataset("x", (0, *frame_shape), np.uint8, maxshape=(None, *frame_shape),
                             chunks=(256, *frame_shape))
        y = f.create_dataset("y", (0, c), bool, maxshape=(None, c), chunks=(256, c))
        ids = f.create_dataset("video_id_list", (0,), strings, maxshape=(None,), chunks=(4096,))
        mask = f.create_dataset("mask", (0, MAX_FRAMES), bool, maxshape=(None, MAX_FRAMES),
                                chunks=(4096, MAX_FRAMES))
        times = [f.create_dataset(name, (0,), np.float64, maxshape=(None,), chunks=(4096,))
                 for name in ("start_time_seconds", "end_time_seconds")] if with_times else []
        f.create_dataset("class_names", data=list(class_names), dtype=strings)
        for batch in batches:
            m = n + len(batch.ids)
            for dataset in (x, y, ids, mask, *times):
                dataset.resize(m, axis=0)
            x[n:m], y[n:m], mask[n:m] = batch.x, batch.y, batch.mask
            ids[n:m] = list(batch.ids)
            if times:
                times[0][n:m], times[1][n:m] = batch.start, batch.end
            n = m
    return n


def sequence_example(clip_id: str, frames: np.ndarray, labels: Sequence[int], start: float,
                     end: float) -> bytes:
    """Serialize one clip (uint8 [T,128]) in the AudioSet release's SequenceExample layout."""
    import tensorflow as tf

    feature = tf.train.Feature
    context = tf.train.Features(feature={
        "video_id": feature(bytes_list=tf.train.BytesList(value=[clip_id.encode("utf-8")])),
        "start_time_seconds": feature(float_list=tf.train.FloatList(value=[start])),
        "end_time_seconds": feature(float_list=tf.train.FloatList(value=[end])),
        "labels": feature(int64_list=tf.train.Int64List(value=[int(i) for i in labels])),
    })
    embedding = tf.train.FeatureList(
        feature=[feature(bytes_list=tf.train.BytesList(value=[row.tobytes()])) for row in frames]
    )
    example = tf.train.SequenceExample(
        context=context, feature_lists=tf.train.FeatureLists(feature_list={"audio_embedding": embedding})
    )
    return example.SerializeToString()


def write_tfrecord_shards(batches: Iterator[ClipBatch], dest_dir: PathLike, *,
                          clips_per_shard: int = 1000) -> list[Path]:
    """Write clips as `shard-00000-of-NNNNN.tfrecord` in a new (or empty) folder, atomically.

    Shards are written to a temp folder beside dest_dir, which is renamed to dest_dir at the end.
    """
    import tensorflow as tf

    dest_dir = Path(dest_dir)
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise ReaderError(f"{dest_dir}: TFRecord output folder must be new or empty")
    tmp_dir = temp_path_for(dest_dir)
    if tmp_dir.exists():  # left by an interrupted earlier run
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    shard_paths: list[Path] = []
    writer, in_shard = None, 0
    try:
        for batch in batches:
            for i in range(len(batch.ids)):
                if writer is None:
                    shard_paths.append(tmp_dir / f"{len(shard_paths):05d}")
                    writer, in_shard = tf.io.TFRecordWriter(str(shard_paths[-1])), 0
                writer.write(sequence_example(str(batch.ids[i]), batch.x[i][batch.mask[i]],
                                              np.flatnonzero(batch.y[i]), float(batch.start[i]),
                                              float(batch.end[i])))
                in_shard += 1
                if in_shard == clips_per_shard:
                    writer.close()
                    writer = None
        if writer is not None:
            writer.close()
            writer = None
        count = len(shard_paths)
        final = [tmp_dir / f"shard-{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]
        for old, new in zip(shard_paths, final, strict=True):
            os.replace(old, new)
        os.replace(tmp_dir, dest_dir)
    finally:
        if writer is not None:
            writer.close()
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    return [dest_dir / p.name for p in final]


def pack_features(
    source: PathLike | Sequence[PathLike],
    dest: PathLike,
    *,
    labels_csv: PathLike | None = None,
    class_names: Sequence[str] | None = None,
    clips_per_shard: int = 1000,
) -> Path:
    """Convert embeddings between layouts (`audiotag pack-features`); the output format follows dest.

    - dest `*.h5` / `*.hdf5`: Kong's layout (see write_kong_hdf5) plus `start_time_seconds` /
      `end_time_seconds`, streamed batch by batch (memory flat in the number of clips).
    - any other dest: a new or empty folder of `shard-00000-of-NNNNN.tfrecord` files in the AudioSet
      release's SequenceExample format, `clips_per_shard` clips each.
    source: anything load_clipset reads (TFRecords, Kong HDF5, extract HDF5, extract npz folder); extract
    outputs without labels_csv are written with empty labels. labels_csv (`id,labels`) replaces the
    source's labels, mapped through class_names (default: the 527 AudioSet classes); clips without a row
    are dropped. Clips keep at most 10 frames. Outputs appear atomically.
    """
    dest = Path(dest)
    classes, batches = labelled_batches(source, labels_csv, class_names, require_labels=False)
    if dest.suffix.lower() in HDF5_SUFFIXES:
        n = _write_kong_stream(batches, dest, classes.names)
        logger.info("packed %d clips from %s into %s", n, source, dest)
    else:
        if dest.suffix.lower() in TFRECORD_SUFFIXES:
            raise ReaderError(f"{dest}: TFRecord output is a folder of shards; give a folder name")
        shards = write_tfrecord_shards(batches, dest, clips_per_shard=clips_per_shard)
        logger.info("packed clips from %s into %d shards in %s", source, len(shards), dest)
    return dest
