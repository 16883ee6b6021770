"""Greedy ensemble selection on the held-out split, then eval mAP of every candidate and every step.

    python research/select_ensemble.py [RUN_DIR...] [--heads HEAD.npz...] [--baseline HEAD.npz]
        [--budget-mb 25] [--max-members N] [--combine both] [--starts N] [--cache DIR] [--folds K]

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
With --folds K (k-fold cross-validation, the fix for held-out's noise floor), each RUN_DIR holds K runs
`fold0` … `fold{K-1}` trained with `audiotag train --folds K --fold i` and the same settings otherwise. A
run's candidate scores every balanced_train clip once, by the fold model that did not train on it
(out-of-fold predictions), so selection sees all 22,160 clips instead of 2,216; its eval predictions are
the mean of its K fold models'. Per-fold mAPs are printed with their mean, and the two best runs are
compared by a paired bootstrap over all clips and over one fold alone, and by their K per-fold differences
(training noise included), which says how small a difference the choice resolves. Selection uses the pooled
out-of-fold mAP: AP is biased upward on small sets (few positives per class), so a fold's mAP, like the
2,216-clip held-out split's, runs well above the mAP of the same scores over all clips
(research/map_subset_bias.py); the pooled figure is the one comparable to eval's. The pooled mAP of
within-fold percentile ranks is printed too: it removes the fold models' score scales, and lies within 0.002
of the pooled mAP here. --heads and --baseline need the default split and are refused with --folds.
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
    from classifier.head_file import save_head
    from classifier.pretrained import load_head
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


def fold_candidate(run: Path, folds: int, data, evaluation, cache: Path | None):
    """A k-fold run folder as one candidate: (fold-0 head, out-of-fold member probabilities [members, N, C]
    over ``data`` (all clips, id-sorted), eval member probabilities [members, N_eval, C] (mean over the
    folds), held-out mAP of each fold, row positions in ``data`` of each fold's clips)."""
    from classifier.metrics import compute_metrics
    from classifier.pretrained import load_head
    from classifier.train import TrainConfig, split_holdout

    position = {clip_id: i for i, clip_id in enumerate(data.ids)}
    out_of_fold, evaluated, fold_maps, fold_rows, first = None, [], [], [], None
    for fold in range(folds):
        head = load_head(run / f"fold{fold}" / "head.npz")
        trained = head.info.get("train_config", {})
        if (trained.get("folds"), trained.get("fold")) != (folds, fold):
            raise SystemExit(f"{run}/fold{fold}: trained with folds={trained.get('folds')} "
                             f"fold={trained.get('fold')}, expected folds={folds} fold={fold}")
        config = TrainConfig(folds=folds, fold=fold, holdout_seed=trained.get("holdout_seed", 0))
        _, holdout = split_holdout(config, data)
        fold_preds, eval_preds = cached_predictions(head, cache, holdout, evaluation)
        if out_of_fold is None:
            first = head
            out_of_fold = np.full((len(fold_preds), len(data), fold_preds.shape[2]), np.nan, np.float32)
        if len(fold_preds) != len(out_of_fold):
            raise SystemExit(f"{run}: its fold heads have different numbers of members")
        fold_rows.append(np.array([position[i] for i in holdout.ids]))
        out_of_fold[:, fold_rows[-1]] = fold_preds
        evaluated.append(eval_preds)
        fold_maps.append(compute_metrics(holdout.y, np.mean(fold_preds, axis=0)).mAP)
    if np.isnan(out_of_fold).any():
        raise SystemExit(f"{run}: its folds do not cover every clip")
    return first, out_of_fold, np.mean(evaluated, axis=0), fold_maps, fold_rows


def within_fold_ranks(scores: np.ndarray, folds: list[np.ndarray]) -> np.ndarray:
    """float [N, C] scores -> each fold's percentile ranks per class (0..1]: one scale for every fold's
    models."""
    ranks = np.empty(scores.shape, np.float64)
    for rows in folds:
        ranks[rows] = (np.argsort(np.argsort(scores[rows], axis=0), axis=0) + 1) / len(rows)
    return ranks


def compare_best_runs(holdout, candidates: dict, fold_maps: dict, rows: np.ndarray) -> None:
    """Print how surely k-fold cross-validation separates the two best runs (by pooled out-of-fold mAP): a
    paired bootstrap over all clips, the same over fold 0's clips (``rows``) alone, as a single held-out
    split, and the mean and standard deviation of the per-fold differences (which include training noise)."""
    from classifier.metrics import compute_metrics, paired_bootstrap_map

    ranked = sorted(fold_maps, key=lambda n: compute_metrics(holdout.y, candidates[n][2].mean(axis=0)).mAP,
                    reverse=True)
    a, b = ranked[:2]
    score_a, score_b = candidates[a][2].mean(axis=0), candidates[b][2].mean(axis=0)
    everything = paired_bootstrap_map(holdout.y, score_a, score_b)
    one_fold = paired_bootstrap_map(holdout.y[rows], score_a[rows], score_b[rows])
    per_fold = np.subtract(fold_maps[a], fold_maps[b])
    print(json.dumps({"compare": [a, b],
                      "out_of_fold": {"clips": len(holdout), "difference": round(everything.difference, 4),
                                      "bootstrap_std": round(everything.std, 4),
                                      "a_higher": round(everything.p_a_better, 3)},
                      "fold0_alone": {"clips": len(rows), "difference": round(one_fold.difference, 4),
                                      "bootstrap_std": round(one_fold.std, 4),
                                      "a_higher": round(one_fold.p_a_better, 3)},
                      "per_fold_differences": [round(d, 4) for d in per_fold],
                      "per_fold_mean": round(float(per_fold.mean()), 4),
                      "per_fold_std": round(float(per_fold.std(ddof=1)), 4)}), flush=True)


def main() -> None:
    from classifier.head_file import COMBINE_RULES

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
    parser.add_argument("--score", nargs="+", default=[], metavar="NAME,NAME,...",
                        help="instead of selecting, score these fixed combinations of candidates (names as "
                        "printed, e.g. audioset_m0,s2_run_1s) under each combination rule")
    parser.add_argument("--folds", type=int, default=0,
                        help="k-fold cross-validation: each run folder holds fold0..fold{K-1}")
    args = parser.parse_args()
    if args.folds and (args.heads or args.baseline):
        parser.error("--heads and --baseline were trained on the default split: not with --folds")

    from classifier.head_file import combine_probabilities
    from classifier.metrics import compute_metrics
    from classifier.pretrained import Head, load_head
    from classifier.readers import cache_clipset, load_clipset
    from classifier.train import TrainConfig, split_holdout

    release = args.shared / "data" / "audioset_v1_embeddings"
    def clips(name: str):
        if args.cache is None:
            return load_clipset(release / name)
        return cache_clipset(release / name, args.cache / f"clips_{name}.npz")

    evaluation = clips("eval")
    tmp = Path(tempfile.mkdtemp(prefix="select_ensemble_"))
    candidates = {}  # name -> (run, int8 bytes, held-out member probs, eval member probs)
    entries = []  # (name, group: at most one candidate per group, head)
    fold_maps = {}  # k-fold runs: name -> held-out mAP of each fold
    folds: list[np.ndarray] = []  # k-fold runs: row positions in `holdout` of each fold's clips
    if args.folds:
        everything = clips("bal_train")
        holdout = everything.subset(np.argsort(everything.ids, kind="stable"))  # split_holdout's order
        for run in args.runs:
            head, out_of_fold, eval_preds, fold_maps[run.name], fold_rows = fold_candidate(
                run, args.folds, holdout, evaluation, args.cache)
            if folds and any(not np.array_equal(f, g) for f, g in zip(folds, fold_rows, strict=True)):
                raise SystemExit(f"{run}: its folds split the clips differently (another --holdout-seed?)")
            folds = fold_rows
            size = head.save(tmp / f"{run.name}.int8.npz", dtype="int8").stat().st_size
            candidates[run.name] = (run.name, size, out_of_fold, eval_preds)
    else:
        _, holdout = split_holdout(TrainConfig(), clips("bal_train"))
    for run in args.runs if not args.folds else ():
        run_head = load_head(run / "head.npz")
        best_single = single_snapshot_head(run, run_head, tmp / f"{run.name}_1s.npz")
        entries += [(run.name, run.name, run_head), (f"{run.name}_1s", run.name, best_single)]
    for path in args.heads:
        head = load_head(path)
        for i, (config, weights) in enumerate(zip(head.member_configs, head.member_weights, strict=True)):
            name = f"{path.stem}_m{i}"
            entries.append((name, name, Head.from_weights([config], [weights], head.class_names, name)))
    if not entries and not candidates:
        parser.error("give run folders and/or --heads")
    for name, group, head in entries:
        size = head.save(tmp / f"{name}.int8.npz", dtype="int8").stat().st_size
        candidates[name] = (group, size, *cached_predictions(head, args.cache, holdout, evaluation))
    for name, (_, size, holdout_preds, eval_preds) in candidates.items():
        scores = np.mean(holdout_preds, axis=0)
        row = {"candidate": name, "members": len(holdout_preds), "int8_MB": round(size / 1e6, 2),
               "holdout_mAP": round(compute_metrics(holdout.y, scores).mAP, 4),
               "eval_mAP": round(compute_metrics(evaluation.y, np.mean(eval_preds, axis=0)).mAP, 4)}
        if name in fold_maps:
            row |= {"holdout": f"out of fold, {len(holdout)} clips",
                    "fold_mAPs": [round(m, 4) for m in fold_maps[name]],
                    "fold_mean": round(float(np.mean(fold_maps[name])), 4),
                    "within_fold_ranks_mAP": round(
                        compute_metrics(holdout.y, within_fold_ranks(scores, folds)).mAP, 4)}
        print(json.dumps(row), flush=True)
    if len(fold_maps) >= 2:
        compare_best_runs(holdout, candidates, fold_maps, folds[0])

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

    rules = COMBINE_RULES if args.combine == "both" else (args.combine,)
    if args.score:
        for combination in args.score:
            names = combination.split(",")
            unknown = [n for n in names if n not in candidates]
            if unknown:
                parser.error(f"--score {combination}: no candidate named {', '.join(unknown)}")
            for rule in rules:
                report_step(rule, names, holdout_map(names, rule))
        return

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
    for rule in rules:
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
