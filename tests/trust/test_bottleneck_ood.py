"""The second OOD model, on the network's bottleneck statistic, and the combined OOD rule."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bayescellseg.errors import InputError
from bayescellseg.trust.features import image_features
from bayescellseg.trust.fit import FitOptions, assign_folds, fit_bottleneck_ood, fit_trust
from bayescellseg.trust.model import load_trust, save_trust
from bayescellseg.trust.ood import LowRankMahalanobis, Mahalanobis
from bayescellseg.trust.signals import SUMMARY_COLUMNS, ood_decision, trust_signals
from tests.trust.results import empty_result, two_nucleus_result
from tests.trust.synthetic_data import synthetic_bottleneck, synthetic_trust_data

LEGACY_MODEL = Path(__file__).parent / "data" / "legacy_model"

DIM = 24


@pytest.mark.parametrize("shrinkage", [0.05, 0.5, 1.0])
def test_low_rank_form_equals_the_full_mahalanobis(shrinkage: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 80)) @ rng.normal(size=(80, 80)) * 0.3 + rng.normal(size=80)
    test = rng.normal(size=(10, 80)) * 2
    full, low = Mahalanobis.fit(x, shrinkage), LowRankMahalanobis.fit(x, shrinkage)
    assert low.directions.shape == (29, 80)
    np.testing.assert_allclose(low.distance(test), full.distance(test), rtol=1e-10)
    np.testing.assert_allclose(low.distance(x), full.distance(x), rtol=1e-10)
    again = LowRankMahalanobis.from_dict(low.to_dict())
    np.testing.assert_allclose(again.distance(test), low.distance(test), rtol=1e-5)
    with pytest.raises(ValueError, match="shrinkage"):
        LowRankMahalanobis.fit(x, 0.0)


def _result_at_the_fit_mean(trust):
    """two_nucleus_result with an OOD model whose image-feature mean is its own features."""
    result = two_nucleus_result()
    x = image_features(result)
    std = replace(trust.ood.standardizer, mean=x)
    maha = replace(trust.ood.mahalanobis, mean=np.zeros_like(x))
    return result, replace(trust, ood=replace(trust.ood, standardizer=std, mahalanobis=maha))


def test_far_only_in_the_bottleneck_is_flagged_with_that_reason() -> None:
    trust = fit_trust(synthetic_trust_data(120, seed=8, bottleneck_dim=DIM))
    assert trust.ood_bottleneck is not None and trust.ood_bottleneck.n_features == DIM
    result, trust = _result_at_the_fit_mean(trust)
    near = synthetic_bottleneck(1, DIM, seed=99)[0]
    far = near + 40.0
    calm = trust_signals(replace(result, bottleneck=near), trust)
    assert calm.ood_score == pytest.approx(0.0, abs=1e-9)
    flagged = trust_signals(replace(result, bottleneck=far), trust)
    assert flagged.ood and not calm.ood
    assert flagged.ood_score == pytest.approx(0.0, abs=1e-9)
    assert flagged.ood_bottleneck_score > trust.ood_bottleneck.threshold
    assert flagged.ood_level == pytest.approx(
        flagged.ood_bottleneck_score / trust.ood_bottleneck.threshold
    )
    (reason,) = flagged.reasons
    assert "network bottleneck: distance" in reason and "image features" not in reason
    assert list(flagged.summary()) == list(SUMMARY_COLUMNS)
    # Far in both: one reason naming both.
    both = ood_decision(image_features(result) + 50.0, far, trust)
    assert both.ood and "image features: distance" in both.reason
    assert "network bottleneck: distance" in both.reason
    # A prediction without the statistic: only the image features decide.
    alone = trust_signals(result, trust)
    assert not alone.ood and math.isnan(alone.ood_bottleneck_score)
    with pytest.raises(InputError, match="bottleneck statistic of 5 values"):
        trust_signals(replace(result, bottleneck=np.ones(5)), trust)


def test_bottleneck_threshold_flags_about_alpha_of_in_distribution_images() -> None:
    """Over many fits, a new in-distribution vector is flagged with probability about alpha."""
    options = FitOptions(ood_alpha=0.1)
    rates = []
    for draw in range(60):
        data = synthetic_trust_data(100, seed=draw, bottleneck_dim=DIM)
        model, oof = fit_bottleneck_ood(data, assign_folds(data.sources, 5, draw), options)
        assert np.mean(oof > model.threshold) <= 0.1 + 1e-9
        fresh = synthetic_bottleneck(200, DIM, seed=10_000 + draw)
        rates.append(np.mean(model.distance(fresh) > model.threshold))
    # 12,000 test vectors, binomial SE 0.003 plus the threshold's spread; the full-data fit
    # is a little tighter than the fold fits that set the threshold, hence the wider low side.
    assert 0.06 <= np.mean(rates) <= 0.12


def test_trust_json_round_trip_with_and_without_the_bottleneck(tmp_path) -> None:
    for dim, folder in ((DIM, tmp_path / "with"), (0, tmp_path / "without")):
        data = synthetic_trust_data(80, seed=5, bottleneck_dim=dim)
        trust = fit_trust(data)
        folder.mkdir()
        save_trust(trust, folder)
        again = load_trust(folder)
        x = data.image_x[:5]
        np.testing.assert_array_equal(again.ood.distance(x), trust.ood.distance(x))
        text = (folder / "trust.json").read_text()
        if dim:
            v = data.bottleneck[:5] + 1.0
            np.testing.assert_allclose(
                again.ood_bottleneck.distance(v), trust.ood_bottleneck.distance(v), rtol=1e-5
            )
            assert again.ood_bottleneck.threshold == trust.ood_bottleneck.threshold
            assert '"ood_bottleneck"' in text
        else:
            assert again.ood_bottleneck is None and '"ood_bottleneck"' not in text


#: The bundled trust.json's signals before the bottleneck OOD model existed (computed with
#: the code of commit 63a2dfa): (summary, reasons, p_correct).
BEFORE = [
    ({"predicted_score": 0.6143886381288516, "predicted_score_low": 0.39213252123224873,
      "predicted_score_high": 0.8366447550254544, "predicted_ap50": 0.45112088218370355,
      "predicted_ap50_low": 0.2561892662240743, "predicted_ap50_high": 0.6460524981433329,
      "ood_score": 13.354209736340863, "ood": True},
     "distance 13.4 > 5.2", [0.11941254243266711, 0.8142003172615103]),
    ({"predicted_score": 0.3805865680007613, "predicted_score_low": 0.15833045110415844,
      "predicted_score_high": 0.6028426848973641, "predicted_ap50": 0.6940765226242525,
      "predicted_ap50_low": 0.4991449066646232, "predicted_ap50_high": 0.8890081385838817,
      "ood_score": 10.081432498318327, "ood": True},
     "distance 10.1 > 5.2", [0.5560272769952693, 0.8974289567145611]),
    ({"predicted_score": 0.0, "predicted_score_low": 0.0, "predicted_score_high": 0.0,
      "predicted_ap50": 0.0, "predicted_ap50_low": 0.0, "predicted_ap50_high": 0.0,
      "ood_score": 71.96694012553725, "ood": True},
     "distance 72.0 > 5.2", []),
]  # fmt: skip


def test_a_trust_json_without_bottleneck_gives_the_same_signals_as_before() -> None:
    """The bundled trust.json of session 10 (no bottleneck part), kept as test data."""
    trust = load_trust(LEGACY_MODEL)
    assert trust.ood_bottleneck is None
    results = [two_nucleus_result(), two_nucleus_result(False)]
    results.append(empty_result(results[0]))
    for result, (summary, reason, p_correct) in zip(results, BEFORE, strict=True):
        for bottleneck in (None, np.ones(512, np.float32)):  # the statistic changes nothing
            signals = trust_signals(replace(result, bottleneck=bottleneck), trust)
            got = signals.summary()
            assert {k: got[k] for k in summary} == pytest.approx(summary, rel=1e-12, abs=1e-15)
            assert got["ood_bottleneck_score"] is None
            assert got["ood_level"] == pytest.approx(summary["ood_score"] / trust.ood.threshold)
            expected = (f"unlike the images the trust model was fitted on ({reason}): the "
                        "predicted score may be wrong")  # fmt: skip
            assert signals.reasons == (expected,)
            np.testing.assert_allclose(signals.p_correct, p_correct, rtol=1e-12)
    near = replace(trust, ood=replace(trust.ood, threshold=100.0))
    calm = trust_signals(results[0], near)
    assert not calm.ood and calm.reasons == ()
