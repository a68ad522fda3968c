"""Split-conformal quantile, the Learn-then-Test review rule and the review budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayescellseg.trust.conformal import conformal_quantile, flag_lowest, review_threshold


def test_conformal_quantile_hand_values() -> None:
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0])  # 1..9, n = 9
    # alpha 0.2: rank ceil(10 * 0.8) = 8 -> 8
    assert conformal_quantile(scores, 0.2) == 8.0
    # alpha 0.5: rank ceil(10 * 0.5) = 5 -> 5
    assert conformal_quantile(scores, 0.5) == 5.0
    # alpha 0.05: rank ceil(9.5) = 10 > 9 -> infinite
    assert conformal_quantile(scores, 0.05) == math.inf


def test_conformal_quantile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        conformal_quantile(np.array([1.0, np.nan]), 0.1)
    with pytest.raises(ValueError):
        conformal_quantile(np.array([1.0]), 1.0)


def test_conformal_coverage_over_random_splits() -> None:
    """Coverage of |y - yhat| <= q averages ceil((n+1)(1-a))/(n+1) = 46/51 over splits."""
    rng = np.random.default_rng(21)  # seed recorded
    n_cal, n_test, trials, alpha = 50, 200, 2000, 0.1
    covered = np.empty(trials)
    for t in range(trials):
        residual = np.abs(rng.standard_t(3, size=n_cal + n_test))  # heavy tails
        q = conformal_quantile(residual[:n_cal], alpha)
        covered[t] = np.mean(residual[n_cal:] <= q)
    expected = 46 / 51
    se = covered.std() / math.sqrt(trials)
    assert abs(covered.mean() - expected) < 4 * se + 1e-3
    assert covered.mean() >= 1 - alpha - 4 * se


def test_review_threshold_hand_case() -> None:
    # sorted by prediction: true 0.9 (ok), 0.8 (ok), 0.3 (bad), 0.2 (bad), 0.9 (ok); q = 0.5
    predicted = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    true = np.array([0.9, 0.8, 0.3, 0.2, 0.9])
    # alpha 0.6, delta 0.5: binomial cdf(bad; kept, 0.6):
    # kept 1, bad 0: 0.4 <= 0.5; kept 2, bad 0: 0.16; kept 3, bad 1: 0.064 + 0.288 = 0.352;
    # kept 4, bad 2: 1 - 4 * 0.6^3 * 0.4 - 0.6^4 = 0.5248 > 0.5 -> stop at tau = 0.7
    rule = review_threshold(predicted, true, 0.5, alpha=0.6, delta=0.5)
    assert rule.threshold == 0.7
    assert rule.n_kept_calibration == 3
    assert rule.calibration_rate == pytest.approx(2 / 3)
    assert rule.flags(np.array([0.71, 0.7, 0.69])).tolist() == [False, False, True]
    assert "at least 40% have DSB score >= 0.5" in rule.statement()


def test_review_threshold_none_certified_flags_everything() -> None:
    rule = review_threshold(np.array([0.9, 0.8]), np.array([0.1, 0.1]), 0.5, 0.1, 0.1)
    assert rule.threshold == math.inf
    assert rule.flags(np.array([1.0, 0.0])).all()
    assert "no image can be left unreviewed" in rule.statement()


def test_review_guarantee_holds_over_random_calibration_sets() -> None:
    """With probability >= 1 - delta, >= 1 - alpha of the kept new images score >= q."""
    rng = np.random.default_rng(7)  # seed recorded
    alpha, delta, q, trials = 0.1, 0.1, 0.6, 300

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        true = rng.beta(4, 3, size=n)
        return np.clip(true + rng.normal(0, 0.12, size=n), 0, 1), true

    held = 0
    for _ in range(trials):
        rule = review_threshold(*draw(200), q, alpha, delta)
        pred, true = draw(20_000)
        kept = true[~rule.flags(pred)]
        held += kept.size == 0 or np.mean(kept >= q) >= 1 - alpha
    # expected >= 0.9; allow 3 binomial standard errors
    assert held / trials >= 1 - delta - 3 * math.sqrt(delta * (1 - delta) / trials)


def test_flag_lowest() -> None:
    scores = np.array([0.3, 0.1, 0.2, 0.4])
    assert flag_lowest(scores, 0.5).tolist() == [False, True, True, False]
    assert flag_lowest(scores, 0.2).tolist() == [False, True, False, False]  # ceil(0.8) = 1
    assert not flag_lowest(scores, 0.0).any()
    assert flag_lowest(scores, 1.0).all()
    with pytest.raises(ValueError):
        flag_lowest(scores, 1.5)


def test_min_testable_and_walk_start() -> None:
    from bayescellseg.trust.conformal import min_testable

    assert min_testable(0.1, 0.1) == 22  # 0.9^21 = 0.109 > 0.1 >= 0.9^22 = 0.098
    assert min_testable(0.6, 0.5) == 1
    # 30 images predicted in order, all good: the first testable threshold keeps 22 of them,
    # and the walk goes on to keep all 30
    predicted = np.linspace(1.0, 0.71, 30)
    rule = review_threshold(predicted, np.ones(30), 0.5, 0.1, 0.1)
    assert rule.n_kept_calibration == 30 and rule.threshold == pytest.approx(0.71)
    # the same with one bad image ranked first: 1 bad of 22 has cdf 0.339 > 0.1 -> nothing
    true = np.ones(30)
    true[0] = 0.0
    assert review_threshold(predicted, true, 0.5, 0.1, 0.1).threshold == math.inf


def test_conformal_pvalues_hand_case() -> None:
    from bayescellseg.trust.conformal import conformal_pvalues

    cal_pred = np.array([0.9, 0.8, 0.7, 0.6])
    cal_true = np.array([0.9, 0.3, 0.8, 0.2])  # bad (q = 0.5): predicted 0.8 and 0.6
    pv = conformal_pvalues(np.array([0.95, 0.8, 0.65, 0.5]), cal_pred, cal_true, 0.5)
    # bad calibration predictions >= 0.95: 0; >= 0.8: 1; >= 0.65: 1; >= 0.5: 2; n + 1 = 5
    np.testing.assert_allclose(pv, [1 / 5, 2 / 5, 2 / 5, 3 / 5])


def test_conformal_selection_benjamini_hochberg_hand_case() -> None:
    from bayescellseg.trust.conformal import conformal_selection

    cal_pred = np.linspace(0.0, 1.0, 19)  # n = 19, n + 1 = 20
    cal_true = np.where(cal_pred < 0.5, 0.0, 1.0)  # bad exactly when predicted < 0.5
    # bad calibration predictions: k / 18 for k = 0..8 (up to 0.444). p-values: 0.9, 0.6 and
    # 0.45 -> (1 + 0) / 20 = 0.05; 0.1 -> (1 + 7) / 20 = 0.4 (k = 2..8 are >= 0.1)
    batch = np.array([0.9, 0.6, 0.45, 0.1])
    flags = conformal_selection(batch, cal_pred, cal_true, 0.5, alpha=0.2)
    # BH at 0.2 with m = 4: thresholds 0.05, 0.1, 0.15, 0.2; sorted p = 0.05, 0.05, 0.05, 0.4
    # -> largest k with p_(k) <= 0.2 k / 4 is k = 3: select p <= 0.15
    assert flags.tolist() == [False, False, False, True]
    assert conformal_selection(batch, cal_pred, cal_true, 0.5, alpha=0.01).all()


def test_conformal_selection_controls_the_false_discovery_rate() -> None:
    """Expected share of selected (unflagged) images below q is at most alpha."""
    from bayescellseg.trust.conformal import conformal_selection

    rng = np.random.default_rng(13)  # seed recorded
    alpha, q, trials, shares = 0.1, 0.6, 500, []

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        true = rng.beta(4, 3, size=n)
        return np.clip(true + rng.normal(0, 0.12, size=n), 0, 1), true

    for _ in range(trials):
        batch_pred, batch_true = draw(100)
        flags = conformal_selection(batch_pred, *draw(200), q, alpha)
        kept = batch_true[~flags]
        shares.append(np.mean(kept < q) if kept.size else 0.0)
    se = np.std(shares) / math.sqrt(trials)
    assert np.mean(shares) <= alpha + 3 * se
