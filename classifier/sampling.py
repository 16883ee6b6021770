"""Balanced mini-batch sampling, the held-out split and k-fold splits, all seeded (the sampler resumable).

The balanced sampler follows the logic of Kong's reference ``BalancedDataGenerator``: a queue of class
indices is refilled with shuffled permutations of all classes; each batch takes the next ``batch_size``
entries of the queue and, for every class slot, the next clip of that class from a per-class shuffled
list, which is reshuffled each time it is used up.  Every class therefore appears (almost) equally often,
cycling over all classes.  Unlike the reference, a class asked for more clips than remain in its list wraps
around, so every batch has exactly ``batch_size`` clips.
"""

from __future__ import annotations

import json

import numpy as np

RAREST_LABEL_WEIGHT = 4  # kfold_split: how much more a clip's rarest label counts than its others


class BalancedSampler:
    """Yields index batches int64 [batch_size] into the rows of ``y`` (bool [N, C]), balanced over classes.

    Classes without positives are skipped.  :meth:`get_state` / :meth:`set_state` capture everything
    (RNG, queue, per-class order and pointers) so that a resumed run draws the same batches.
    """

    def __init__(self, y: np.ndarray, batch_size: int, seed: int = 0):
        if y.ndim != 2:
            raise ValueError(f"y must be 2-D [N, C], got shape {y.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.classes = np.flatnonzero(y.any(axis=0))
        if len(self.classes) == 0:
            raise ValueError("no class has a positive example; nothing to sample")
        self.members = [np.flatnonzero(y[:, k]) for k in self.classes]
        for m in self.members:
            self.rng.shuffle(m)
        self.pointers = np.zeros(len(self.classes), dtype=np.int64)
        self.queue = np.zeros(0, dtype=np.int64)

    def next_batch(self) -> np.ndarray:
        """The next batch of row indices, int64 [batch_size]."""
        while len(self.queue) < self.batch_size:
            self.queue = np.concatenate([self.queue, self.rng.permutation(len(self.classes))])
        slots, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        counts = np.bincount(slots, minlength=len(self.classes))
        picked = []
        for c in np.flatnonzero(counts):
            members, need = self.members[c], int(counts[c])
            while need > 0:
                take = members[self.pointers[c] : self.pointers[c] + need]
                picked.append(take)
                need -= len(take)
                self.pointers[c] += len(take)
                if self.pointers[c] >= len(members):
                    self.pointers[c] = 0
                    self.rng.shuffle(members)
        return np.concatenate(picked).astype(np.int64)

    def get_state(self) -> dict[str, np.ndarray]:
        """The sampler's full state as numpy arrays (storable in an .npz)."""
        return {
            "rng": np.frombuffer(json.dumps(self.rng.bit_generator.state).encode(), dtype=np.uint8),
            "members": np.concatenate(self.members),
            "pointers": self.pointers.copy(),
            "queue": self.queue.copy(),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state from :meth:`get_state` (for the same ``y``)."""
        sizes = [len(m) for m in self.members]
        flat = np.asarray(state["members"], dtype=np.int64)
        if len(flat) != sum(sizes) or len(state["pointers"]) != len(sizes):
            raise ValueError("sampler state does not match this label matrix")
        self.members = np.split(flat.copy(), np.cumsum(sizes)[:-1])
        self.pointers = np.asarray(state["pointers"], dtype=np.int64).copy()
        self.queue = np.asarray(state["queue"], dtype=np.int64).copy()
        self.rng.bit_generator.state = json.loads(bytes(np.asarray(state["rng"], dtype=np.uint8)).decode())


def holdout_split(y: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, roughly label-stratified split of rows of ``y`` (bool [N, C]): (train_idx, holdout_idx).

    Clips are visited in random order, rarest label first; a clip goes to the held-out part while its
    rarest label has fewer than ``round(fraction * count)`` held-out clips (at least 1 for classes with
    >= 2 clips) and the held-out part is below ``fraction * N``.  Both index arrays are sorted int64.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    n = len(y)
    counts = y.sum(axis=0)
    target = np.where(counts >= 2, np.maximum(1, np.round(fraction * counts)), 0)
    rarity = np.where(y, counts[None, :], np.iinfo(np.int64).max).min(axis=1)
    rarest = np.where(y.any(axis=1), np.argmin(np.where(y, counts[None, :], np.inf), axis=1), -1)
    order = rng.permutation(n)
    order = order[np.argsort(rarity[order], kind="stable")]
    taken = np.zeros(len(counts), dtype=np.int64)
    held = np.zeros(n, dtype=bool)
    budget, used = round(fraction * n), 0
    for i in order:
        if used >= budget:
            break
        c = rarest[i]
        if c < 0 or taken[c] < target[c]:
            held[i] = True
            taken[y[i]] += 1
            used += 1
    return np.flatnonzero(~held), np.flatnonzero(held)


def kfold_split(y: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded, label-stratified partition of the rows of ``y`` (bool [N, C]) into ``folds`` parts.

    Clips are visited in random order, rarest label first (as in :func:`holdout_split`). Each goes to the
    fold that lacks most of its labels' shares (``count / folds`` per class; the shortfall of the clip's
    rarest label weighs ``RAREST_LABEL_WEIGHT`` times more than each label's), ties to the emptier fold,
    among the folds that can still grow with all sizes differing by at most one. On balanced_train (5
    folds) every class's count per fold is within 3 of its share. Returns ``folds`` sorted int64 index
    arrays; every row is in exactly one.
    """
    if folds < 2:
        raise ValueError(f"k-fold needs at least 2 folds, got {folds}")
    n = len(y)
    if n < folds:
        raise ValueError(f"{n} clips cannot fill {folds} folds")
    rng = np.random.default_rng(seed)
    counts = y.sum(axis=0)
    share = counts / folds
    rarity = np.where(y, counts[None, :], np.iinfo(np.int64).max).min(axis=1)
    order = rng.permutation(n)
    order = order[np.argsort(rarity[order], kind="stable")]
    base, extra = divmod(n, folds)  # `extra` folds get base + 1 clips
    sizes = np.zeros(folds, dtype=np.int64)
    per_class = np.zeros((folds, y.shape[1]), dtype=np.int64)
    fold_of = np.empty(n, dtype=np.int64)
    for i in order:
        labels = np.flatnonzero(y[i])
        shortfall = np.zeros(folds)
        if len(labels):
            need = share[labels] - per_class[:, labels]  # [folds, labels]
            shortfall = RAREST_LABEL_WEIGHT * need[:, np.argmin(counts[labels])] + need.sum(axis=1)
        can_grow = (sizes < base) | ((sizes == base) & (np.count_nonzero(sizes > base) < extra))
        # folds' shortfalls differ by whole clips, so scaling by n + 1 ranks shortfall before size
        key = np.where(can_grow, shortfall * (n + 1) - sizes, -np.inf)
        fold = int(np.argmax(key))
        fold_of[i] = fold
        sizes[fold] += 1
        per_class[fold] += y[i]
    return [np.flatnonzero(fold_of == k) for k in range(folds)]
