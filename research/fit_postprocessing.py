"""Choose a head's event thresholds on balanced_train's held-out split and store them (with the timeline
parameters) in the head file; report clip-level F1 on eval with the tuned thresholds against a fixed 0.5.

    python research/fit_postprocessing.py [--head data/heads/audioset.npz] [--gamma G]
        [--attention-exponent A] [--offset-ratio R] [--min-duration S] [--merge-gap S] [--write]
        [--cache-dir runs]

Per class, the onset threshold maximises clip-level F1 on the held-out split that training uses
(classifier.train.split_holdout with the default TrainConfig: 10 %, seed 0, rows sorted by clip id);
the offset is onset * R. G, A (classifier.timeline.TimelineParams), R, the minimum duration and the
merge gap are chosen on the strong-label dev half with benchmarks/sed_strong.py --search. The eval set is
only reported on. Without --write nothing is changed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from classifier import load_head
from classifier.events import EventRules
from classifier.head_file import set_postprocessing
from classifier.readers import cache_clipset, load_clipset
from classifier.thresholds import clip_f1, f1_thresholds
from classifier.timeline import DEFAULT_GAMMA, TimelineParams
from classifier.train import TrainConfig, split_holdout

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT.parent / "shared" / "data" / "audioset_v1_embeddings"


def _clips(name: str, cache_dir: Path | None):
    source = RELEASE / name
    return cache_clipset(source, cache_dir / f"cache_{name}.npz") if cache_dir else load_clipset(source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--head", type=Path, default=ROOT / "data" / "heads" / "audioset.npz")
    parser.add_argument("--gamma", type=float, default=DEFAULT_GAMMA)
    parser.add_argument("--attention-exponent", type=float, default=0.0,
                        help="attention weighting of the raw frame scores (0: plain frame probabilities)")
    parser.add_argument("--offset-ratio", type=float, default=1.0)
    parser.add_argument("--min-duration", type=float, default=0.0)
    parser.add_argument("--merge-gap", type=float, default=0.0)
    parser.add_argument("--cache-dir", type=Path, default=None, help="npz caches of the clip sets")
    parser.add_argument("--write", action="store_true", help="store the result in the head file")
    args = parser.parse_args()

    head = load_head(args.head)
    _, holdout = split_holdout(TrainConfig(), _clips("bal_train", args.cache_dir))
    onset = f1_thresholds(holdout.y, head.predict_clips(holdout.clips()))
    rules = EventRules(onset, (onset * args.offset_ratio).astype(np.float32), args.min_duration,
                       args.merge_gap)
    evaluation = _clips("eval", args.cache_dir)
    scores = head.predict_clips(evaluation.clips())
    tuned, fixed = clip_f1(evaluation.y, scores, onset), clip_f1(evaluation.y, scores, 0.5)
    print(f"held-out clips {len(holdout)}; thresholds: median {np.median(onset):.2f}, "
          f"range {onset.min():.2f}-{onset.max():.2f}")
    print("| eval clip-level F1 (20,371 clips) | macro | micro |\n|---|---|---|")
    print(f"| fixed 0.5 | {fixed.macro:.4f} | {fixed.micro:.4f} |")
    print(f"| per-class thresholds (held-out F1) | {tuned.macro:.4f} | {tuned.micro:.4f} |")
    if args.write:
        timeline = TimelineParams(args.gamma, args.attention_exponent)
        set_postprocessing(args.head, timeline=timeline.to_config(), event_rules=rules.to_config())
        print(f"wrote the timeline parameters and event rules into {args.head}")


if __name__ == "__main__":
    main()
