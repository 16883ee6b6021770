"""Readers and label tables on the real AudioSet embedding release in ../shared (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiotag_data import data_dir
from classifier.labels import load_class_labels, load_ontology, parse_segments_csv
from classifier.readers import audioset_dataset, load_clipset, tfrecord_files
from classifier.writers import pack_features

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def metadata_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "metadata"


def test_vendored_tables_match_release(metadata_dir: Path) -> None:
    for name in ("class_labels_indices.csv", "ontology.json"):
        assert (data_dir() / name).read_bytes() == (metadata_dir / name).read_bytes()
    assert len(load_class_labels(metadata_dir / "class_labels_indices.csv")) == 527
    assert len(load_ontology(metadata_dir / "ontology.json")) == 632


def test_segment_lists(metadata_dir: Path) -> None:
    bal = parse_segments_csv(metadata_dir / "balanced_train_segments.csv")
    ev = parse_segments_csv(metadata_dir / "eval_segments.csv")
    assert len(bal) == 22160 and len(ev) == 20371
    assert sum(len(s.mids) for s in bal) == 52882  # num_positive_labels in the file's header
    labels = load_class_labels()
    assert {m for s in bal for m in s.mids} == set(labels.mids)


def test_unbal_sample_streams(audioset_dir: Path) -> None:
    stream = audioset_dataset(audioset_dir / "unbal_train")
    count, lengths = 0, set()
    for x, mask, y, _ in stream.batch(256).as_numpy_iterator():
        count += len(x)
        lengths |= set(mask.sum(axis=1).tolist())
        assert y.any(axis=1).all()  # every released clip has at least one label
        assert not x[~mask].any()
    assert count == 975
    assert lengths <= set(range(1, 11))


def test_bal_train_shards_agree_with_segment_list(audioset_dir: Path, metadata_dir: Path) -> None:
    files = tfrecord_files(audioset_dir / "bal_train")
    assert len(files) == 4070 and files[0].name.startswith("-")
    cs = load_clipset(files[:40])
    assert 100 < len(cs) < 1000
    lengths = cs.lengths
    assert lengths.min() >= 1 and lengths.max() == 10
    labels = load_class_labels()
    segments = {s.ytid: s for s in parse_segments_csv(metadata_dir / "balanced_train_segments.csv")}
    for i, vid in enumerate(cs.ids):
        assert sorted(labels.mids[k] for k in np.flatnonzero(cs.y[i])) == sorted(segments[vid].mids)


def test_bal_train_whole(audioset_dir: Path) -> None:
    cs = load_clipset(audioset_dir / "bal_train")
    assert len(cs) == 22160 and len(set(cs.ids)) == 22160
    assert int(cs.y.sum()) == 52882
    assert (cs.class_counts() >= 59).all()  # balanced: every class has at least 59 clips
    assert cs.lengths.min() >= 1 and cs.lengths.max() == 10


def test_eval_few_shards(audioset_dir: Path) -> None:
    cs = load_clipset(str(audioset_dir / "eval" / "-*.tfrecord"))
    assert len(cs) > 0 and all(vid.startswith("-") for vid in cs.ids)
    assert cs.y.any(axis=1).all()


def test_release_round_trip(audioset_dir: Path, tmp_path: Path) -> None:
    shard = sorted((audioset_dir / "unbal_train").glob("*.tfrecord"))[0]
    original = load_clipset(shard)
    h5 = pack_features(shard, tmp_path / "u.h5")
    back = load_clipset(pack_features(h5, tmp_path / "shards", clips_per_shard=100))
    order = np.argsort(original.ids)
    back_order = np.argsort(back.ids)
    for name in ("x", "mask", "y", "ids"):
        np.testing.assert_array_equal(getattr(original, name)[order], getattr(back, name)[back_order])
