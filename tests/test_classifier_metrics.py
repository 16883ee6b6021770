"""compute_metrics against hand-computed values, perfect and random scores, and class exclusion."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from classifier.metrics import compute_metrics, d_prime

Y_TRUE = np.array([
    [1, 0, 0, 1],
    [0, 1, 0, 1],
    [1, 0, 0, 1],
    [0, 0, 0, 1],
], dtype=bool)
Y_SCORE = np.array([
    [0.9, 0.1, 0.5, 0.2],
    [0.8, 0.2, 0.5, 0.4],
    [0.7, 0.3, 0.5, 0.6],
    [0.1, 0.4, 0.5, 0.8],
])


def test_hand_computed_values() -> None:
    m = compute_metrics(Y_TRUE, Y_SCORE)
    # class 0: ranking P N P N -> AP = (1/1 + 2/3) / 2; AUC = 3 of 4 (P, N) pairs ordered right
    # class 1: its positive ranks 3rd of 4 -> AP = 1/3; AUC = 1 of 3 pairs
    # class 2 has no positive, class 3 no negative: both excluded
    assert m.ap[0] == pytest.approx(5 / 6) and m.auc[0] == pytest.approx(0.75)
    assert m.ap[1] == pytest.approx(1 / 3) and m.auc[1] == pytest.approx(1 / 3)
    assert np.isnan(m.ap[2:]).all() and np.isnan(m.auc[2:]).all()
    assert m.n_classes_used == 2 and m.n_classes_excluded == 2 and m.n_clips == 4
    assert m.n_positives.tolist() == [2, 1, 0, 4]
    assert m.mAP == pytest.approx((5 / 6 + 1 / 3) / 2)
    mauc = (0.75 + 1 / 3) / 2
    assert m.mAUC == pytest.approx(mauc)
    assert m.d_prime == pytest.approx(math.sqrt(2) * NormalDist().inv_cdf(mauc))


def test_d_prime_reference_points() -> None:
    assert d_prime(0.5) == pytest.approx(0.0)
    assert d_prime(NormalDist().cdf(1 / math.sqrt(2))) == pytest.approx(1.0)
    assert d_prime(0.9) == pytest.approx(1.8124, abs=1e-4)


def test_perfect_scores() -> None:
    rng = np.random.default_rng(0)
    y = rng.random((200, 6)) < 0.2
    m = compute_metrics(y, y + 0.01 * rng.random(y.shape))
    assert m.mAP == pytest.approx(1.0) and m.mAUC == pytest.approx(1.0) and m.d_prime == math.inf
    inverted = compute_metrics(y, 1.0 - y)
    assert inverted.mAUC == pytest.approx(0.0) and inverted.d_prime == -math.inf


def test_random_scores_are_chance() -> None:
    rng = np.random.default_rng(1)
    y = rng.random((4000, 8)) < 0.3
    m = compute_metrics(y, rng.random(y.shape))
    assert m.mAUC == pytest.approx(0.5, abs=0.02)
    assert abs(m.d_prime) < 0.08
    assert m.mAP == pytest.approx(y.mean(), abs=0.03)  # AP of random scores ~ positive rate


def test_no_usable_class_and_bad_input() -> None:
    m = compute_metrics(np.zeros((3, 2), bool), np.zeros((3, 2)))
    assert m.n_classes_used == 0 and m.n_classes_excluded == 2 and math.isnan(m.mAP) and math.isnan(m.d_prime)
    with pytest.raises(ValueError, match="must both be"):
        compute_metrics(np.zeros((3, 2), bool), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="nan"):
        compute_metrics(np.ones((2, 1), bool), np.array([[np.nan], [0.0]]))


@pytest.mark.parametrize("levels", [None, 4, 0])
def test_matches_scikit_learn_per_class(levels: int | None) -> None:
    # levels: scores quantized to few values give many ties; 0: every score in a column tied
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(levels or 0)
    y = rng.random((300, 40)) < np.linspace(0.005, 0.5, 40)
    scores = rng.random(y.shape) + 0.3 * y
    if levels is not None:
        scores = np.round(scores * levels) / levels if levels else np.zeros_like(scores)
    m = compute_metrics(y, scores, chunk=7)
    for k in range(y.shape[1]):
        if 0 < y[:, k].sum() < len(y):
            assert m.ap[k] == pytest.approx(average_precision_score(y[:, k], scores[:, k]), abs=1e-12)
            assert m.auc[k] == pytest.approx(roc_auc_score(y[:, k], scores[:, k]), abs=1e-12)
        else:
            assert np.isnan(m.ap[k]) and np.isnan(m.auc[k])


def test_paired_bootstrap_separates_a_real_gap_and_not_a_coin_flip():
    from classifier.metrics import compute_metrics, paired_bootstrap_map

    rng = np.random.default_rng(0)
    y = rng.random((400, 6)) < 0.2
    y[0] = True
    base = y + rng.normal(0, 1.0, y.shape)
    better = y + rng.normal(0, 0.5, y.shape)
    result = paired_bootstrap_map(y, better, base, samples=50)
    assert result.difference == compute_metrics(y, better).mAP - compute_metrics(y, base).mAP > 0
    assert result.p_a_better == 1.0 and result.std > 0
    same = paired_bootstrap_map(y, base, base + rng.normal(0, 1e-3, y.shape), samples=50)
    assert abs(same.difference) < 0.01 and 0.05 < same.p_a_better < 0.95
