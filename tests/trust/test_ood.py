"""Mahalanobis OOD distance, out-of-fold distances and the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.trust.ood import Mahalanobis, ood_threshold, out_of_fold_distances


def test_mahalanobis_hand_case() -> None:
    # points (+-3, 0), (0, +-1): mean 0, covariance (ddof 1) diag(18/3, 2/3) = diag(6, 2/3)
    x = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    model = Mahalanobis.fit(x, shrinkage=0.0)
    np.testing.assert_allclose(model.mean, [0.0, 0.0])
    d = model.distance(np.array([[6.0, 0.0], [0.0, 2.0], [6.0, 2.0]]))
    np.testing.assert_allclose(d, [6 / np.sqrt(6), 2 / np.sqrt(2 / 3), np.sqrt(6 + 6)])


def test_mahalanobis_on_a_known_gaussian() -> None:
    """Squared distances of N(0, S) draws follow chi2(k): mean k, also with correlation."""
    rng = np.random.default_rng(11)
    cov = np.array([[4.0, 1.5, 0.0], [1.5, 1.0, 0.0], [0.0, 0.0, 0.25]])
    x = rng.multivariate_normal(np.zeros(3), cov, size=20_000)
    model = Mahalanobis.fit(x, shrinkage=0.0)
    np.testing.assert_allclose(np.linalg.inv(model.precision), cov, atol=0.08)
    d2 = np.square(model.distance(x[:5000]))
    assert d2.mean() == pytest.approx(3.0, abs=0.1)


def test_shrinkage_moves_towards_the_diagonal() -> None:
    x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])  # singular covariance
    full = Mahalanobis.fit(x, shrinkage=1.0)
    np.testing.assert_allclose(full.precision, np.diag([1.0, 1.0]))  # variance 1 each


def test_out_of_fold_distance_is_to_the_other_folds() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 2))
    folds = np.arange(12) % 3
    oof = out_of_fold_distances(x, folds, 0.1)
    for i in (0, 5):
        others = folds != folds[i]
        expected = Mahalanobis.fit(x[others], 0.1).distance(x[i : i + 1])[0]
        assert oof[i] == pytest.approx(expected)
    moved = x.copy()
    moved[0] += 100.0
    again = out_of_fold_distances(moved, folds, 0.1)
    assert again[3] == pytest.approx(oof[3])  # row 3 shares row 0's fold: not its reference
    assert again[1] != pytest.approx(oof[1])  # row 1 is in another fold: row 0 is in its
    assert again[0] > oof[0]


def test_ood_threshold_is_the_conformal_quantile() -> None:
    d = np.arange(1.0, 20.0)  # n = 19, alpha 0.1: rank ceil(20 * 0.9) = 18
    assert ood_threshold(d, 0.1) == 18.0
