"""Many-snapshot averaging inside one training run: prediction averaging against weight averaging.

    python research/snapshot_average.py RUN_DIR [--windows 1 2 3 5 8] [--cache DIR]

RUN_DIR is an `audiotag train` folder on AudioSet balanced_train (default held-out split). For each window
size k, the k consecutive evaluation-point snapshots chosen on held-out (classifier.train.select_snapshots)
are combined by averaging their predictions (k members) and by averaging their weights (one member,
batch-norm statistics averaged too); prints held-out mAP (which chose) and eval mAP (report only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

RELEASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "audioset_v1_embeddings"


def main() -> None:
    from classifier.inference import Member
    from classifier.metrics import compute_metrics
    from classifier.readers import cache_clipset, load_clipset
    from classifier.train import TrainConfig, average_weights, load_snapshot, select_snapshots, split_holdout

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--windows", nargs="+", type=int, default=[1, 2, 3, 5, 8])
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping the clip sets as npz")
    args = parser.parse_args()

    def clips(name: str):
        if args.cache is None:
            return load_clipset(RELEASE / name)
        return cache_clipset(RELEASE / name, args.cache / f"clips_{name}.npz")

    with np.load(args.run / "checkpoint.npz") as z:
        saved = json.loads(str(z["config"]))
        history = json.loads(str(z["history"]))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in saved.items() if k in fields and v is not None})
    config.out_dir = str(args.run)
    _, holdout = split_holdout(config, clips("bal_train"))
    evaluation = clips("eval")
    member_config = config.model_config(holdout.num_classes)

    def scores(snapshots: list[list[np.ndarray]]) -> tuple[float, float]:
        members = [Member(member_config, w) for w in snapshots]
        return tuple(compute_metrics(data.y, np.mean([m.clip_probs(data.x.astype(np.float32), data.mask)
                                                      for m in members], axis=0)).mAP
                     for data in (holdout, evaluation))

    print(f"{args.run.name}: {len(history)} evaluation points, last iteration {history[-1]['iteration']}")
    print("| snapshots | chosen iterations | predictions averaged: held-out / eval | weights averaged: "
          "held-out / eval |\n|---|---|---|---|")
    for k in args.windows:
        rows = {}
        for rule in ("predictions", "weights"):
            chosen, _ = select_snapshots(dataclasses.replace(config, snapshots=k, snapshot_average=rule),
                                         history, holdout)
            weights = [load_snapshot(args.run, it) for it in chosen]
            rows[rule] = (chosen, scores(weights if rule == "predictions" else [average_weights(weights)]))
        (chosen_p, (hp, ep)), (chosen_w, (hw, ew)) = rows["predictions"], rows["weights"]
        print(f"| {k} | {chosen_p[0]}–{chosen_p[-1]} / {chosen_w[0]}–{chosen_w[-1]} | {hp:.4f} / {ep:.4f} | "
              f"{hw:.4f} / {ew:.4f} |", flush=True)


if __name__ == "__main__":
    main()
