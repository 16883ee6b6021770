"""Own-sounds benchmark: a user's small single-label data set, made from the AudioSet embedding release.

    python benchmarks/own_sounds.py [--clips 5 20 100] [--draws 5] [--out runs/own_sounds]

Ten AudioSet classes that (almost) never occur together are chosen from balanced_train's label
co-occurrence counts (:func:`choose_classes`, printed with their clip counts); the training pool is the
balanced_train clips with exactly one of them, the test set the eval clips with exactly one of them. For
each number of clips per class N, ``--draws`` random draws of N clips per class (all of a class's clips when
it has fewer: printed) are trained on, and every model is scored on the whole test set:

- ``audiotag train``'s automatic choice: :func:`classifier.autotrain.autotrain`, the code path of
  ``audiotag train DIR`` after extraction (cross-validated choice, refit on all clips);
- the plain scikit-learn linear probe on mean-pooled embeddings (StandardScaler + LogisticRegression with
  scikit-learn's defaults), and the same with LogisticRegressionCV choosing C (both written here, not with
  audiotag's code);
- each candidate alone, trained on all N clips per class as the automatic choice would train it: audiotag's
  linear probe and the attention models.

Prints accuracy and macro-F1 (mean ± standard deviation over the draws) as Markdown tables, how often each
model was chosen and how long the automatic training took, and the wall time; writes every number (also each
draw's cross-validation table) to OUT/results.json. CPU-heavy: about 15 minutes on 2 cores with the
defaults (the attention models' fits dominate).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from classifier.autotrain import autotrain
from classifier.clipset import ClipSet
from classifier.crossval import ATTENTION_KINDS, LINEAR, fit_member, predict
from classifier.labels import load_class_labels, load_ontology
from classifier.pretrained import load_head
from classifier.readers import cache_clipset

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT.parent / "shared" / "data" / "audioset_v1_embeddings"
NUM_CLASSES = 10
MAX_CLASS_CLIPS = 1000  # leave out the huge parent classes (Speech, Music): a user's classes are specific
MIN_CLASS_CLIPS = 105  # enough balanced_train clips for 100 per class after removing co-occurring ones
TASK = "multiclass"
PLAIN = "sklearn probe (defaults)"
TUNED = "sklearn probe (LogisticRegressionCV)"


def choose_classes(train: ClipSet, count: int = NUM_CLASSES) -> list[int]:
    """Greedy: repeatedly add the class that keeps the most clips with exactly one chosen label (the
    smallest class's count, capped at 100), then the fewest co-occurrences with the chosen classes, then the
    most clips; never a class with an ontology ancestor or descendant among the chosen ones,
    nor one with more than MAX_CLASS_CLIPS or fewer than MIN_CLASS_CLIPS clips in balanced_train."""
    y = train.y.astype(np.int64)
    clips = y.sum(axis=0)
    together = y.T @ y
    ancestors = load_ontology().class_ancestors(load_class_labels())
    chosen: list[int] = []
    for _ in range(count):
        best, best_key = None, None
        for c in np.flatnonzero((clips >= MIN_CLASS_CLIPS) & (clips <= MAX_CLASS_CLIPS)):
            if c in chosen or any(c in ancestors[a] or a in ancestors[c] for a in chosen):
                continue
            key = (min(exclusive_counts(y, [*chosen, c]).min(), 100), -together[chosen, c].sum(), clips[c])
            if best_key is None or key > best_key:
                best, best_key = int(c), key
        chosen.append(best)
    return chosen


def exclusive_counts(y: np.ndarray, classes: list[int]) -> np.ndarray:
    """Clips per class among those labelled with exactly one of ``classes`` (int [len(classes)])."""
    part = y[:, classes]
    return part[part.sum(axis=1) == 1].sum(axis=0)


def single_label_subset(data: ClipSet, classes: list[int]) -> ClipSet:
    """The clips with exactly one of ``classes``, labelled with those classes only."""
    part = data.y[:, classes]
    keep = np.flatnonzero(part.sum(axis=1) == 1)
    return ClipSet(x=data.x[keep], mask=data.mask[keep], y=part[keep], ids=data.ids[keep],
                   class_names=[data.class_names[c] for c in classes])


def draw(pool: ClipSet, per_class: int, seed: int) -> ClipSet:
    """``per_class`` random clips of each class (all of them when it has fewer)."""
    rng = np.random.default_rng(seed)
    rows = [rng.choice(members, min(per_class, len(members)), replace=False)
            for members in (np.flatnonzero(pool.y[:, k]) for k in range(pool.num_classes))]
    return pool.subset(np.sort(np.concatenate(rows)))


def mean_pooled(data: ClipSet) -> np.ndarray:
    m = data.mask[..., None]
    return (data.x * m).sum(axis=1) / m.sum(axis=1)


def sklearn_probes(train: ClipSet, test: ClipSet) -> dict[str, np.ndarray]:
    """The plain probes, as a user would write them (predicted class per test clip)."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, labels, x_test = mean_pooled(train), train.y.argmax(axis=1), mean_pooled(test)
    plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, labels)
    with warnings.catch_warnings():  # LogisticRegressionCV announces changes of its defaults
        warnings.simplefilter("ignore", FutureWarning)
        tuned = make_pipeline(StandardScaler(), LogisticRegressionCV(max_iter=1000)).fit(x, labels)
    return {PLAIN: plain.predict(x_test), TUNED: tuned.predict(x_test)}


def scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_F1": float(f1_score(truth, predicted, average="macro"))}


def run_draw(pool: ClipSet, test: ClipSet, per_class: int, seed: int, out: Path) -> dict:
    """Every model trained on one draw and scored on the test set."""
    train = draw(pool, per_class, seed)
    truth = test.y.argmax(axis=1)
    started = time.perf_counter()
    result = autotrain(train, out / "auto", seed=seed, source=f"draw {seed} of {per_class} per class")
    auto_seconds = time.perf_counter() - started
    auto = load_head(result.head_path).predict_arrays(test.x, test.mask).argmax(axis=1)
    row = {"clips": len(train), "chosen": result.chosen, "auto_seconds": auto_seconds,
           "cv": [r.row(TASK) for r in result.results], "models": {"auto": scores(truth, auto)}}
    for name, predicted in sklearn_probes(train, test).items():
        row["models"][name] = scores(truth, predicted)
    ordered = train.subset(np.argsort(train.ids, kind="stable"))  # as autotrain trains the winner
    for kind in (LINEAR, *ATTENTION_KINDS):
        config, weights = fit_member(kind, ordered, TASK, out / "alone" / kind, {}, seed, f"alone {seed}")
        row["models"][kind] = scores(truth, predict(config, weights, test).argmax(axis=1))
    return row


def table(rows: dict[int, list[dict]], models: list[str], metric: str) -> str:
    """Markdown: one line per model, per N the metric's mean ± standard deviation over the draws (the
    standard error of the mean is the deviation / sqrt(draws))."""
    lines = [f"| {metric} | " + " | ".join(f"N = {n}" for n in rows) + " |", "|---" * (1 + len(rows)) + "|"]
    for model in models:
        cells = []
        for draws in rows.values():
            values = np.array([d["models"][model][metric] for d in draws])
            spread = values.std(ddof=1) if len(values) > 1 else float("nan")
            cells.append(f"{values.mean():.3f} ± {spread:.3f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[5, 20, 100], help="clips per class (N)")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "own_sounds")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs", help="clip-set caches (.npz)")
    args = parser.parse_args()
    started = time.perf_counter()
    train_all = cache_clipset(RELEASE / "bal_train", args.cache_dir / "clips_bal_train.npz")
    eval_all = cache_clipset(RELEASE / "eval", args.cache_dir / "clips_eval.npz")
    classes = choose_classes(train_all)
    y = train_all.y.astype(np.int64)
    print("classes (balanced_train clips with exactly one of them, eval clips likewise):")
    for c, n, m in zip(classes, exclusive_counts(y, classes), exclusive_counts(eval_all.y.astype(np.int64),
                                                                                 classes), strict=True):
        print(f"  {c:3d}  {train_all.class_names[c]:40s} {n:5d} {m:5d}")
    together = (y[:, classes].T @ y[:, classes]) - np.diag(y[:, classes].sum(axis=0))
    print(f"clips labelled with two of them in balanced_train: {int(together.sum() // 2)}")
    pool, test = single_label_subset(train_all, classes), single_label_subset(eval_all, classes)
    rows: dict[int, list[dict]] = {}
    for per_class in args.clips:
        short = [f"{name} ({n})" for name, n in zip(pool.class_names, pool.class_counts(), strict=True)
                 if n < per_class]
        if short:
            print(f"N={per_class}: fewer clips than that in {', '.join(short)}: all of them are used")
        rows[per_class] = []
        for seed in range(args.draws):
            row = run_draw(pool, test, per_class, seed, args.out / f"n{per_class}" / f"draw{seed}")
            rows[per_class].append(row)
            print(f"N={per_class} draw {seed}: chose {row['chosen']} in {row['auto_seconds']:.0f} s; "
                  + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in row["models"].items()), flush=True)
    models = ["auto", PLAIN, TUNED, LINEAR, *ATTENTION_KINDS]
    for metric in ("accuracy", "macro_F1"):
        print()
        print(table(rows, models, metric))
    for per_class, draws in rows.items():
        chosen = [d["chosen"] for d in draws]
        print(f"N={per_class}: chosen " + ", ".join(f"{k} x{chosen.count(k)}" for k in sorted(set(chosen)))
              + f"; automatic training {np.mean([d['auto_seconds'] for d in draws]):.0f} s per draw")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"classes": [train_all.class_names[c] for c in classes], "test_clips": len(test),
               "runs": {str(k): v for k, v in rows.items()}}
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wall time {time.perf_counter() - started:.0f} s; results in {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
