"""The per-image trust signals that predict adds."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from bayescellseg.trust.features import image_features, nucleus_features
from bayescellseg.trust.fit import fit_trust
from bayescellseg.trust.signals import SUMMARY_COLUMNS, trust_signals
from tests.trust.results import empty_result, two_nucleus_result
from tests.trust.synthetic_data import synthetic_trust_data


def _trust():
    return fit_trust(synthetic_trust_data(120, seed=8))


def test_signals_agree_with_the_models() -> None:
    trust = _trust()
    result = two_nucleus_result()
    signals = trust_signals(result, trust)
    x = image_features(result)[None, :]
    pred, low, high = trust.scores["dsb"].predict(x)
    assert signals.predicted_score == pytest.approx(pred[0])
    assert signals.predicted_score_low == pytest.approx(low[0])
    assert signals.predicted_score_high == pytest.approx(high[0])
    assert signals.predicted_score_low <= signals.predicted_score <= signals.predicted_score_high
    assert signals.ood_score == pytest.approx(trust.ood.distance(x)[0])
    expected_p = trust.nucleus.predict_proba(nucleus_features(result))
    np.testing.assert_allclose(signals.p_correct, expected_p)
    np.testing.assert_array_equal(signals.nucleus_needs_review, expected_p < 0.5)
    assert list(signals.summary()) == list(SUMMARY_COLUMNS)


def test_ood_flag_gives_its_own_reason() -> None:
    trust = _trust()
    result = two_nucleus_result()  # its features are far from the synthetic fitting set's
    near = replace(trust, ood=replace(trust.ood, threshold=math.inf))
    far = replace(trust, ood=replace(trust.ood, threshold=0.0))
    assert not trust_signals(result, near).ood and trust_signals(result, near).reasons == ()
    flagged = trust_signals(result, far)
    assert flagged.ood and flagged.summary()["ood"] is True
    assert any("unlike the images" in r for r in flagged.reasons)


def test_review_rule_reason() -> None:
    trust = _trust()
    result = two_nucleus_result()
    score = trust_signals(result, trust).predicted_score
    rule = trust.scores["dsb"].review_rule(0.3, alpha=0.2, delta=0.2)
    strict = replace(rule, threshold=score + 0.01)
    lax = replace(rule, threshold=score - 0.01)
    assert any(
        "predicted DSB score" in r for r in trust_signals(result, trust, rule=strict).reasons
    )
    assert not any("predicted DSB" in r for r in trust_signals(result, trust, rule=lax).reasons)


def test_no_nuclei_gives_empty_p_correct() -> None:
    result = two_nucleus_result()
    empty = empty_result(result)
    signals = trust_signals(empty, _trust())
    assert signals.p_correct.shape == (0,) and signals.nucleus_needs_review.shape == (0,)


def test_review_batch_min_quality_and_budget() -> None:
    from bayescellseg.trust.conformal import conformal_selection
    from bayescellseg.trust.signals import review_batch

    trust = _trust()
    predicted = np.array([0.9, 0.2, 0.55, 0.7, 0.35])
    cal = trust.scores["dsb"]
    by_quality = review_batch(predicted, trust, min_quality=0.5)
    expected = conformal_selection(predicted, cal.calibration_predicted, cal.calibration_true, 0.5)
    np.testing.assert_array_equal(by_quality.flagged, expected)
    assert "at least 90% of the images not flagged have a DSB score >= 0.5" in by_quality.statement
    assert all(bool(r) == f for r, f in zip(by_quality.reasons, by_quality.flagged, strict=True))
    budget = review_batch(predicted, trust, review_fraction=0.4)
    assert budget.flagged.tolist() == [False, True, False, False, True]
    assert "predicted 0.20" in budget.reasons[1]
    with pytest.raises(ValueError):
        review_batch(predicted, trust)
