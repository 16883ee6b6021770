"""AudioSet label tables: index <-> mid <-> display name, the ontology, segment CSVs, user label CSVs."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audiotag_data import data_dir

logger = logging.getLogger(__name__)


class LabelsError(ValueError):
    """A label table or labels CSV is missing, malformed or refers to unknown classes; names the file."""


@dataclass(frozen=True)
class ClassLabels:
    """An ordered class list: position i is the classifier's output i.

    mids: AudioSet machine ids (e.g. "/m/09x0r"); for user label sets the mid is the label name itself.
    names: display names (e.g. "Speech").
    """

    mids: list[str]
    names: list[str]
    _lookup: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.mids) != len(self.names):
            raise LabelsError(f"{len(self.mids)} mids but {len(self.names)} names")
        lookup: dict[str, int] = {}
        # Names first, then mids, so that a mid always wins over an identical display name.
        for i, name in enumerate(self.names):
            lookup.setdefault(name, i)
            lookup.setdefault(name.lower(), i)
        for i, mid in enumerate(self.mids):
            lookup[mid] = i
        object.__setattr__(self, "_lookup", lookup)

    def __len__(self) -> int:
        return len(self.mids)

    def index_of(self, mid_or_name: str) -> int:
        """Index of a class given its mid or its display name (exact, else case-insensitive)."""
        key = mid_or_name.strip()
        if key in self._lookup:
            return self._lookup[key]
        if key.lower() in self._lookup:
            return self._lookup[key.lower()]
        raise KeyError(f"unknown class {mid_or_name!r}")

    def indices_of(self, labels: Iterable[str]) -> list[int]:
        """Indices of several classes (mids or names); KeyError on the first unknown one."""
        return [self.index_of(label) for label in labels]

    @classmethod
    def from_names(cls, names: Sequence[str]) -> ClassLabels:
        """A user label set: each name is also its own mid."""
        return cls(mids=list(names), names=list(names))


def load_class_labels(path: str | os.PathLike[str] | None = None) -> ClassLabels:
    """Read `index,mid,display_name` (default: data/class_labels_indices.csv, 527 rows)."""
    path = Path(path) if path is not None else data_dir() / "class_labels_indices.csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read class labels: {exc}") from exc
    if not rows or not {"index", "mid", "display_name"} <= set(rows[0]):
        raise LabelsError(f"{path}: expected a header 'index,mid,display_name'")
    try:
        indices = [int(row["index"]) for row in rows]
    except (TypeError, ValueError) as exc:
        raise LabelsError(f"{path}: non-integer class index: {exc}") from exc
    if indices != list(range(len(rows))):
        raise LabelsError(f"{path}: class indices must run 0..{len(rows) - 1} in order")
    return ClassLabels(mids=[row["mid"] for row in rows], names=[row["display_name"] for row in rows])


@dataclass(frozen=True)
class OntologyEntry:
    """One ontology node. restrictions may contain "abstract" and/or "blacklist"."""

    id: str
    name: str
    description: str
    child_ids: list[str]
    restrictions: list[str]

    @property
    def abstract(self) -> bool:
        return "abstract" in self.restrictions

    @property
    def blacklisted(self) -> bool:
        return "blacklist" in self.restrictions


@dataclass(frozen=True)
class Ontology:
    """The AudioSet ontology (632 entries), keyed by mid."""

    entries: dict[str, OntologyEntry]

    def __len__(self) -> int:
        return len(self.entries)

    def parents(self) -> dict[str, list[str]]:
        """mid -> mids of its direct parents (a node may have several)."""
        parents: dict[str, list[str]] = {mid: [] for mid in self.entries}
        for entry in self.entries.values():
            for child in entry.child_ids:
                parents.setdefault(child, []).append(entry.id)
        return parents

    def ancestors(self, mid: str, parents: dict[str, list[str]] | None = None) -> set[str]:
        """All strict ancestors of a node (transitively, over every parent path)."""
        parents = self.parents() if parents is None else parents
        seen: set[str] = set()
        stack = list(parents.get(mid, []))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(parents.get(node, []))
        return seen

    def class_ancestors(self, labels: ClassLabels) -> list[list[int]]:
        """For each class index, the sorted indices of its strict ancestors that are also classes.

        Useful for hierarchy tricks (e.g. propagating a child's positive label to its parents).
        """
        parents = self.parents()
        index = {mid: i for i, mid in enumerate(labels.mids)}
        return [sorted(index[m] for m in self.ancestors(mid, parents) if m in index) for mid in labels.mids]


def load_ontology(path: str | os.PathLike[str] | None = None) -> Ontology:
    """Read ontology.json (default: data/ontology.json)."""
    path = Path(path) if path is not None else data_dir() / "ontology.json"
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = {
            item["id"]: OntologyEntry(
                id=item["id"],
                name=item["name"],
                description=item.get("description", ""),
                child_ids=list(item.get("child_ids", [])),
                restrictions=list(item.get("restrictions", [])),
            )
            for item in raw
        }
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read ontology: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise LabelsError(f"{path}: malformed ontology JSON: {exc!r}") from exc
    return Ontology(entries=entries)


@dataclass(frozen=True)
class Segment:
    """One row of an AudioSet segment CSV: a 10 s (or shorter) excerpt of a YouTube video."""

    ytid: str
    start_seconds: float
    end_seconds: float
    mids: list[str]


def parse_segments_csv(path: str | os.PathLike[str]) -> list[Segment]:
    """Parse an official segment list: '#' comment lines, then `YTID, start, end, "mid,mid,..."` rows."""
    segments: list[Segment] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = (line for line in f if line.strip() and not line.startswith("#"))
            for lineno, row in enumerate(csv.reader(lines, skipinitialspace=True), start=1):
                if len(row) != 4:
                    raise LabelsError(f"{path}: data row {lineno}: expected 4 fields, got {row!r}")
                try:
                    start, end = float(row[1]), float(row[2])
                except ValueError as exc:
                    raise LabelsError(f"{path}: data row {lineno}: bad time: {exc}") from exc
                mids = [m.strip() for m in row[3].split(",") if m.strip()]
                segments.append(Segment(ytid=row[0].strip(), start_seconds=start, end_seconds=end, mids=mids))
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read segment CSV: {exc}") from exc
    return segments


def read_labels_csv(path: str | os.PathLike[str], key: str = "id") -> dict[str, list[str]]:
    """Read a user labels CSV with header `id,labels` (`key,labels`: e.g. `path,labels` for audio files);
    labels are comma-separated names or mids.

    The labels field is itself read as a CSV record, so a label containing a comma is quoted inside it:
    the field `"Male speech, man speaking",Speech` (in the file a quoted field, its quotes doubled as CSV
    requires) gives the labels `Male speech, man speaking` and `Speech`. Returns id -> list of labels
    (possibly empty), in file order. Duplicate ids are an error.
    """
    result: dict[str, list[str]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header[:2]] != [key, "labels"]:
                raise LabelsError(f"{path}: expected a header '{key},labels', got {header!r}")
            for lineno, row in enumerate(reader, start=2):
                if not row or not "".join(row).strip():
                    continue
                if len(row) > 2:
                    raise LabelsError(
                        f"{path}: line {lineno}: {len(row)} fields; quote the labels field, "
                        f'e.g. {key},"Dog,Bark"'
                    )
                clip_id = row[0].strip()
                if not clip_id:
                    raise LabelsError(f"{path}: line {lineno}: empty {key}")
                if clip_id in result:
                    raise LabelsError(f"{path}: line {lineno}: duplicate {key} {clip_id!r}")
                labels = next(csv.reader([row[1]], skipinitialspace=True), []) if len(row) > 1 else []
                result[clip_id] = [label.strip() for label in labels if label.strip()]
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read labels CSV: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{path}: not UTF-8 text: {exc}") from exc
    return result
