"""Output writers of `audiotag extract`: sharded TFRecords or Parquet, one HDF5 file, or one npz per input.

Every writer makes its outputs durable and atomic (safeio.atomic), and can say which clips are already
finished in an output folder, so an interrupted run resumes where it stopped:
- tfrecord: clip i of the run's sorted input list goes to shard i // files_per_shard; a shard is written
  (temp name, fsync, rename) as soon as all its clips are embedded or failed. An existing shard means all
  its clips are finished. Shard names follow `embeddings-00000-of-NNNNN.tfrecord`.
- parquet: sharded exactly like tfrecord, `embeddings-00000-of-NNNNN.parquet`, one row per clip
  (pipeline.parquet).
- hdf5: finished clips are saved in durable npz parts under `.audiotag/parts/`; at the end of a run the
  parts (and the previous `embeddings.h5`, when there is one) are merged into a new `embeddings.h5`, renamed
  atomically, and the parts deleted. The merge first checks that the disk has room for it, and runs in a
  child process (safeio.isolated): a failed write is an OSError naming the file, never a crash, and the
  parts stay for the rerun.
- npz: `OUT/<clip id>.npz` per clip, written atomically; its existence means the clip is finished.
"""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.writers import sequence_example
from pipeline.frontend import mp_context
from safeio.atomic import atomic_output
from safeio.atomic import remove_stale_temporaries as remove_temporaries_in
from safeio.isolated import run_isolated
from safeio.oserrors import check_free_space

logger = logging.getLogger(__name__)

FORMATS = ("tfrecord", "hdf5", "npz", "parquet")
STATE_DIR = ".audiotag"
HDF5_NAME = "embeddings.h5"
HDF5_FORMAT = "audiotag-embeddings-v1"
MERGE_SPACE_MARGIN_BYTES = 1 << 20  # HDF5 metadata and partly filled chunks


@dataclass
class ClipEmbeddings:
    """The finished embeddings of one input file.

    embedding: uint8 [N, 128] postprocessed; raw: float32 [N, 128] or None; timestamps: float64 [N] patch
    start times in seconds; duration: the file's length in seconds.
    """

    clip_id: str
    embedding: np.ndarray
    raw: np.ndarray | None
    timestamps: np.ndarray
    duration: float


class Writer:
    """Interface of the three writers."""

    def finished_ids(self) -> set[str]:
        """Clip ids whose outputs are already durable in the output folder."""
        raise NotImplementedError

    def add(self, clip: ClipEmbeddings) -> None:
        """Accept one finished clip (written now or with its shard/part)."""
        raise NotImplementedError

    def skip(self, clip_id: str) -> None:
        """Account for a clip that failed (now or in an earlier run) and will never be added."""

    def checkpoint(self) -> None:
        """Make everything added so far durable where the format allows it (called after each CNN batch)."""

    def close(self) -> None:
        """Finish the output (called once, after the whole run succeeded or was interrupted)."""

    def finalize(self) -> None:
        """Build the final output after a complete run (HDF5 merge); no-op for the other formats."""


# TensorFlow's errors of a failed file write, as the OS error behind them.
_TF_ERRNOS = {"ResourceExhaustedError": errno.ENOSPC, "PermissionDeniedError": errno.EACCES}


def shard_name(index: int, count: int, suffix: str = ".tfrecord") -> str:
    """`embeddings-00003-of-00010.tfrecord`."""
    return f"embeddings-{index:05d}-of-{count:05d}{suffix}"


