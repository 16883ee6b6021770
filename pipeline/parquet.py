"""The Parquet layout of extracted embeddings, shared by `audiotag extract --format parquet` and
`audiotag beam-extract --format parquet`: one row per clip, readable by pyarrow, pandas, DuckDB and Spark.

Columns: `video_id` string, `start_time_seconds` / `end_time_seconds` double (0 and the file's duration),
`labels` list<int64> (AudioSet class indices, empty without --labels), `embedding`
list<fixed_size_binary[128]> (the postprocessed uint8 embedding of each 0.96 s patch), `timestamps`
list<double> (patch start times, s) and, with --raw, `raw` list<fixed_size_list<float>[128]>.
pyarrow is needed (`pip install 'audiotag[beam]'`); it is imported when a Parquet file is made or read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from safeio.atomic import atomic_output

EMBEDDING_SIZE = 128
PARQUET_SUFFIX = ".parquet"
COMPRESSION = "snappy"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise PipelineError(
            "Parquet output needs pyarrow: pip install 'audiotag[beam]' (or pip install pyarrow)"
        ) from exc
    return pyarrow


def schema(raw: bool = False) -> Any:
    """The pyarrow schema of one row per clip (see the module docstring)."""
    pa = _pyarrow()
    fields = [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start_time_seconds", pa.float64(), nullable=False),
        pa.field("end_time_seconds", pa.float64(), nullable=False),
        pa.field("labels", pa.list_(pa.int64()), nullable=False),
        pa.field("embedding", pa.list_(pa.binary(EMBEDDING_SIZE)), nullable=False),
        pa.field("timestamps", pa.list_(pa.float64()), nullable=False),
    ]
    if raw:
        fields.append(pa.field("raw", pa.list_(pa.list_(pa.float32(), EMBEDDING_SIZE)), nullable=False))
    return pa.schema(fields)


def clip_row(
    clip_id: str, embedding: np.ndarray, timestamps: np.ndarray, duration: float,
    labels: Sequence[int] = (), raw: np.ndarray | None = None,
) -> dict[str, Any]:
    """One row as Python values (what pyarrow builds the columns from and Beam's WriteToParquet takes).

    embedding: uint8 [N,128]; timestamps: float64 [N] s; raw: float32 [N,128] or None (no `raw` column).
    """
    embedding = np.ascontiguousarray(embedding, dtype=np.uint8)
    row: dict[str, Any] = {
        "video_id": clip_id,
        "start_time_seconds": 0.0,
        "end_time_seconds": float(duration),
        "labels": [int(i) for i in labels],
        "embedding": [bytes(frame) for frame in embedding],
        "timestamps": [float(t) for t in timestamps],
    }
    if raw is not None:
        row["raw"] = [frame.tolist() for frame in np.asarray(raw, dtype=np.float32)]
    return row


def write_rows(path: Path, rows: Sequence[dict[str, Any]], *, raw: bool) -> None:
    """Write rows (clip_row) as one Parquet file, atomically (temp name, fsync, rename)."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    table_schema = schema(raw)
    columns = [pa.array([row[name] for row in rows], type=table_schema.field(name).type)
               for name in table_schema.names]
    table = pa.Table.from_arrays(columns, schema=table_schema)
    with atomic_output(path) as tmp:
        pq.write_table(table, str(tmp), compression=COMPRESSION)


def read_clips(path: str | Path) -> dict[str, dict[str, Any]]:
    """A Parquet file of clips as {video_id: {"embedding": uint8 [N,128], "timestamps", "labels",
    "start_time_seconds", "end_time_seconds", opt. "raw" float32 [N,128]}} (for tests and small files)."""
    _pyarrow()
    import pyarrow.parquet as pq

    clips = {}
    for row in pq.read_table(str(path)).to_pylist():
        clip = dict(row)
        frames = row["embedding"]
        clip["embedding"] = (np.frombuffer(b"".join(frames), np.uint8).reshape(-1, EMBEDDING_SIZE)
                             if frames else np.zeros((0, EMBEDDING_SIZE), np.uint8))
        if "raw" in row:
            clip["raw"] = np.asarray(row["raw"], np.float32).reshape(-1, EMBEDDING_SIZE)
        clips[clip.pop("video_id")] = clip
    return clips
