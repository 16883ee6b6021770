"""Label tables: class list, ontology, segment CSVs (generated files and the vendored data/ copies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiotag_data import data_dir
from classifier.labels import (
    ClassLabels,
    LabelsError,
    load_class_labels,
    load_ontology,
    parse_segments_csv,
)


def test_class_labels_lookup() -> None:
    labels = load_class_labels()
    assert len(labels) == 527
    assert labels.mids[0] == "/m/09x0r" and labels.names[0] == "Speech"
    assert labels.index_of("Speech") == labels.index_of("/m/09x0r") == labels.index_of("speech") == 0
    assert labels.names[labels.index_of("Male speech, man speaking")] == "Male speech, man speaking"
    assert labels.indices_of(["Dog", "/m/09x0r"]) == [labels.index_of("Dog"), 0]
    with pytest.raises(KeyError, match="Woof"):
        labels.index_of("Woof")


def test_data_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (data_dir() / "class_labels_indices.csv").is_file()
    (tmp_path / "class_labels_indices.csv").write_text('index,mid,display_name\n0,/m/a,"A, a"\n1,/m/b,B\n')
    monkeypatch.setenv("AUDIOTAG_DATA_DIR", str(tmp_path))
    labels = load_class_labels()
    assert labels.mids == ["/m/a", "/m/b"] and labels.names == ["A, a", "B"]


def test_bad_class_labels(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("index,mid,display_name\n1,/m/a,A\n")
    with pytest.raises(LabelsError, match=r"c\.csv.*in order"):
        load_class_labels(path)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(LabelsError, match="header"):
        load_class_labels(path)
    with pytest.raises(LabelsError, match="cannot read"):
        load_class_labels(tmp_path / "missing.csv")


def test_user_label_set() -> None:
    labels = ClassLabels.from_names(["bark", "meow"])
    assert labels.mids == labels.names == ["bark", "meow"] and labels.index_of("MEOW") == 1


def test_ontology_and_ancestors() -> None:
    ontology = load_ontology()
    labels = load_class_labels()
    assert len(ontology) == 632
    human = ontology.entries["/m/0dgw9r"]
    assert human.name == "Human sounds" and human.abstract and not human.blacklisted
    assert sum(e.abstract for e in ontology.entries.values()) == 23
    assert sum(e.blacklisted for e in ontology.entries.values()) == 67
    ancestors = ontology.class_ancestors(labels)
    assert len(ancestors) == 527
    # "Male speech, man speaking" sits under "Speech" (a class) under "Human voice" under "Human sounds"
    male = labels.index_of("Male speech, man speaking")
    assert 0 in ancestors[male]
    assert {"/m/09x0r", "/m/09l8g", "/m/0dgw9r"} <= ontology.ancestors("/m/05zppz")
    assert "/m/09l8g" not in labels.mids  # "Human voice" is abstract: not a class
    assert ancestors[0] == []  # Speech's ancestors are all abstract


def test_bad_ontology(tmp_path: Path) -> None:
    path = tmp_path / "o.json"
    path.write_text('[{"name": "no id"}]')
    with pytest.raises(LabelsError, match=r"o\.json"):
        load_ontology(path)


def test_parse_segments_csv(tmp_path: Path) -> None:
    path = tmp_path / "seg.csv"
    path.write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=2\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n-0abc, 0.000, 7.500, "/m/012xff"\n'
    )
    segments = parse_segments_csv(path)
    assert [s.ytid for s in segments] == ["--PJHxphWEs", "-0abc"]
    assert segments[0].mids == ["/m/09x0r", "/t/dd00088"] and segments[1].end_seconds == 7.5
    path.write_text("# h\nabc, 1.0, x, \"/m/a\"\n")
    with pytest.raises(LabelsError, match=r"seg\.csv.*bad time"):
        parse_segments_csv(path)
