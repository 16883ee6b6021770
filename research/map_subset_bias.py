"""How much does the size of the scored set move mAP? The same predictions, scored whole and in parts.

    python research/map_subset_bias.py [--head NAME|PATH] [--parts 2 5 10] [--eval-cache NPZ]

Scores the full eval release with a head (lite-int8 engine: its mAP equals numpy's to four decimals) and
prints the mAP over all 20,371 clips against the mean (and spread) of the mAPs of K label-stratified parts
(classifier.sampling.kfold_split). Nothing is trained and the scores are identical, so any difference is
the estimator's: average precision is biased upward when a class has few positives (its first positives'
precisions weigh heavily). A held-out split of 2,216 clips or a cross-validation fold is such a small
set, which is why held-out mAPs run above eval's; only figures over sets of the same size compare.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from classifier.metrics import compute_metrics
from classifier.readers import cache_clipset, load_clipset
from classifier.sampling import kfold_split
from pipeline.tagger import load_head

EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "audioset_v1_embeddings" / "eval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--head", default=None, help="head name or file (default: the shipped head)")
    parser.add_argument("--parts", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--eval-cache", type=Path, default=None, help="npz cache of the eval clips")
    args = parser.parse_args()
    clips = cache_clipset(EVAL, args.eval_cache) if args.eval_cache else load_clipset(EVAL)
    head = load_head(args.head, engine="lite-int8")
    scores = head.predict_arrays(clips.x.astype(np.float32), clips.mask.astype(np.float32))
    print("| scored set | clips per set | mAP (mean over sets) | std over sets |\n|---|---|---|---|")
    print(f"| all | {len(clips)} | {compute_metrics(clips.y, scores).mAP:.4f} | — |")
    for k in args.parts:
        parts = kfold_split(clips.y, k, seed=0)
        maps = [compute_metrics(clips.y[rows], scores[rows]).mAP for rows in parts]
        print(f"| {k} parts | {len(parts[0])} | {np.mean(maps):.4f} | {np.std(maps, ddof=1):.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
