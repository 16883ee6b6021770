"""How trustworthy is the timeline? Frame mAP, localization AP and segment F1 on AudioSet strong labels.

    python benchmarks/sed_strong.py [--strong TSV] [--head PATH] [--eval-cache runs/cache_eval.npz]
                                    [--gamma G] [--attention-exponent A] [--frame-hop SECONDS] [--search]

Scores the eval-release clips that have strong labels (default: ../shared/data/audioset_strong/
eval_strong_dev.tsv) with a head and prints, over the strong-label classes the head knows (see
classifier.strong for the definitions):
- frame-level mAP of the calibrated timeline (``Head.predict_frames``), of the raw frame scores
  (``Head.predict_frames_raw``), and of the clip-score broadcast baseline (each clip's score repeated on all
  its patches);
- localization AP inside positive clips of the raw scores and of the calibrated timeline (patches pooled
  over the positive clips, so calibration changes it), against chance;
- segment-based F1 at 1 s (micro, macro) of the events (classifier.events with the head's rules) and of
  events at a fixed 0.5.
Frame t of a release clip is the patch starting at t * --frame-hop seconds: 1 s by default, the release's
frame rate (classifier.strong.RELEASE_FRAME_HOP); --frame-hop 0.96 scores on a 0.96-s grid instead (the
spacing of our own extraction's patches, which the release's frames do not follow). ``--search`` also
prints grids over the calibration exponent gamma, the attention exponent (ATTENTION_EXPONENTS) and the
event rules (the post-processing parameters are chosen from them on the dev half; network weights are
never trained on strong labels).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from classifier import load_head, load_pretrained, strong
from classifier.events import PATCH_SECONDS, EventRules, detect_events
from classifier.labels import load_class_labels
from classifier.readers import cache_clipset, load_clipset
from classifier.timeline import TimelineParams, calibrate_frames

ROOT = Path(__file__).resolve().parents[1]
ATTENTION_EXPONENTS = (0.0, 0.3, 0.5, 0.7, 1.0)  # the --search grid of TimelineParams.attention_exponent
SHARED = ROOT.parent / "shared" / "data"


def _events_f1(frames, clips_len, refs, rules, mids, hop):
    estimated = []
    for f, n in zip(frames, clips_len, strict=True):
        events = detect_events(f, np.arange(n) * hop, rules, mids, mids, hop, PATCH_SECONDS, duration=n * hop)
        activity = [(e.start, e.end, e.index) for e in events]
        estimated.append(strong.segment_activity(activity, len(mids), n * hop))
    return strong.segment_f1(refs, estimated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strong", type=Path, default=SHARED / "audioset_strong" / "eval_strong_dev.tsv")
    parser.add_argument("--eval", type=Path, default=SHARED / "audioset_v1_embeddings" / "eval")
    parser.add_argument("--eval-cache", type=Path, default=None, help="npz cache of the eval clips")
    parser.add_argument("--head", type=Path, default=None, help="head file (default: the shipped head)")
    parser.add_argument("--frame-head", type=Path, default=None,
                        help="take the timeline's frame members from this head's decision-level members")
    parser.add_argument("--gamma", type=float, default=None,
                        help="calibration exponent (default: the head's)")
    parser.add_argument("--attention-exponent", type=float, default=None,
                        help="attention weighting of the raw frame scores (default: the head's)")
    parser.add_argument("--frame-hop", type=float, default=strong.RELEASE_FRAME_HOP,
                        help="seconds between a release clip's frames (default: %(default)s, the release's)")
    parser.add_argument("--search", action="store_true", help="also print the post-processing grid")
    args = parser.parse_args()

    t0 = time.time()
    clipset = cache_clipset(args.eval, args.eval_cache) if args.eval_cache else load_clipset(args.eval)
    strong_labels = strong.read_strong_labels(args.strong)
    head = load_head(args.head) if args.head else load_pretrained()
    if args.frame_head:
        head = head.with_frame_members(load_head(args.frame_head))
    if args.gamma is not None or args.attention_exponent is not None:
        gamma = head.timeline.gamma if args.gamma is None else args.gamma
        exponent = args.attention_exponent
        if exponent is None:
            exponent = head.timeline.attention_exponent
        head.timeline = TimelineParams(gamma, exponent)
    labels = load_class_labels()
    if head.class_names != labels.names:
        raise SystemExit("the head's classes are not AudioSet's 527")
    matched = strong.match_release(clipset, strong_labels, labels.mids)
    segments, clips, mids, columns, column_of = (matched.segments, matched.clips, matched.mids,
                                                 matched.columns, matched.column_of)
    lengths = [len(c) for c in clips]
    print(f"{len(segments)} of {len(strong_labels)} strong-label segments found in the eval release; "
          f"{len(mids)} classes; {sum(lengths)} patches")

    clip_probs, calibrated = head.predict_timeline(clips)
    raw = head.predict_frames_raw(clips)
    clip_probs = clip_probs[:, columns]
    calibrated = [f[:, columns] for f in calibrated]
    raw = [f[:, columns] for f in raw]
    hop = args.frame_hop
    targets = [strong.frame_targets(strong_labels[s], n, column_of, hop=hop)
               for s, n in zip(segments, lengths, strict=True)]
    broadcast = [np.repeat(p[None], n, axis=0) for p, n in zip(clip_probs, lengths, strict=True)]
    refs = [strong.segment_activity([(a, b, column_of[m]) for a, b, m in strong_labels[s] if m in column_of],
                                    len(mids), n * hop) for s, n in zip(segments, lengths, strict=True)]
    print(f"(predictions in {time.time() - t0:.0f} s; gamma = {head.timeline.gamma}; attention exponent = "
          f"{head.timeline.attention_exponent}; frame hop {hop} s)\n")

    base = strong.frame_map(targets, broadcast)
    loc_raw = strong.localization_ap(targets, raw)
    loc_cal = strong.localization_ap(targets, calibrated)
    rules = EventRules.from_head(head)
    rules = EventRules(rules.onset[columns], rules.offset[columns], rules.min_duration, rules.merge_gap)
    tuned = _events_f1(calibrated, lengths, refs, rules, mids, hop)
    half = _events_f1(calibrated, lengths, refs, EventRules.uniform(len(mids)), mids, hop)
    print("| measure | value |\n|---|---|")
    print(f"| frame mAP, clip-score broadcast | {base:.4f} |")
    print(f"| frame mAP, raw frame scores | {strong.frame_map(targets, raw):.4f} |")
    print(f"| frame mAP, calibrated timeline | {strong.frame_map(targets, calibrated):.4f} "
          f"({strong.frame_map(targets, calibrated) - base:+.4f}) |")
    print(f"| localization AP, raw / calibrated (chance) | {loc_raw.ap:.4f} / {loc_cal.ap:.4f} "
          f"({loc_cal.chance:.4f}, {loc_cal.ap - loc_cal.chance:+.4f}; {loc_cal.pairs} pairs) |")
    print(f"| segment F1 (1 s), head's event rules: micro / macro | {tuned.micro:.4f} / {tuned.macro:.4f} |")
    print(f"| segment F1 (1 s), threshold 0.5: micro / macro | {half.micro:.4f} / {half.macro:.4f} |")

    if args.search:
        print("\ncalibration exponent gamma: frame mAP")
        for gamma in (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0):
            params = TimelineParams(gamma, head.timeline.attention_exponent)
            frames = [calibrate_frames(p, f, params) for p, f in zip(clip_probs, raw, strict=True)]
            print(f"  {gamma:5.2f}  {strong.frame_map(targets, frames):.4f}")
        print("\nattention exponent a, gamma: localization AP of the raw scores; frame mAP / localization AP "
              "of the calibrated timeline")
        shipped = head.timeline
        for exponent in ATTENTION_EXPONENTS:
            head.timeline = TimelineParams(shipped.gamma, exponent)
            scores = [f[:, columns] for f in head.predict_frames_raw(clips)]
            line = f"  a {exponent:4.2f}: raw {strong.localization_ap(targets, scores).ap:.4f};"
            for gamma in (0.2, 0.25, 0.3):
                params = TimelineParams(gamma)
                frames = [calibrate_frames(p, f, params) for p, f in zip(clip_probs, scores, strict=True)]
                calibrated_ap = strong.localization_ap(targets, frames).ap
                line += f"  gamma {gamma}: {strong.frame_map(targets, frames):.4f} / {calibrated_ap:.4f}"
            print(line, flush=True)
        head.timeline = shipped
        print("\nevent rules on the calibrated timeline (head's onsets): offset ratio, min duration, "
              "merge gap -> segment F1 micro / macro")
        for ratio in (1.0, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2):
            for min_duration in (0.0, 1.92):
                for merge_gap in (0.0, 1.1, 2.0):
                    grid = EventRules(rules.onset, rules.onset * ratio, min_duration, merge_gap)
                    f1 = _events_f1(calibrated, lengths, refs, grid, mids, hop)
                    print(f"  {ratio:4.2f} {min_duration:5.2f} {merge_gap:4.1f}  "
                          f"{f1.micro:.4f} / {f1.macro:.4f}")


if __name__ == "__main__":
    main()
