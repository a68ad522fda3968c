"""Standardised ridge and logistic regression."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.trust.linear import LogisticModel, RidgeModel, Standardizer


def test_standardizer_hand_values() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    std = Standardizer.fit(x)
    np.testing.assert_allclose(std.mean, [2.0, 5.0])
    np.testing.assert_allclose(std.scale, [1.0, 1.0])  # constant column: scale 1
    np.testing.assert_allclose(std(x), [[-1.0, 0.0], [1.0, 0.0]])


def test_ridge_recovers_a_noiseless_line() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 2))
    y = 0.5 + 2.0 * x[:, 0] - 1.0 * x[:, 1]
    model = RidgeModel.fit(x, y, alpha=0.0)
    np.testing.assert_allclose(model.predict(np.array([[1.0, 1.0], [0.0, 0.0]])), [1.5, 0.5])


def test_ridge_penalty_hand_case() -> None:
    # one standardised feature z = [-1, 1], y = [0, 2], equal weights 1/2:
    # coef = sum w z y / (sum w z^2 + alpha / n) = 1 / (1 + 1 / 2) = 2 / 3, intercept 1
    model = RidgeModel.fit(np.array([[0.0], [1.0]]), np.array([0.0, 2.0]), alpha=1.0)
    assert model.coef[0] == pytest.approx(2 / 3)
    assert model.intercept == pytest.approx(1.0)


def test_ridge_weights_equal_duplication() -> None:
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([0.0, 3.0, 1.0])
    weighted = RidgeModel.fit(x, y, alpha=0.0, weights=np.array([2.0, 1.0, 1.0]))
    duplicated = RidgeModel.fit(np.r_[x[:1], x], np.r_[y[:1], y], alpha=0.0)
    grid = np.linspace(0, 2, 5)[:, None]
    np.testing.assert_allclose(weighted.predict(grid), duplicated.predict(grid))


def test_logistic_unpenalised_matches_frequencies() -> None:
    # x = 0: 1 of 4 positive; x = 1: 3 of 4 positive -> MLE probabilities 0.25 and 0.75
    x = np.array([[0.0]] * 4 + [[1.0]] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    model = LogisticModel.fit(x, y, alpha=0.0)
    np.testing.assert_allclose(
        model.predict_proba(np.array([[0.0], [1.0]])), [0.25, 0.75], atol=1e-4
    )


def test_round_trips_give_identical_predictions() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3))
    y = x @ [1.0, -2.0, 0.5] + rng.normal(size=40)
    ridge = RidgeModel.fit(x, y)
    logistic = LogisticModel.fit(x, y > 0)
    np.testing.assert_array_equal(
        RidgeModel.from_dict(ridge.to_dict()).predict(x), ridge.predict(x)
    )
    again = LogisticModel.from_dict(logistic.to_dict())
    np.testing.assert_array_equal(again.predict_proba(x), logistic.predict_proba(x))


def test_inputs_not_modified_and_checked() -> None:
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    y = np.array([0.0, 1.0, 1.0])
    copies = x.copy(), y.copy()
    RidgeModel.fit(x, y)
    LogisticModel.fit(x, y)
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(y, copies[1])
    with pytest.raises(ValueError):
        RidgeModel.fit(x, np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError):
        LogisticModel.fit(x, np.array([0.0, 0.5, 1.0]))
