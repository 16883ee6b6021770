"""Reads a Parquet output folder whole, as a dataset, the way users' tools do: pyarrow.dataset,
pyarrow.parquet.read_table and, when installed, pandas.read_parquet (Arrow-backed: pyarrow cannot convert
the `embedding` column to NumPy), each given the folder itself. An oracle for the Parquet outputs of
extract and beam-extract, independent of audiotag's code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def read_dataset(folder: Path) -> dict[str, dict]:
    """{video_id: row} of every Parquet file in `folder`, with "embedding" as uint8 [T, 128] and "end" the
    end time in seconds; AssertionError if a clip id is written twice or the readers disagree."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    table = ds.dataset(folder, format="parquet").to_table()
    ids = table.column("video_id").to_pylist()
    assert sorted(pq.read_table(folder).column("video_id").to_pylist()) == sorted(ids)
    if importlib.util.find_spec("pandas") is not None:
        import pandas

        assert sorted(pandas.read_parquet(folder, dtype_backend="pyarrow")["video_id"]) == sorted(ids)
    clips: dict[str, dict] = {}
    for row in table.to_pylist():
        assert row["video_id"] not in clips, f"{row['video_id']} written twice"
        row["embedding"] = np.frombuffer(b"".join(row["embedding"]), np.uint8).reshape(-1, 128)
        row["end"] = row["end_time_seconds"]
        clips[row["video_id"]] = row
    return clips
