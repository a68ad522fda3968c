"""The trust measures that evaluate reports."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayescellseg.trust.conformal import ReviewRule
from bayescellseg.trust.measures import (
    TrustBatch,
    budget_measures,
    nucleus_measures,
    review_measures,
    score_measures,
    trust_measures,
)


def test_score_measures_hand_values() -> None:
    pred = np.array([0.5, 0.6, 0.9])
    true = np.array([0.4, 0.6, 0.6])
    m = score_measures(pred, pred - 0.15, pred + 0.15, true)
    assert m["mae"] == pytest.approx((0.1 + 0.0 + 0.3) / 3)
    assert m["bias"] == pytest.approx(0.4 / 3)
    assert m["coverage"] == pytest.approx(2 / 3)  # 0.9 - 0.15 = 0.75 > 0.6
    assert m["mean_width"] == pytest.approx(0.3)


def test_review_measures_hand_values() -> None:
    rule = ReviewRule(0.5, 0.6, 0.1, 0.1, 10, 5, 0.9)
    flags = rule.flags(np.array([0.4, 0.5, 0.7, 0.9]))
    m = review_measures(flags, np.array([0.9, 0.5, 0.7, 0.8]), 0.6, 0.1)
    assert m["n_flagged"] == 1 and m["n_unflagged"] == 3
    assert m["realised_rate"] == pytest.approx(2 / 3)  # 0.5 < 0.6
    assert m["stated_rate"] == pytest.approx(0.9)


def test_budget_oracle_gain_share() -> None:
    true = np.array([0.1, 0.2, 0.8, 0.9, 0.5])
    # oracle refers 0.1 (ceil(0.2 * 5) = 1): kept mean 0.6, gain 0.6 - 0.5 = 0.1
    perfect = budget_measures(true, true, 0.2)
    assert perfect["oracle_gain_share"] == pytest.approx(1.0)
    # a ranking that refers 0.2: kept mean (0.1 + 0.8 + 0.9 + 0.5) / 4 = 0.575
    pred = np.array([0.5, 0.0, 0.8, 0.9, 0.5])
    assert budget_measures(pred, true, 0.2)["oracle_gain_share"] == pytest.approx(0.75)


def test_nucleus_ece_known_cases() -> None:
    calibrated = nucleus_measures(np.full(10, 0.8), np.array([1] * 8 + [0] * 2, bool))
    assert calibrated["ece"] == pytest.approx(0.0)
    over = nucleus_measures(np.full(10, 0.9), np.array([1] * 5 + [0] * 5, bool))
    assert over["ece"] == pytest.approx(0.4)
    ranked = nucleus_measures(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0], bool))
    assert ranked["error_auroc"] == pytest.approx(1.0)


def test_trust_measures_groups_and_ood_auroc() -> None:
    batch = TrustBatch(
        datasets=np.array(["a", "a", "b", "b"]),
        predicted=np.array([0.5, 0.6, 0.2, 0.3]),
        low=np.array([0.3, 0.4, 0.0, 0.1]),
        high=np.array([0.7, 0.8, 0.4, 0.5]),
        true=np.array([0.5, 0.7, 0.6, 0.3]),
        ood_score=np.array([1.0, 2.0, 5.0, 6.0]),
        ood=np.array([False, False, True, True]),
        nucleus_dataset=np.array(["a", "b"]),
        p_correct=np.array([0.9, 0.2]),
        correct=np.array([True, False]),
        flagged=np.array([False, False, True, True]),
    )
    out = trust_measures(batch, min_quality=0.5, alpha=0.1)
    assert out["datasets"]["b"]["ood_auroc_vs_others"] == pytest.approx(1.0)
    assert out["datasets"]["a"]["ood_auroc_vs_others"] == pytest.approx(0.0)
    assert out["datasets"]["b"]["score"]["coverage"] == pytest.approx(0.5)
    assert out["overall"]["ood_flagged"] == pytest.approx(0.5)
    assert out["overall"]["review"]["n_unflagged"] == 2
    assert out["overall"]["review"]["realised_rate"] == pytest.approx(1.0)  # 0.5, 0.7 >= 0.5
    assert out["datasets"]["a"]["nucleus"]["n_nuclei"] == 1
    assert math.isnan(out["datasets"]["a"]["nucleus"]["error_auroc"])