class TFRecordWriter(Writer):
    """Sharded TFRecords; shard membership is fixed by the position of the clip in `clip_ids`."""

    def __init__(
        self,
        out_dir: Path,
        clip_ids: Sequence[str],
        *,
        files_per_shard: int,
        labels: Mapping[str, Sequence[int]] | None = None,
    ):
        self.out_dir = out_dir
        self.files_per_shard = files_per_shard
        self.labels = labels or {}
        self.num_shards = max(1, math.ceil(len(clip_ids) / files_per_shard))
        self._shard_of = {clip_id: i // files_per_shard for i, clip_id in enumerate(clip_ids)}
        self._remaining = [0] * self.num_shards
        for shard in self._shard_of.values():
            self._remaining[shard] += 1
        self._records: dict[int, list[tuple[str, bytes]]] = {}
        self._written = {s for s in range(self.num_shards) if self._path(s).is_file()}
        if not clip_ids and 0 not in self._written:
            self._write(0)

    def _path(self, shard: int) -> Path:
        return self.out_dir / shard_name(shard, self.num_shards)

    def finished_ids(self) -> set[str]:
        return {clip_id for clip_id, shard in self._shard_of.items() if shard in self._written}

    def _resolve(self, clip_id: str) -> None:
        shard = self._shard_of[clip_id]
        if shard in self._written:
            return
        self._remaining[shard] -= 1
        if self._remaining[shard] == 0:
            self._write(shard)

    def _write(self, shard: int) -> None:
        import tensorflow as tf

        records = sorted(self._records.pop(shard, []))
        try:
            with atomic_output(self._path(shard)) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
                for _, record in records:
                    writer.write(record)
        except tf.errors.OpError as exc:  # TensorFlow's own errors for what are OS errors
            number = _TF_ERRNOS.get(type(exc).__name__, errno.EIO)
            raise OSError(number, exc.message, str(self._path(shard))) from exc
        self._written.add(shard)
        logger.debug("wrote %s (%d clips)", self._path(shard), len(records))

    def add(self, clip: ClipEmbeddings) -> None:
        record = sequence_example(clip.clip_id, np.ascontiguousarray(clip.embedding, dtype=np.uint8),
                                  self.labels.get(clip.clip_id, ()), 0.0, clip.duration)
        self._records.setdefault(self._shard_of[clip.clip_id], []).append((clip.clip_id, record))
        self._resolve(clip.clip_id)

    def skip(self, clip_id: str) -> None:
        self._resolve(clip_id)


class ParquetWriter(TFRecordWriter):
    """Sharded Parquet files (pipeline.parquet's schema), the same shard membership as TFRecordWriter."""

    def __init__(
        self,
        out_dir: Path,
        clip_ids: Sequence[str],
        *,
        files_per_shard: int,
        raw: bool,
        labels: Mapping[str, Sequence[int]] | None = None,
    ):
        self.raw = raw
        super().__init__(out_dir, clip_ids, files_per_shard=files_per_shard, labels=labels)

    def _path(self, shard: int) -> Path:
        from pipeline.parquet import PARQUET_SUFFIX

        return self.out_dir / shard_name(shard, self.num_shards, PARQUET_SUFFIX)

    def _write(self, shard: int) -> None:
        from pipeline.parquet import write_rows

        rows = [row for _, row in sorted(self._records.pop(shard, []), key=lambda item: item[0])]
        write_rows(self._path(shard), rows, raw=self.raw)
        self._written.add(shard)
        logger.debug("wrote %s (%d clips)", self._path(shard), len(rows))

    def add(self, clip: ClipEmbeddings) -> None:
        from pipeline.parquet import clip_row

        row = clip_row(clip.clip_id, clip.embedding, clip.timestamps, clip.duration,
                       self.labels.get(clip.clip_id, ()), clip.raw if self.raw else None)
        self._records.setdefault(self._shard_of[clip.clip_id], []).append((clip.clip_id, row))
        self._resolve(clip.clip_id)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


class NpzWriter(Writer):
    """One `OUT/<clip id>.npz` per clip: `embedding` uint8 [N,128], `timestamps` float64 [N], opt. `raw`."""

    def __init__(self, out_dir: Path, clip_ids: Sequence[str], *, raw: bool):
        self.out_dir = out_dir
        self.clip_ids = clip_ids
        self.raw = raw

    def path_for(self, clip_id: str) -> Path:
        return self.out_dir / f"{clip_id}.npz"

    def finished_ids(self) -> set[str]:
        return {clip_id for clip_id in self.clip_ids if self.path_for(clip_id).is_file()}

    def add(self, clip: ClipEmbeddings) -> None:
        arrays = {
            "embedding": clip.embedding.astype(np.uint8),
            "timestamps": clip.timestamps.astype(np.float64),
        }
        if self.raw and clip.raw is not None:
            arrays["raw"] = clip.raw.astype(np.float32)
        _save_npz(self.path_for(clip.clip_id), **arrays)


class HDF5Writer(Writer):
    """One `OUT/embeddings.h5` (layout: pipeline.extract docstring), built from durable parts."""

    def __init__(self, out_dir: Path, *, raw: bool, hop_seconds: float, checkpoint_status: str):
        self.out_dir = out_dir
        self.raw = raw
        self.hop_seconds = hop_seconds
        self.checkpoint_status = checkpoint_status
        self.parts_dir = out_dir / STATE_DIR / "parts"
        self.final_path = out_dir / HDF5_NAME
        self._buffer: list[ClipEmbeddings] = []
        existing = sorted(self.parts_dir.glob("part-*.npz")) if self.parts_dir.is_dir() else []
        self._next_part = 1 + max((int(p.stem.split("-")[1]) for p in existing), default=-1)

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.npz")) if self.parts_dir.is_dir() else []

    def finished_ids(self) -> set[str]:
        import h5py

        ids: set[str] = set()
        if self.final_path.is_file():
            with h5py.File(self.final_path, "r") as f:
                ids.update(f["video_id"].asstr()[()])
        for part in self._parts():
            with np.load(part) as data:
                ids.update(str(v) for v in data["video_id"])
        return ids

    def add(self, clip: ClipEmbeddings) -> None:
        self._buffer.append(clip)

    def checkpoint(self) -> None:
        if not self._buffer:
            return
        clips, self._buffer = self._buffer, []
        arrays = {
            "embedding": np.concatenate([c.embedding for c in clips]).astype(np.uint8),
            "timestamps": np.concatenate([c.timestamps for c in clips]).astype(np.float64),
            "lengths": np.array([len(c.embedding) for c in clips], dtype=np.int64),
            "video_id": np.array([c.clip_id for c in clips], dtype=str),
            "duration": np.array([c.duration for c in clips], dtype=np.float64),
        }
        if self.raw:
            arrays["raw"] = np.concatenate([c.raw for c in clips]).astype(np.float32)
        _save_npz(self.parts_dir / f"part-{self._next_part:06d}.npz", **arrays)
        self._next_part += 1

    def close(self) -> None:
        self.checkpoint()

    def finalize(self) -> None:
        self.checkpoint()
        parts = self._parts()
        if not parts and self.final_path.is_file():
            return
        sources = ([self.final_path] if self.final_path.is_file() else []) + parts
        attrs = {
            "format": HDF5_FORMAT,
            "hop_seconds": self.hop_seconds,
            "checkpoint_status": self.checkpoint_status,
        }
        # The new file is about as large as its sources; the old one stays until the new one replaces it.
        needed = int(sum(source.stat().st_size for source in sources) * 1.1) + MERGE_SPACE_MARGIN_BYTES
        check_free_space(self.out_dir, needed, f"merging {len(sources)} files into {HDF5_NAME}")
        # In a child process: HDF5 can crash its process when a write fails while it closes the file.
        job = (sources, self.final_path, self.raw, attrs)
        try:
            run_isolated(mp_context(), _merge_job, job, path=self.final_path)
        except OSError:
            remove_temporaries_in(self.out_dir)  # the merge's temporary file, if its process died
            check_free_space(self.out_dir, needed, f"merging {len(sources)} files into {HDF5_NAME}")
            raise
        for part in parts:
            part.unlink()


def _read_source(path: Path, raw: bool, clips_per_chunk: int = 4096) -> Iterator[dict[str, np.ndarray]]:
    """Arrays of a part or of a previous final file, with `lengths` per clip, `clips_per_chunk` clips at a
    time (a previous final file can be far larger than memory allows)."""
    import h5py

    if path.suffix == ".npz":
        with np.load(path) as data:
            yield {key: data[key] for key in data.files}
        return
    with h5py.File(path, "r") as f:
        offsets = f["clip_offsets"][()]
        for first in range(0, len(offsets) - 1, clips_per_chunk):
            last = min(first + clips_per_chunk, len(offsets) - 1)
            rows = slice(int(offsets[first]), int(offsets[last]))
            arrays = {
                "embedding": f["embedding"][rows],
                "timestamps": f["timestamps"][rows],
                "lengths": np.diff(offsets[first : last + 1]),
                "video_id": np.array(f["video_id"].asstr()[first:last], dtype=str),
                "duration": f["duration"][first:last],
            }
            if raw:
                arrays["raw"] = f["raw"][rows]
            yield arrays


def _merge_job(sources: list[Path], dest: Path, raw: bool, attrs: Mapping[str, object]) -> None:
    """_merge_hdf5 with positional arguments (the target of the merge's child process)."""
    _merge_hdf5(sources, dest, raw=raw, attrs=attrs)


def _merge_hdf5(sources: Iterable[Path], dest: Path, *, raw: bool, attrs: Mapping[str, object]) -> None:
    """Concatenate sources one at a time into `dest`, dropping repeated clip ids."""
    import h5py

    with atomic_output(dest) as tmp, h5py.File(tmp, "w") as out:
        width = 128
        datasets = {
            "embedding": out.create_dataset(
                "embedding", (0, width), np.uint8, maxshape=(None, width), chunks=(1024, width)
            ),
            "timestamps": out.create_dataset(
                "timestamps", (0,), np.float64, maxshape=(None,), chunks=(4096,)
            ),
            "duration": out.create_dataset("duration", (0,), np.float64, maxshape=(None,), chunks=(4096,)),
            "video_id": out.create_dataset(
                "video_id", (0,), h5py.string_dtype("utf-8"), maxshape=(None,), chunks=(4096,)
            ),
        }
        if raw:
            datasets["raw"] = out.create_dataset(
                "raw", (0, width), np.float32, maxshape=(None, width), chunks=(1024, width)
            )
        offsets = [0]
        seen: set[str] = set()
        for arrays in (chunk for source in sources for chunk in _read_source(source, raw)):
            starts = np.concatenate([[0], np.cumsum(arrays["lengths"])])
            keep = [i for i, clip_id in enumerate(arrays["video_id"]) if str(clip_id) not in seen]
            seen.update(str(arrays["video_id"][i]) for i in keep)
            rows = (
                np.concatenate([np.arange(starts[i], starts[i + 1]) for i in keep])
                if keep
                else np.zeros(0, int)
            )
            per_clip = {
                "duration": arrays["duration"][keep],
                "video_id": arrays["video_id"][keep].astype(object),
            }
            per_row = {
                name: arrays[name][rows] for name in ("embedding", "timestamps", "raw") if name in datasets
            }
            for name, values in {**per_clip, **per_row}.items():
                dataset = datasets[name]
                n = dataset.shape[0]
                dataset.resize(n + len(values), axis=0)
                dataset[n:] = values
            offsets.extend(offsets[-1] + int(arrays["lengths"][i]) for i in keep)
        out.create_dataset("clip_offsets", data=np.asarray(offsets, dtype=np.int64))
        for key, value in attrs.items():
            out.attrs[key] = value
    logger.info("wrote %s (%d clips, %d patches)", dest, len(offsets) - 1, offsets[-1])


def open_writer(
    fmt: str,
    out_dir: Path,
    clip_ids: Sequence[str],
    *,
    raw: bool,
    hop_seconds: float,
    checkpoint_status: str,
    files_per_shard: int,
    labels: Mapping[str, Sequence[int]] | None = None,
) -> Writer:
    """The writer for `fmt` (one of FORMATS) over the run's sorted clip ids."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "tfrecord":
        return TFRecordWriter(out_dir, clip_ids, files_per_shard=files_per_shard, labels=labels)
    if fmt == "hdf5":
        return HDF5Writer(out_dir, raw=raw, hop_seconds=hop_seconds, checkpoint_status=checkpoint_status)
    if fmt == "npz":
        return NpzWriter(out_dir, clip_ids, raw=raw)
    if fmt == "parquet":
        return ParquetWriter(out_dir, clip_ids, files_per_shard=files_per_shard, raw=raw, labels=labels)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete temporary files left by killed runs in the output folder and the state folder (never those
    of a live process: safeio.atomic.remove_stale_temporaries)."""
    for folder in (out_dir, out_dir / STATE_DIR, out_dir / STATE_DIR / "parts"):
        remove_temporaries_in(folder)
