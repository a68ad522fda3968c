"""Fitting the trust models: out-of-fold predictions (no leakage), intervals, JSON files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayescellseg.errors import InputError
from bayescellseg.trust.fit import (
    SCORE_FEATURE_SETS,
    FitOptions,
    assign_folds,
    fit_trust,
    out_of_fold_scores,
    source_folds,
    source_weights,
)
from bayescellseg.trust.model import TRUST_FILE, TrustModel, load_trust, save_trust
from tests.trust.synthetic_data import synthetic_trust_data


def test_source_weights_and_folds() -> None:
    sources = np.array(["a"] * 4 + ["b"])
    np.testing.assert_allclose(source_weights(sources), [0.5] * 4 + [1.0])
    folds = assign_folds(sources, 2, seed=0)
    assert sorted(np.bincount(folds[:4]).tolist()) == [2, 2]  # each source dealt round-robin
    np.testing.assert_array_equal(folds, assign_folds(sources, 2, seed=0))  # seeded


def test_out_of_fold_prediction_never_sees_its_own_image() -> None:
    """Changing one image's true score leaves its own out-of-fold prediction unchanged."""
    data = synthetic_trust_data(60, seed=1)
    folds = assign_folds(data.sources, 5, seed=0)
    before = out_of_fold_scores(data, "dsb", folds, 1.0)
    changed_scores = dict(data.scores)
    changed_scores["dsb"] = data.scores["dsb"].copy()
    changed_scores["dsb"][7] = 100.0
    changed = type(data)(**{**vars(data), "scores": changed_scores})
    after = out_of_fold_scores(changed, "dsb", folds, 1.0)
    assert after[7] == pytest.approx(before[7])
    same_fold = folds == folds[7]
    np.testing.assert_allclose(after[same_fold], before[same_fold])
    assert not np.allclose(after[~same_fold], before[~same_fold])


def test_fit_trust_calibration_pairs_are_out_of_fold_and_intervals_cover() -> None:
    data = synthetic_trust_data(200, seed=2)
    trust = fit_trust(data, FitOptions(seed=3))
    dsb = trust.scores["dsb"]
    chosen = trust.provenance["score_model_selection"]["dsb"]
    assert dsb.features == SCORE_FEATURE_SETS[chosen["features"]]
    # calibration predictions: each image predicted by a model of the other random folds
    folds = assign_folds(data.sources, 5, seed=3)
    oof = out_of_fold_scores(data, "dsb", folds, chosen["ridge_alpha"], dsb.features)
    np.testing.assert_allclose(dsb.calibration_predicted, np.clip(oof, 0, 1))
    # or, on request, by a model of the other source
    by_source = fit_trust(data, FitOptions(seed=3, calibration="source")).scores["dsb"]
    oof = out_of_fold_scores(data, "dsb", source_folds(data.sources), chosen["ridge_alpha"],
                             dsb.features)  # fmt: skip
    np.testing.assert_allclose(by_source.calibration_predicted, np.clip(oof, 0, 1))
    assert (
        min(chosen["candidates_mae"].values())
        == chosen["candidates_mae"][f"{chosen['features']} {chosen['ridge_alpha']:g}"]
    )
    # noise sd 0.03: the 90 % half-width is near 1.645 * 0.03 (plus estimation error)
    assert 0.035 < dsb.half_width < 0.07
    fresh = synthetic_trust_data(2000, seed=4)
    pred, low, high = dsb.predict(fresh.image_x)
    true = fresh.scores["dsb"]
    assert np.mean(np.abs(pred - true)) < 0.04
    # one calibration set of 200: the coverage given it has sd about sqrt(0.09 / 200) = 0.021
    assert 0.83 < np.mean((true >= low) & (true <= high)) < 0.97
    assert trust.provenance["sources"] == {"s0": 100, "s1": 100}
    assert trust.provenance["seed"] == 3


def test_trust_json_round_trip(tmp_path) -> None:
    data = synthetic_trust_data(80, seed=5)
    trust = fit_trust(data)
    path = save_trust(trust, tmp_path)
    assert path.name == TRUST_FILE
    again = load_trust(tmp_path)
    x = data.image_x[:5]
    for name in ("dsb", "ap50"):
        np.testing.assert_array_equal(
            again.scores[name].predict(x)[0], trust.scores[name].predict(x)[0]
        )
    np.testing.assert_array_equal(again.ood.distance(x), trust.ood.distance(x))
    np.testing.assert_array_equal(
        again.nucleus.predict_proba(data.nucleus_x[:5]),
        trust.nucleus.predict_proba(data.nucleus_x[:5]),
    )
    assert load_trust(tmp_path / "missing") is None
    assert load_trust(None) is None


def test_trust_json_wrong_features_refused(tmp_path) -> None:
    trust = fit_trust(synthetic_trust_data(60, seed=6))
    content = trust.to_dict()
    content["image_features"] = content["image_features"][:-1]
    (tmp_path / TRUST_FILE).write_text(json.dumps(content))
    with pytest.raises(InputError, match="refit"):
        load_trust(tmp_path)
    with pytest.raises(InputError, match="format"):
        TrustModel.from_dict({"format_version": 99})
