"""Label control: ontology roll-up and class filters over a head's scores (clip, frames, events alike).

A :class:`LabelView` maps score arrays ``[..., C]`` in the head's class order to ``[..., K]`` over the kept
classes of an (optionally rolled-up) class table:

- roll-up (``rollup=True``): every ontology ancestor of a head class becomes a class too; a parent's score
  is the maximum of its own score (if the head scores it) and all its descendants' scores, so a roll-up
  never lowers a score. Classes whose score includes descendants are marked ``rolled_up``; ancestors the
  head does not score get index -1.
- ``classes``: keep only these (display names, MIDs, or ``@file`` with one per line, ``#`` comments);
  ``exclude``: drop these. Unknown entries are an error naming them.
Abstract and blacklisted ontology classes are flagged (``abstract``, ``blacklisted``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.labels import LabelsError, Ontology, load_ontology


@dataclass(frozen=True)
class ClassInfo:
    """One output class of a view: head ``index`` (-1: an ontology ancestor the head does not score), mid,
    name, and the flags ``rolled_up`` (its score includes descendants'), ``abstract``, ``blacklisted``."""

    index: int
    mid: str
    name: str
    rolled_up: bool = False
    abstract: bool = False
    blacklisted: bool = False

    def flags(self) -> dict[str, bool]:
        """The flags that are set, as a dict (for JSON)."""
        return {k: True for k in ("rolled_up", "abstract", "blacklisted") if getattr(self, k)}


def read_class_specs(specs: Sequence[str]) -> list[str]:
    """Expand ``@file`` entries (one class per line, ``#`` comments, blank lines skipped) and split
    comma-free entries as given; returns the class names/MIDs in order."""
    out: list[str] = []
    for spec in specs:
        if spec.startswith("@"):
            path = Path(spec[1:])
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise LabelsError(f"{path}: cannot read the class list ({exc})") from None
            out += [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
        elif spec.strip():
            out.append(spec.strip())
    return out


class LabelView:
    """Which classes a result shows, and how their scores derive from the head's ``[..., C]`` scores."""

    def __init__(self, mids: Sequence[str], names: Sequence[str], *, rollup: bool = False,
                 classes: Sequence[str] | None = None, exclude: Sequence[str] = (),
                 ontology: Ontology | None = None):
        mids, names = list(mids), list(names)
        ontology = ontology if ontology is not None else _ontology_for(mids)
        entries = ontology.entries if ontology is not None else {}
        table = [ClassInfo(i, m, n) for i, (m, n) in enumerate(zip(mids, names, strict=True))]
        sources = [[i] for i in range(len(mids))]  # head columns whose max gives each table column
        if rollup and ontology is not None:
            table, sources = _rolled_up(table, sources, ontology)
        table = [ClassInfo(c.index, c.mid, c.name, c.rolled_up,
                           entries[c.mid].abstract if c.mid in entries else False,
                           entries[c.mid].blacklisted if c.mid in entries else False) for c in table]
        keep = np.ones(len(table), bool)
        if classes is not None:
            keep[:] = False
            keep[_lookup(table, read_class_specs(classes), "--classes")] = True
        if exclude:
            keep[_lookup(table, read_class_specs(exclude), "--exclude")] = False
        kept = np.flatnonzero(keep)
        self.classes = [table[k] for k in kept]
        self._sources = [np.asarray(sources[k]) for k in kept]
        self._identity = not rollup and len(kept) == len(mids)

    @property
    def mids(self) -> list[str]:
        return [c.mid for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def indices(self) -> list[int]:
        return [c.index for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def sources(self, column: int) -> list[int]:
        """Head columns whose maximum gives the view's column ``column``."""
        return [int(c) for c in self._sources[column]]

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Head scores float [..., C] -> the view's scores float32 [..., K] (max over each source set)."""
        scores = np.asarray(scores, np.float32)
        if self._identity:
            return scores
        out = np.empty((*scores.shape[:-1], len(self.classes)), np.float32)
        for k, cols in enumerate(self._sources):
            out[..., k] = scores[..., cols].max(axis=-1) if len(cols) > 1 else scores[..., cols[0]]
        return out


def _ontology_for(mids: Sequence[str]) -> Ontology | None:
    """The AudioSet ontology when the head's classes are AudioSet MIDs, else None (user label sets)."""
    ontology = load_ontology()
    return ontology if any(m in ontology.entries for m in mids) else None


def _rolled_up(table: list[ClassInfo], sources: list[list[int]], ontology: Ontology
               ) -> tuple[list[ClassInfo], list[list[int]]]:
    """Add every ancestor of a head class; each class's sources become itself plus all its descendants."""
    parents = ontology.parents()
    column = {c.mid: k for k, c in enumerate(table)}
    table, sources = list(table), [list(s) for s in sources]
    for head_class in list(table):
        for ancestor in sorted(ontology.ancestors(head_class.mid, parents)):
            if ancestor not in column:
                column[ancestor] = len(table)
                table.append(ClassInfo(-1, ancestor, ontology.entries[ancestor].name))
                sources.append([])
            sources[column[ancestor]].append(head_class.index)
    rolled = [ClassInfo(c.index, c.mid, c.name, rolled_up=len(set(s)) > (1 if c.index >= 0 else 0))
              for c, s in zip(table, sources, strict=True)]
    return rolled, [sorted(set(s)) for s in sources]


def _lookup(table: list[ClassInfo], specs: list[str], option: str) -> list[int]:
    """Table positions of classes given by MID or display name (exact, else case-insensitive)."""
    by_key: dict[str, int] = {}
    for k, c in enumerate(table):
        by_key.setdefault(c.name, k)
        by_key.setdefault(c.name.lower(), k)
    for k, c in enumerate(table):
        by_key[c.mid] = k
    found, unknown = [], []
    for spec in specs:
        k = by_key.get(spec, by_key.get(spec.lower()))
        (found if k is not None else unknown).append(k if k is not None else spec)
    if unknown:
        raise LabelsError(f"{option}: unknown class(es) {', '.join(repr(u) for u in unknown)}")
    return found

