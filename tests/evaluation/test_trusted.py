"""The trust block of metrics.json on hand-built images with known signals and truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayescellseg.evaluation.trusted import (
    ImageTrust,
    ScoredTrust,
    TrustRequest,
    trust_block,
    trust_from_summary,
)
from bayescellseg.trust.conformal import conformal_selection
from tests.trust.synthetic_data import synthetic_trust_data


def scored(dataset, predicted, low, high, true, ood_score, ood=False, p=(), match=()):
    trust = ImageTrust(predicted, low, high, ood_score, ood)
    return ScoredTrust(dataset, trust, true, np.array(p, float), np.array(match, bool))


@pytest.fixture
def four_images():
    """a: errors 0.1 (covered), 0.4 (not); b: 0.1, 0.1 (both covered); one nucleus unknown."""
    return [
        scored("a", 0.6, 0.4, 0.8, 0.5, 1.0, p=[0.9, 0.2], match=[True, False]),
        scored("a", 0.3, 0.1, 0.5, 0.7, 2.0),
        scored("b", 0.8, 0.6, 1.0, 0.9, 6.0, ood=True, p=[0.8, math.nan], match=[True, True]),
        scored("b", 0.2, 0.0, 0.4, 0.1, 5.0),
    ]


def test_score_budget_nucleus_and_ood_by_hand(four_images):
    block = trust_block(four_images, 5, TrustRequest(review_fraction=0.5))
    assert block["available"] and block["n_images"] == 4 and block["n_images_without"] == 1
    assert block["stated_coverage"] is None and block["ood_threshold"] is None
    overall = block["overall"]
    assert overall["score"]["mae"] == pytest.approx(0.7 / 4)
    assert overall["score"]["bias"] == pytest.approx((0.1 - 0.4 - 0.1 + 0.1) / 4)
    assert overall["score"]["coverage"] == pytest.approx(0.75)
    assert overall["score"]["mean_width"] == pytest.approx(0.4)
    # review half: the model drops predicted 0.2 and 0.3 (true 0.1, 0.7) -> kept 0.5, 0.9;
    # the oracle drops true 0.1 and 0.5 -> kept 0.7, 0.9; gains 0.15 and 0.25 over 0.55
    budget = overall["budget"]
    assert budget["mean_kept"] == pytest.approx(0.7)
    assert budget["mean_kept_oracle"] == pytest.approx(0.8)
    assert budget["oracle_gain_share"] == pytest.approx(0.15 / 0.25)
    # nuclei 0.9 (right), 0.2 (wrong), 0.8 (right), one without p_correct left out
    nucleus = overall["nucleus"]
    assert nucleus["n_nuclei"] == 3
    assert nucleus["ece"] == pytest.approx((0.1 + 0.2 + 0.2) / 3)
    assert nucleus["error_auroc"] == pytest.approx(1.0)
    assert overall["ood_flagged"] == pytest.approx(0.25)
    assert "review" not in overall
    a, b = block["datasets"]["a"], block["datasets"]["b"]
    assert a["score"]["mae"] == pytest.approx(0.25) and a["score"]["coverage"] == 0.5
    assert b["score"]["mae"] == pytest.approx(0.1) and b["score"]["coverage"] == 1.0
    assert b["ood_auroc_vs_others"] == pytest.approx(1.0)
    assert a["ood_auroc_vs_others"] == pytest.approx(0.0)
    assert b["ood_flagged"] == pytest.approx(0.5) and a["nucleus"]["n_nuclei"] == 2


def test_review_rule_is_the_batch_rule_and_its_realised_rate(four_images):
    from bayescellseg.trust.fit import fit_trust

    model = fit_trust(synthetic_trust_data(seed=3))
    request = TrustRequest(model, min_quality=0.5, alpha=0.2)
    block = trust_block(four_images, 4, request)
    cal = model.scores["dsb"]
    predicted = np.array([0.6, 0.3, 0.8, 0.2])
    flags = conformal_selection(predicted, cal.calibration_predicted, cal.calibration_true,
                                0.5, 0.2)  # fmt: skip
    np.testing.assert_array_equal(flags, [False, True, False, True])  # as predict flags them
    review = block["overall"]["review"]
    assert (review["n_flagged"], review["n_unflagged"]) == (2, 2)
    assert review["stated_rate"] == pytest.approx(0.8)
    assert review["realised_rate"] == 1.0  # unflagged true scores 0.5 and 0.9, both >= 0.5
    assert block["datasets"]["a"]["review"]["realised_rate"] == 1.0  # 0.5 kept, 0.7 flagged
    assert (
        block["review_statement"].endswith(")") and "DSB score >= 0.5" in block["review_statement"]
    )
    assert block["stated_coverage"] == pytest.approx(1 - cal.alpha)
    assert block["ood_threshold"] == pytest.approx(model.ood.threshold)


def test_rule_without_trust_model_is_not_measured(four_images):
    block = trust_block(four_images, 4, TrustRequest(min_quality=0.5))
    assert "review" not in block["overall"]
    assert block["review_statement"].startswith("not measured")


def test_no_signals_says_why():
    block = trust_block([], 3, TrustRequest())
    assert block == {"available": False, "reason": block["reason"]}
    assert "trust.json" in block["reason"]


def test_trust_from_summary_needs_a_predicted_score():
    assert trust_from_summary({"n_nuclei": 3}, {}) is None
    assert trust_from_summary({"predicted_score": None}, {}) is None
    t = trust_from_summary({"predicted_score": 0.4, "ood_score": 2.5, "ood": True}, {3: 0.7})
    assert (t.predicted_score, t.ood_score, t.ood, dict(t.p_correct)) == (0.4, 2.5, True, {3: 0.7})
    assert math.isnan(t.predicted_score_low) and math.isnan(t.predicted_score_high)


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_quality", 0.0), ("min_quality", 1.5), ("review_alpha", 1.0), ("review_fraction", 0.0)],
)
def test_options_refuse_bad_trust_values_up_front(field, value):
    from bayescellseg.errors import InputError
    from bayescellseg.evaluation.run import EvaluateOptions

    with pytest.raises(InputError, match=field):
        EvaluateOptions(**{field: value})


def test_ood_auroc_ranks_by_the_combined_level_when_every_image_has_it():
    """ood_score ranks a above b; the level (with the bottleneck) ranks b above a."""
    images = [
        ScoredTrust("a", ImageTrust(0.5, 0.3, 0.7, 6.0, True, ood_level=1.2), 0.5,
                    np.zeros(0), np.zeros(0, bool)),
        ScoredTrust("b", ImageTrust(0.5, 0.3, 0.7, 1.0, True, ood_bottleneck_score=30.0,
                                    ood_level=3.0), 0.5, np.zeros(0), np.zeros(0, bool)),
    ]  # fmt: skip
    block = trust_block(images, 2, TrustRequest())
    assert block["datasets"]["b"]["ood_auroc_vs_others"] == pytest.approx(1.0)
    old = [ScoredTrust(s.dataset, ImageTrust(*[getattr(s.trust, k) for k in
           ("predicted_score", "predicted_score_low", "predicted_score_high", "ood_score",
            "ood")]), s.dsb, s.nucleus_p_correct, s.nucleus_has_match)
           for s in images]  # fmt: skip
    # Without the level (a predict folder from before it), the image-feature score ranks.
    assert trust_block(old, 2, TrustRequest())["datasets"]["b"]["ood_auroc_vs_others"] == 0.0
    summary = {"predicted_score": 0.5, "ood_score": 1.0, "ood_bottleneck_score": 30.0,
               "ood_level": 3.0, "ood": True}  # fmt: skip
    back = trust_from_summary(summary, {})
    assert (back.ood_bottleneck_score, back.ood_level) == (30.0, 3.0)
    assert math.isnan(trust_from_summary({"predicted_score": 0.5}, {}).ood_level)
