"""Training loop for the classifier heads: balanced batches, held-out model selection, resumable checkpoints.

``train(TrainConfig(...))`` loads the training clips with :func:`classifier.readers.load_clipset`, splits
off a seeded held-out part (never the eval set), trains with a tf.function step, evaluates the held-out part
every ``eval_every`` iterations, and writes into ``out_dir``:

  checkpoint.npz          model + optimizer + sampler/RNG state (atomic, every ``checkpoint_every`` its)
  snapshots/iter_N.npz    model weights at each evaluation point (for selection and snapshot averaging)
  holdout_preds/iter_N.npy  held-out clip probabilities at each evaluation point (float16)
  metrics.csv, curve.png  the training curve
  head.npz                the selected head (see :mod:`classifier.head_file`)

An interrupted run restarted with the same config resumes from ``checkpoint.npz`` and produces the same
weights as an uninterrupted one (on CPU, with op determinism enabled).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.clipset import ClipSet
from classifier.head_file import TASK_OUTPUTS, TASKS, save_head, save_npz_atomic
from classifier.inference import (
    TRANSFORMER_LAYERS,
    TRANSFORMER_NUM_HEADS,
    Member,
    check_context,
    check_transformer,
)
from classifier.sampling import BalancedSampler, holdout_split, kfold_split
from classifier.tasks import TaskError, resolve_task
from safeio.artifacts import BrokenFileError, read_npz
from safeio.atomic import atomic_output, remove_stale_temporaries
from safeio.lock import FolderLock

logger = logging.getLogger(__name__)

PROBABILITY_EPS = 1e-7  # the loss clips probabilities to [eps, 1 - eps]
METRIC_FIELDS = (
    "iteration", "train_loss", "holdout_mAP", "holdout_mAUC", "holdout_d_prime", "lr", "elapsed_s",
)


class TrainError(ValueError):
    """A training run cannot start or continue; the message names the file or setting."""


class CheckpointMismatchError(TrainError):
    """A checkpoint in out_dir was written by a different configuration or is unreadable."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (and so its checkpoints).

    train_data: AudioSet TFRecord dir/file/glob, HDF5 file or extract npz dir (see ``load_clipset``).
    labels_csv: user labels CSV (id,labels) for data without labels in it.
    holdout_fraction: part of the training clips held out for model selection (split seeded by
        ``holdout_seed``, independent of ``seed``); 0 trains on all clips and takes the last ``snapshots``
        evaluation points as the head.
    folds, fold: with ``folds`` >= 2 the held-out part is fold ``fold`` (0-based) of a label-stratified
        ``folds``-fold split (:func:`classifier.sampling.kfold_split`, seeded by ``holdout_seed``) instead
        of ``holdout_fraction``; k runs with folds 0..k-1 score every clip once, out of fold (k-fold
        cross-validation, ``research/select_ensemble.py --folds``). 0: no k-fold split.
    snapshots: number of consecutive evaluation-point snapshots whose predictions the head averages
        (chosen by held-out mAP when there is a held-out part).
    lr_schedule: "constant" or "cosine" (decay from learning_rate to 0 over ``iterations``).
    snapshot_average: "predictions" (the head has one member per snapshot, their probabilities averaged)
        or "weights" (one member whose weights are the snapshots' mean, batch-norm statistics included).
    mixup_alpha: > 0 mixes pairs of clips (Beta(alpha, alpha)) and their labels.
    frame_dropout: each real frame of a training clip is dropped (masked out) with this probability; a clip
        keeps at least one frame.
    time_mask: > 0 masks one run of 0..time_mask consecutive frames per training clip (SpecAugment's time
        mask on the 1-s embedding frames); a clip keeps at least one frame.
    input_dropout: dropout on the 128 embedding dimensions of every frame (training only).
    label_smoothing: targets move toward ``smoothing_target`` by this much: "half" (0.5, the Keras
        definition) or "prior" (each class's frequency in the training clips).
    ontology_smoothing: > 0 raises the target of every ontology ancestor of a clip's labels to at least
        this value (AudioSet's classes only).
    teacher: a head file (an ensemble) whose clip probabilities on the training clips are mixed into the
        targets with weight ``distill_weight`` (knowledge distillation; the held-out part is never scored
        by the teacher for training).
    num_heads, transformer_layers: attention heads per block and number of encoder blocks of the
        "transformer" kind (only for that kind; hidden_units must be a multiple of num_heads).
    context: the output layers also read each frame's neighbour mean (kinds of CONTEXT_KINDS only; see
        classifier.models).
    task: "multilabel" (sigmoid outputs, binary cross-entropy) or "multiclass" (every clip has exactly one
        label: softmax outputs, categorical cross-entropy; label smoothing "half" then moves the targets
        toward the uniform distribution 1/C).
    """

    train_data: str = ""
    out_dir: str = "runs/train"
    labels_csv: str | None = None
    kind: str = "single_attention"
    hidden_units: int = 1024
    num_layers: int = 3
    dropout: float = 0.5
    attention: str = "sigmoid"
    batch_size: int = 500
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    iterations: int = 2000
    eval_every: int = 100
    checkpoint_every: int = 100
    holdout_fraction: float = 0.1
    holdout_seed: int = 0
    folds: int = 0
    fold: int = 0
    balanced: bool = True
    mixup_alpha: float = 0.0
    frame_dropout: float = 0.0
    time_mask: int = 0
    input_dropout: float = 0.0
    label_smoothing: float = 0.0
    smoothing_target: str = "half"
    ontology_smoothing: float = 0.0
    teacher: str | None = None
    distill_weight: float = 0.5
    num_heads: int = TRANSFORMER_NUM_HEADS
    transformer_layers: int = TRANSFORMER_LAYERS
    context: bool = False
    task: str = "multilabel"
    snapshots: int = 1
    snapshot_average: str = "predictions"
    seed: int = 0
    progress: bool = True

    def model_config(self, num_classes: int) -> dict:
        """The keyword arguments of :func:`classifier.models.build_model` for this run."""
        config = {"kind": self.kind, "num_classes": num_classes, "hidden_units": self.hidden_units,
                  "num_layers": self.num_layers, "dropout": self.dropout, "attention": self.attention}
        if self.input_dropout > 0:  # only in configs that use it, so older heads keep their exact configs
            config["input_dropout"] = self.input_dropout
        if self.kind == "transformer":
            config |= {"num_heads": self.num_heads, "transformer_layers": self.transformer_layers}
        if self.context:
            config["context"] = True
        if self.task == "multiclass":  # only in configs that use it, as "context"
            config["output"] = TASK_OUTPUTS[self.task]
        return config

    def check(self) -> None:
        """TrainError naming the setting that is out of range."""
        if self.task not in TASKS:
            raise TrainError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.folds == 0 and self.fold != 0:
            raise TrainError(f"fold {self.fold} needs folds (the number of folds)")
        if self.folds and not (self.folds >= 2 and 0 <= self.fold < self.folds):
            raise TrainError(f"fold must be in 0..folds-1 with folds >= 2, got fold {self.fold} of "
                             f"{self.folds}")
        if not 0.0 <= self.frame_dropout < 1.0:
            raise TrainError(f"frame_dropout must be in [0, 1), got {self.frame_dropout}")
        if self.time_mask < 0:
            raise TrainError(f"time_mask must be >= 0, got {self.time_mask}")
        if not 0.0 <= self.input_dropout < 1.0:
            raise TrainError(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if self.smoothing_target not in ("half", "prior"):
            raise TrainError(f"smoothing_target must be 'half' or 'prior', got {self.smoothing_target!r}")
        if not 0.0 <= self.ontology_smoothing <= 1.0:
            raise TrainError(f"ontology_smoothing must be in [0, 1], got {self.ontology_smoothing}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise TrainError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if self.snapshot_average not in ("predictions", "weights"):
            raise TrainError("snapshot_average must be 'predictions' or 'weights', "
                             f"got {self.snapshot_average!r}")
        if self.kind == "transformer":
            try:
                check_transformer(self.hidden_units, self.num_heads, self.transformer_layers)
            except ValueError as exc:
                raise TrainError(f"transformer: {exc}") from None
        elif (self.num_heads, self.transformer_layers) != (TRANSFORMER_NUM_HEADS, TRANSFORMER_LAYERS):
            raise TrainError(f"num_heads and transformer_layers apply to the transformer kind only, not to "
                             f"{self.kind!r}")
        try:
            check_context(self.kind, self.context)
        except ValueError as exc:
            raise TrainError(str(exc)) from None


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, then make it ``path`` atomically."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        write(f)


def _lr_at(config: TrainConfig, iteration: int) -> float:
    if config.lr_schedule == "constant":
        return config.learning_rate
    if config.lr_schedule == "cosine":
        return 0.5 * config.learning_rate * (1.0 + np.cos(np.pi * iteration / config.iterations))
    raise TrainError(f"unknown lr_schedule {config.lr_schedule!r} (expected 'constant' or 'cosine')")


class _Batches:
    """Training batches (float32 x [B,T,128], mask [B,T], targets [B,C]) with saveable RNG state."""

    def __init__(self, config: TrainConfig, data: ClipSet, targets: np.ndarray | None = None):
        self.config = config
        self.data = data
        self.targets = data.y.astype(np.float32) if targets is None else targets  # [N, C] in [0, 1]
        if config.balanced:
            self.sampler = BalancedSampler(data.y, config.batch_size, seed=config.seed)
        self.rng = np.random.default_rng([config.seed, 1])
        self.prior = data.y.mean(axis=0).astype(np.float32)

    def _drop_frames(self, mask: np.ndarray) -> np.ndarray:
        """Frame dropout and one time mask per clip on bool mask [B, T]; every clip keeps a real frame."""
        c = self.config
        kept = mask.copy()
        if c.frame_dropout > 0:
            kept &= self.rng.random(mask.shape) >= c.frame_dropout
        if c.time_mask > 0:
            frames = np.arange(mask.shape[1])
            width = self.rng.integers(0, c.time_mask + 1, size=len(mask))
            start = self.rng.integers(0, np.maximum(mask.sum(axis=1) - width, 0) + 1)
            kept &= ~((frames >= start[:, None]) & (frames < (start + width)[:, None]))
        empty = ~kept.any(axis=1)
        if empty.any():  # give such clips back one of their real frames, chosen at random
            for row in np.flatnonzero(empty):
                kept[row, self.rng.choice(np.flatnonzero(mask[row]))] = True
        return kept

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        if c.balanced:
            idx = self.sampler.next_batch()
        else:
            idx = self.rng.choice(len(self.data), size=c.batch_size, replace=len(self.data) < c.batch_size)
        mask = self.data.mask[idx]
        if c.frame_dropout > 0 or c.time_mask > 0:
            mask = self._drop_frames(mask)
        x = np.where(mask[..., None], self.data.x[idx], 128).astype(np.float32)
        y = self.targets[idx]
        if c.mixup_alpha > 0:
            lam = self.rng.beta(c.mixup_alpha, c.mixup_alpha, size=len(idx)).astype(np.float32)
            perm = self.rng.permutation(len(idx))
            x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[perm]
            y = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
            mask = mask | mask[perm]
        if c.label_smoothing > 0:
            uniform = 0.5 if c.task == "multilabel" else 1.0 / y.shape[1]
            toward = uniform if c.smoothing_target == "half" else self.prior
            y = y * (1 - c.label_smoothing) + toward * c.label_smoothing
        return x, mask.astype(np.float32), y

    def get_state(self) -> dict[str, np.ndarray]:
        state = {"aug_rng": _rng_state(self.rng)}
        if self.config.balanced:
            state.update({f"sampler/{k}": v for k, v in self.sampler.get_state().items()})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.rng.bit_generator.state = json.loads(bytes(state["aug_rng"]).decode())
        if self.config.balanced:
            prefix = "sampler/"
            self.sampler.set_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def _trajectory_key(config_json: str) -> dict:
    """The settings that determine the weights at a given iteration.

    ``snapshots`` only affects head selection, and with a constant learning rate ``iterations`` only says
    where to stop, so a finished run can be extended by raising it and rerunning. ``out_dir`` and
    ``progress`` do not touch the weights: a run folder can be moved, and resumed with or without a bar.
    """
    config = json.loads(config_json)
    ignored = {"snapshots", "snapshot_average", "out_dir", "progress"}
    ignored |= {k for k, default in _LATER_DEFAULTS.items() if config.get(k, default) == default}
    if config.get("lr_schedule") == "constant":
        ignored.add("iterations")
    return {k: v for k, v in config.items() if k not in ignored}


# Settings added after the first checkpoints were written: at their defaults they leave the trajectory as it
# was, so checkpoints written without them still resume.
_LATER_DEFAULTS = {"frame_dropout": 0.0, "time_mask": 0, "input_dropout": 0.0, "smoothing_target": "half",
                   "ontology_smoothing": 0.0, "teacher": None, "distill_weight": 0.5,
                   "num_heads": TRANSFORMER_NUM_HEADS, "transformer_layers": TRANSFORMER_LAYERS,
                   "context": False, "folds": 0, "fold": 0, "task": "multilabel"}


def _rng_state(rng: np.random.Generator) -> np.ndarray:
    return np.frombuffer(json.dumps(rng.bit_generator.state).encode(), dtype=np.uint8)


def predict_arrays(model, x: np.ndarray, mask: np.ndarray, batch_size: int = 2000) -> np.ndarray:
    """Inference-mode clip probabilities float32 [N, C] of a Keras model on uint8/float x [N,T,128]."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].astype(np.float32)
        mb = mask[i : i + batch_size].astype(np.float32)
        out.append(np.asarray(model({"x": xb, "mask": mb}, training=False)))
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


class Trainer:
    """One training run over in-memory clips; see the module docstring for what it writes."""

    def __init__(self, config: TrainConfig, train_set: ClipSet, holdout: ClipSet | None,
                 targets: np.ndarray | None = None):
        import keras
        import tensorflow as tf

        from classifier.models import build_model

        self.config = config
        self.train_set = train_set
        self.holdout = holdout
        self.out_dir = Path(config.out_dir)
        tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        self.model = build_model(**config.model_config(train_set.num_classes),
                                 max_frames=train_set.x.shape[1])
        self.optimizer = keras.optimizers.Adam(config.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        self.batches = _Batches(config, train_set, targets)
        self.iteration = 0
        self.history: list[dict] = []
        model, optimizer = self.model, self.optimizer
        multiclass = config.task == "multiclass"

        @tf.function
        def step(x, mask, y):
            with tf.GradientTape() as tape:
                p = model({"x": x, "mask": mask}, training=True)
                p = tf.clip_by_value(p, PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)
                if multiclass:  # categorical cross-entropy over the classes
                    loss = -tf.reduce_mean(tf.reduce_sum(y * tf.math.log(p), axis=-1))
                else:  # binary cross-entropy per class
                    loss = -tf.reduce_mean(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        self._step = step

    # -- checkpoints -------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.npz"

    def _config_json(self) -> str:
        return json.dumps(dataclasses.asdict(self.config) | {"progress": None}, sort_keys=True)

    def save_checkpoint(self) -> None:
        arrays = {f"model/{i}": np.asarray(v) for i, v in enumerate(self.model.variables)}
        arrays |= {f"opt/{i}": np.asarray(v) for i, v in enumerate(self.optimizer.variables)}
        arrays |= self.batches.get_state()
        arrays["iteration"] = np.int64(self.iteration)
        arrays["history"] = np.array(json.dumps(self.history))
        arrays["config"] = np.array(self._config_json())
        save_npz_atomic(self.checkpoint_path, arrays)

    def load_checkpoint(self) -> bool:
        """Restore from checkpoint.npz when present; returns whether it did."""
        path = self.checkpoint_path
        if not path.is_file():
            return False
        remedy = "delete it to start this run over from the beginning, or use another output folder"
        try:
            data = read_npz(path)
        except BrokenFileError as exc:
            raise CheckpointMismatchError(f"{exc}; not a usable training checkpoint: {remedy}") from None
        expected = {"config", "iteration", "history"}
        expected |= {f"model/{i}" for i in range(len(self.model.variables))}
        try:
            previous = _trajectory_key(str(data["config"])) if expected <= set(data) else None
        except ValueError:
            previous = None
        if previous is None:
            raise CheckpointMismatchError(f"{path}: not a training checkpoint of audiotag: {remedy}")
        if previous != _trajectory_key(self._config_json()):
            raise CheckpointMismatchError(
                f"{path}: written by a different training configuration; use another out_dir or delete it")
        for i, v in enumerate(self.model.variables):
            v.assign(data[f"model/{i}"])
        for i, v in enumerate(self.optimizer.variables):
            v.assign(data[f"opt/{i}"])
        self.batches.set_state(data)
        self.iteration = int(data["iteration"])
        self.history = json.loads(str(data["history"]))
        logger.info("resumed %s at iteration %d", path, self.iteration)
        return True

    # -- evaluation --------------------------------------------------------------------------------------
    def _evaluate(self, train_loss: float, lr: float, elapsed: float) -> None:
        from classifier.metrics import compute_metrics

        it = self.iteration
        row = {"iteration": it, "train_loss": train_loss, "lr": lr, "elapsed_s": elapsed,
               "holdout_mAP": float("nan"), "holdout_mAUC": float("nan"), "holdout_d_prime": float("nan")}
        if self.holdout is not None and len(self.holdout):
            probs = predict_arrays(self.model, self.holdout.x, self.holdout.mask)
            m = compute_metrics(self.holdout.y, probs)
            row |= {"holdout_mAP": m.mAP, "holdout_mAUC": m.mAUC, "holdout_d_prime": m.d_prime}
            save_npy = self.out_dir / "holdout_preds" / f"iter_{it:06d}.npy"
            _atomic_write(save_npy, lambda f: np.save(f, probs.astype(np.float16)))
        weights = {f"w/{i}": np.asarray(v) for i, v in enumerate(self.model.weights)}
        save_npz_atomic(snapshot_path(self.out_dir, it), weights)
        self.history.append(row)
        logger.info("iteration %d: loss %.4f held-out mAP %.4f", it, train_loss, row["holdout_mAP"])

    def write_logs(self) -> None:
        """metrics.csv and curve.png from the history so far."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(self.history)
        _atomic_write(self.out_dir / "metrics.csv", lambda f: f.write(buf.getvalue().encode()))
        if self.history:
            _atomic_write(self.out_dir / "curve.png", lambda f: plot_curve(self.history, f))

    # -- loop --------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Train up to config.iterations, resuming from checkpoint.npz when present."""
        from tqdm import tqdm

        c = self.config
        self.load_checkpoint()
        start = time.perf_counter()
        elapsed0 = self.history[-1]["elapsed_s"] if self.history else 0.0
        losses: list[float] = []
        with tqdm(total=c.iterations, initial=self.iteration, disable=not c.progress, desc="train") as bar:
            while self.iteration < c.iterations:
                lr = _lr_at(c, self.iteration)
                self.optimizer.learning_rate.assign(lr)
                x, mask, y = self.batches.next()
                losses.append(float(self._step(x, mask, y)))
                self.iteration += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if self.iteration % c.eval_every == 0 or self.iteration == c.iterations:
                    self._evaluate(float(np.mean(losses)), lr, elapsed0 + time.perf_counter() - start)
                    losses = []
                    self.write_logs()
                if self.iteration % c.checkpoint_every == 0 or self.iteration == c.iterations:
                    self.save_checkpoint()


def plot_curve(history: list[dict], f) -> None:
    """Training loss and held-out mAP against iteration, as PNG into file object ``f``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r["iteration"] for r in history]
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(its, [r["train_loss"] for r in history], color="tab:blue")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("training loss (cross-entropy)", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(its, [r["holdout_mAP"] for r in history], color="tab:red", marker=".")
    ax2.set_ylabel("held-out mAP", color="tab:red")
    fig.tight_layout()
    fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def split_holdout(config: TrainConfig, data: ClipSet) -> tuple[ClipSet, ClipSet | None]:
    """(training part, held-out part or None) of ``data`` as configured.

    Rows are first sorted by clip id, so the split and the batches do not depend on the source's order.
    """
    data = data.subset(np.argsort(data.ids, kind="stable"))
    if config.folds:
        try:
            parts = kfold_split(data.y, config.folds, seed=config.holdout_seed)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        holdout_idx = parts[config.fold]
        train_idx = np.concatenate([p for k, p in enumerate(parts) if k != config.fold])
        return data.subset(np.sort(train_idx)), data.subset(holdout_idx)
    if config.holdout_fraction <= 0:
        return data, None
    train_idx, holdout_idx = holdout_split(data.y, config.holdout_fraction, seed=config.holdout_seed)
    if len(holdout_idx) == 0 or len(train_idx) == 0:
        logger.warning("%d clips are too few to hold out a fraction of %g: training on all of them, without "
                       "held-out scores", len(data), config.holdout_fraction)
        return data, None
    return data.subset(train_idx), data.subset(holdout_idx)


def snapshot_path(out_dir: str | os.PathLike[str], iteration: int) -> Path:
    """File of a run's model weights at ``iteration`` (written at every evaluation point)."""
    return Path(out_dir) / "snapshots" / f"iter_{iteration:06d}.npz"


def load_snapshot(out_dir: str | os.PathLike[str], iteration: int) -> list[np.ndarray]:
    """A run's model weights at ``iteration``, in ``model.weights`` order."""
    path = snapshot_path(out_dir, iteration)
    try:
        arrays = read_npz(path)
        return [arrays[f"w/{j}"] for j in range(len(arrays))]
    except (BrokenFileError, KeyError) as exc:
        raise TrainError(f"{path}: damaged snapshot ({exc}); delete checkpoint.npz in {out_dir} to train "
                         "this run again") from None


def select_snapshots(
    config: TrainConfig, history: list[dict], holdout: ClipSet | None
) -> tuple[list[int], float]:
    """Iterations of the ``config.snapshots`` consecutive evaluation points forming the head.

    With a held-out part: the window whose averaged held-out predictions score the best mAP (returned with
    that mAP); without: the last window (mAP nan).
    """
    from classifier.metrics import compute_metrics

    its = [int(r["iteration"]) for r in history]
    k = max(1, min(config.snapshots, len(its)))
    if holdout is None:
        return its[-k:], float("nan")
    out = Path(config.out_dir) / "holdout_preds"
    preds = [np.load(out / f"iter_{it:06d}.npy").astype(np.float32) for it in its]
    best, best_map = its[-k:], -1.0
    for end in range(k, len(its) + 1):
        if config.snapshot_average == "weights" and k > 1:
            member = Member(config.model_config(holdout.num_classes),
                            average_weights([load_snapshot(config.out_dir, it) for it in its[end - k : end]]))
            window_preds = member.clip_probs(holdout.x.astype(np.float32), holdout.mask)
        else:
            window_preds = np.mean(preds[end - k : end], axis=0)
        score = compute_metrics(holdout.y, window_preds).mAP
        if score > best_map:
            best, best_map = its[end - k : end], score
    return best, best_map


def average_weights(snapshots: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean float32 of several snapshots' weights (same model; batch-norm statistics too)."""
    return [np.mean([np.asarray(s[j], np.float64) for s in snapshots], axis=0).astype(np.float32)
            for j in range(len(snapshots[0]))]


def training_targets(config: TrainConfig, train_set: ClipSet) -> np.ndarray | None:
    """Training targets float32 [N, C] when they are not just the labels (None otherwise): ontology
    ancestors of the labels raised to ``ontology_smoothing``, then mixed with the teacher head's clip
    probabilities (weight ``distill_weight``) when ``config.teacher`` is set."""
    if not config.teacher and config.ontology_smoothing <= 0:
        return None
    targets = train_set.y.astype(np.float32)
    if config.ontology_smoothing > 0:
        from classifier.labels import load_class_labels, load_ontology

        labels = load_class_labels()
        if list(train_set.class_names) != labels.names:
            raise TrainError("ontology_smoothing needs AudioSet's 527 classes; this data has others")
        ancestor_of = np.zeros((len(labels), len(labels)), np.float32)  # [child, ancestor]
        for child, ancestors in enumerate(load_ontology().class_ancestors(labels)):
            ancestor_of[child, ancestors] = 1.0
        raised = (train_set.y.astype(np.float32) @ ancestor_of > 0) * np.float32(config.ontology_smoothing)
        targets = np.maximum(targets, raised)
    if config.teacher:
        from classifier.pretrained import load_head

        teacher = load_head(config.teacher)
        if list(teacher.class_names) != list(train_set.class_names):
            raise TrainError(f"{config.teacher}: the teacher head's classes differ from the training data's")
        logger.info("scoring %d training clips with the teacher %s", len(train_set), config.teacher)
        probs = teacher.predict_arrays(train_set.x.astype(np.float32), train_set.mask.astype(np.float32))
        w = np.float32(config.distill_weight)
        targets = w * probs + (1 - w) * targets
    return targets.astype(np.float32)


def train_clipset(config: TrainConfig, data: ClipSet) -> Path:
    """Train on in-memory clips (held-out split as configured) and write ``out_dir/head.npz``; returns it."""
    if len(data) == 0 or not data.y.any():
        raise TrainError(f"{config.train_data or 'the training data'}: no clip has a label; nothing to learn "
                         "(check the labels, or that the labels CSV ids match the clips)")
    config.check()
    try:
        resolve_task(data.y, config.task, config.train_data or "the training data")
    except TaskError as exc:
        raise TrainError(str(exc)) from None
    train_set, holdout = split_holdout(config, data)
    with FolderLock(config.out_dir):  # one run per run folder (the CLI has taken it already, maybe waiting)
        remove_stale_temporaries(Path(config.out_dir), recursive=True)  # left by a killed run
        trainer = Trainer(config, train_set, holdout, training_targets(config, train_set))
        trainer.run()
        chosen, holdout_map = select_snapshots(config, trainer.history, holdout)
        out_dir = Path(config.out_dir)
        weights = [load_snapshot(out_dir, it) for it in chosen]
        info = {
            "train_config": dataclasses.asdict(config) | {"progress": None},
            "snapshot_iterations": chosen,
            "holdout_mAP": holdout_map if np.isfinite(holdout_map) else None,  # strict JSON
            "num_train_clips": len(train_set),
            "num_holdout_clips": 0 if holdout is None else len(holdout),
            "train_counts": train_set.class_counts().tolist(),
        }
        member = config.model_config(data.num_classes)
        if config.snapshot_average == "weights":
            weights = [average_weights(weights)]
        path = save_head(out_dir / "head.npz", [member] * len(weights), weights, data.class_names,
                         name=out_dir.name, info=info, task=config.task)
        logger.info("head from iterations %s (held-out mAP %.4f) written to %s", chosen, holdout_map, path)
        return path


def train(config: TrainConfig) -> Path:
    """Load ``config.train_data`` (+ ``labels_csv``), train, and return the path of the selected head."""
    from classifier.readers import load_clipset

    data = load_clipset(config.train_data, labels_csv=config.labels_csv)
    logger.info("training on %d clips, %d classes from %s", len(data), data.num_classes, config.train_data)
    return train_clipset(config, data)
