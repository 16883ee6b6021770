"""Greedy ensemble selection on the held-out split, then eval mAP of every candidate and every step.

    python benchmarks/select_ensemble.py [RUN_DIR...] [--heads HEAD.npz...] [--baseline HEAD.npz]
        [--budget-mb 25] [--max-members N] [--combine both] [--starts N] [--cache DIR]

Each RUN_DIR is an `audiotag train` folder on AudioSet balanced_train (default held-out split). Every run
enters as two candidates: its head.npz and its best single snapshot (by held-out mAP, from metrics.csv).
Each member of a --heads file (e.g. the shipped head, whose members were trained on the same split) enters
as a candidate of its own. --max-members caps the members of the ensemble (inference speed). With
--baseline, the chosen ensemble is compared with that head on held-out by a paired bootstrap over clips
(classifier.metrics.paired_bootstrap_map): the difference, its standard deviation and how often the
ensemble wins, so a choice that held-out cannot resolve is seen as one.
Greedy forward selection adds the candidate that raises held-out mAP most (at most one per run, int8 size
within the budget) until none does. It runs once per combination rule (mean probability, mean logit; see
classifier.pretrained.COMBINE_RULES) and keeps the rule whose final ensemble scores higher on held-out.
Forward selection is path dependent (its first pick decides much); --starts N runs it from each of the N
best runs (each by its better candidate on held-out, under the rule) and keeps the best final ensemble
(N = 1 is plain greedy selection).
Eval mAP is printed for every candidate and step but never used to choose. This is how
data/heads/audioset.npz was chosen (see data/heads/MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np


def single_snapshot_head(run: Path, head, out: Path):
    """The run's best single evaluation-point snapshot (`head` is the run's head.npz) as a Head, saved to
    `out`."""
    from classifier.pretrained import load_head, save_head
    from classifier.train import load_snapshot

    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: float(r["holdout_mAP"]))
    weights = load_snapshot(run, int(best["iteration"]))
    return load_head(save_head(out, head.member_configs[:1], [weights], head.class_names, out.stem))


def member_predictions(head, x: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """Clip probabilities float32 [N, C] of each member of `head` on its own."""
    from classifier.pretrained import Head

    return [Head.from_weights([c], [w], head.class_names).predict_arrays(x, mask)
            for c, w in zip(head.member_configs, head.member_weights, strict=True)]


def cached_predictions(head, cache: Path | None, holdout, evaluation) -> tuple[np.ndarray, np.ndarray]:
    """Member predictions [members, N, C] on held-out and eval, reused from `cache` (keyed by the weights)."""
    digest = hashlib.sha256()
    for weights in head.member_weights:
        for w in weights:
            digest.update(np.asarray(w).tobytes())
    path = cache / f"{digest.hexdigest()[:24]}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return z["holdout"], z["eval"]
    found = (np.stack(member_predictions(head, holdout.x, holdout.mask)),
             np.stack(member_predictions(head, evaluation.x, evaluation.mask)))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, holdout=found[0], eval=found[1])
    return found


def main() -> None:
    from classifier.pretrained import COMBINE_RULES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--heads", nargs="*", type=Path, default=[], help="head files whose members compete")
    parser.add_argument("--baseline", type=Path, default=None, help="head to compare the choice with")
    parser.add_argument("--max-members", type=int, default=None, help="at most this many members")
    parser.add_argument("--budget-mb", type=float, default=25.0, help="int8 size limit (units of 1e6 bytes)")
    parser.add_argument("--combine", choices=(*COMBINE_RULES, "both"), default="both")
    parser.add_argument("--starts", type=int, default=1,
                        help="run the greedy selection from each of the N best runs")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder reusing member predictions and the clip sets")
    args = parser.parse_args()

    from classifier.metrics import compute_metrics
    from classifier.pretrained import Head, combine_probabilities, load_head
    from classifier.readers import cache_clipset, load_clipset
    from classifier.train import TrainConfig, split_holdout

    release = args.shared / "data" / "audioset_v1_embeddings"
    def clips(name: str):
        if args.cache is None:
            return load_clipset(release / name)
        return cache_clipset(release / name, args.cache / f"clips_{name}.npz")

    _, holdout = split_holdout(TrainConfig(), clips("bal_train"))
    evaluation = clips("eval")
    tmp = Path(tempfile.mkdtemp(prefix="select_ensemble_"))
    candidates = {}  # name -> (run, int8 bytes, held-out member probs, eval member probs)
    entries = []  # (name, group: at most one candidate per group, head)
    for run in args.runs:
        run_head = load_head(run / "head.npz")
        best_single = single_snapshot_head(run, run_head, tmp / f"{run.name}_1s.npz")
        entries += [(run.name, run.name, run_head), (f"{run.name}_1s", run.name, best_single)]
    for path in args.heads:
        head = load_head(path)
        for i, (config, weights) in enumerate(zip(head.member_configs, head.member_weights, strict=True)):
            name = f"{path.stem}_m{i}"
            entries.append((name, name, Head.from_weights([config], [weights], head.class_names, name)))
    if not entries:
        parser.error("give run folders and/or --heads")
    for name, group, head in entries:
        size = head.save(tmp / f"{name}.int8.npz", dtype="int8").stat().st_size
        candidates[name] = (group, size, *cached_predictions(head, args.cache, holdout, evaluation))
        holdout_map = compute_metrics(holdout.y, np.mean(candidates[name][2], axis=0)).mAP
        eval_map = compute_metrics(evaluation.y, np.mean(candidates[name][3], axis=0)).mAP
        row = {"candidate": name, "members": len(head.member_configs), "int8_MB": round(size / 1e6, 2),
               "holdout_mAP": round(holdout_map, 4), "eval_mAP": round(eval_map, 4)}
        print(json.dumps(row), flush=True)

    def mixed(names: list[str], which: int, rule: str) -> np.ndarray:  # every member weighs the same
        return combine_probabilities([p for n in names for p in candidates[n][which]], rule)

    def members(names: list[str]) -> int:
        return sum(len(candidates[n][2]) for n in names)

    def size_bytes(names: list[str]) -> int:
        return sum(candidates[n][1] for n in names)

    def fits(names: list[str]) -> bool:
        return (size_bytes(names) <= args.budget_mb * 1e6
                and (args.max_members is None or members(names) <= args.max_members))

    def holdout_map(names: list[str], rule: str) -> float:
        return compute_metrics(holdout.y, mixed(names, 2, rule)).mAP

    def report_step(rule: str, chosen: list[str], best: float) -> None:
        print(json.dumps({"combine": rule, "step": chosen, "holdout_mAP": round(best, 4),
                          "eval_mAP": round(compute_metrics(evaluation.y, mixed(chosen, 3, rule)).mAP, 4),
                          "int8_MB": round(size_bytes(chosen) / 1e6, 2)}), flush=True)

    def starts_for(rule: str) -> list[str]:
        """The best candidate (under `rule`) of each of the --starts best runs: greedy's first picks."""
        ranked = sorted(((holdout_map([n], rule), n) for n in candidates if fits([n])), reverse=True)
        starts: list[str] = []
        for _, name in ranked:
            if len(starts) < args.starts and all(candidates[s][0] != candidates[name][0] for s in starts):
                starts.append(name)
        return starts

    def greedy(start: str, rule: str) -> tuple[float, list[str]]:
        chosen = [start]
        best = holdout_map(chosen, rule)
        report_step(rule, chosen, best)
        while True:
            trials = [(holdout_map([*chosen, n], rule), n) for n, c in candidates.items()
                      if all(candidates[m][0] != c[0] for m in chosen) and fits([*chosen, n])]
            if not trials or max(trials)[0] <= best:
                return best, chosen
            best, name = max(trials)
            chosen.append(name)
            report_step(rule, chosen, best)

    finals = []
    for rule in COMBINE_RULES if args.combine == "both" else (args.combine,):
        for start in starts_for(rule):
            best, chosen = greedy(start, rule)
            eval_map = compute_metrics(evaluation.y, mixed(chosen, 3, rule)).mAP
            print(json.dumps({"combine": rule, "start": start, "final": chosen, "holdout_mAP": round(best, 4),
                              "eval_mAP": round(eval_map, 4)}), flush=True)
            finals.append((best, rule, chosen))
    best, rule, chosen = max(finals)
    print(f"chosen ({rule}, held-out mAP {best:.4f}):", " + ".join(chosen))
    if args.baseline:
        from classifier.metrics import paired_bootstrap_map

        baseline = load_head(args.baseline).predict_arrays(holdout.x, holdout.mask)
        test = paired_bootstrap_map(holdout.y, mixed(chosen, 2, rule), baseline)
        print(f"against {args.baseline} on held-out: {test.difference:+.4f} mAP "
              f"(bootstrap std {test.std:.4f}; higher in {100 * test.p_a_better:.0f} % of {test.samples} "
              "resamples of the clips)")


if __name__ == "__main__":
    main()
