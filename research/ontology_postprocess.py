"""Does the AudioSet ontology help as post-processing? Held-out mAP of a head with parent scores raised
from their descendant classes.

    python research/ontology_postprocess.py [--head NAME|PATH] [--shared ../shared]

Scores the held-out split of balanced_train (the default `audiotag train` split, never the eval set) and
prints one JSON line per variant: the plain head, parent = max(parent, w * max descendant) and
parent = (1 - w) * parent + w * max descendant, for several w.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

WEIGHTS = (0.1, 0.25, 0.5, 1.0)


def descendants(ancestors: list[list[int]]) -> list[list[int]]:
    """Class index -> indices of the classes below it, from each class's ancestor list."""
    below: list[list[int]] = [[] for _ in ancestors]
    for child, above in enumerate(ancestors):
        for parent in above:
            below[parent].append(child)
    return below


def raise_parents(probs: np.ndarray, below: list[list[int]], weight: float, mode: str) -> np.ndarray:
    """Probabilities [N, C] with each parent column moved toward ``weight`` x its descendants' max."""
    out = probs.copy()
    for parent, children in enumerate(below):
        if children:
            pushed = weight * probs[:, children].max(axis=1)
            out[:, parent] = (np.maximum(probs[:, parent], pushed) if mode == "max"
                              else (1 - weight) * probs[:, parent] + pushed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head", default=None, help="shipped head name or head.npz path (default: shipped)")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    args = parser.parse_args()

    from classifier.labels import load_class_labels, load_ontology
    from classifier.metrics import compute_metrics
    from classifier.pretrained import load_head, load_pretrained
    from classifier.readers import load_clipset
    from classifier.train import TrainConfig, split_holdout

    is_file = args.head is not None and Path(args.head).suffix == ".npz"
    head = load_head(args.head) if is_file else load_pretrained(args.head)
    data = load_clipset(args.shared / "data" / "audioset_v1_embeddings" / "bal_train")
    _, holdout = split_holdout(TrainConfig(), data)
    below = descendants(load_ontology().class_ancestors(load_class_labels()))
    probs = head.predict_arrays(holdout.x, holdout.mask)
    print(json.dumps({"head": head.name, "classes_with_descendants": sum(1 for b in below if b),
                      "holdout_mAP": round(compute_metrics(holdout.y, probs).mAP, 4)}))
    for mode in ("max", "blend"):
        for weight in WEIGHTS if mode == "max" else WEIGHTS[:-1]:
            moved = raise_parents(probs, below, weight, mode)
            print(json.dumps({"variant": mode, "w": weight,
                              "holdout_mAP": round(compute_metrics(holdout.y, moved).mAP, 4)}), flush=True)


if __name__ == "__main__":
    main()
