"""Reads AudioSet-format TFRecord shards with plain tf.data and the release's feature spec: an oracle for the
tests of our writers (extract, beam-extract), independent of classifier.readers."""

from __future__ import annotations

from pathlib import Path


def read_tfrecords(files: list[Path]) -> dict[str, dict]:
    """{video_id: {"embedding": uint8 [T, 128], "start": s, "end": s, "labels": sorted class indices}};
    AssertionError if a clip id is written twice."""
    import tensorflow as tf

    context = {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "start_time_seconds": tf.io.FixedLenFeature([], tf.float32),
        "end_time_seconds": tf.io.FixedLenFeature([], tf.float32),
        "labels": tf.io.VarLenFeature(tf.int64),
    }
    sequence = {"audio_embedding": tf.io.FixedLenSequenceFeature([], tf.string)}
    clips: dict[str, dict] = {}
    for record in tf.data.TFRecordDataset([str(f) for f in files]):
        ctx, seq = tf.io.parse_single_sequence_example(record, context, sequence)
        clip_id = ctx["video_id"].numpy().decode()
        assert clip_id not in clips, f"{clip_id} written twice"
        clips[clip_id] = {
            "embedding": tf.io.decode_raw(seq["audio_embedding"], tf.uint8).numpy(),
            "start": float(ctx["start_time_seconds"]),
            "end": float(ctx["end_time_seconds"]),
            "labels": sorted(tf.sparse.to_dense(ctx["labels"]).numpy().tolist()),
        }
    return clips
