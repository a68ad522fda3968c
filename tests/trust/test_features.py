"""Image and nucleus feature vectors of a Result."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayescellseg.trust.features import (
    IMAGE_FEATURES,
    NUCLEUS_FEATURES,
    image_features,
    nucleus_features,
)
from tests.trust.results import empty_result, two_nucleus_result


def test_image_features_hand_values() -> None:
    result = two_nucleus_result()
    f = dict(zip(IMAGE_FEATURES, image_features(result), strict=True))
    # records by label: 3 (area 25, stability 0.5), 7 (area 16, stability 1.0)
    assert f["mean_stability"] == pytest.approx(0.75)
    assert f["area_weighted_stability"] == pytest.approx((25 * 0.5 + 16 * 1.0) / 41)
    assert f["fraction_unstable"] == pytest.approx(0.5)  # 0.5 < 0.7
    assert f["predicted_quality"] == pytest.approx(result.summary.predicted_quality)
    assert f["mean_entropy_fg"] == pytest.approx(5 / 41)
    assert f["uncertain_fg_fraction"] == pytest.approx(5 / 41)
    assert f["mean_entropy_all"] == pytest.approx(5 / 400)
    assert f["mean_mi_fg"] == pytest.approx(0.1)
    assert f["mean_probability_fg"] == pytest.approx(0.9)
    assert f["foreground_fraction"] == pytest.approx(41 / 400)
    assert f["unassigned_fg_fraction"] == pytest.approx(0.0)
    assert f["log_n_nuclei"] == pytest.approx(math.log(3))
    assert f["log_median_area"] == pytest.approx(math.log(20.5))
    assert f["area_cv"] == pytest.approx(4.5 / 20.5)


def test_features_without_samples_fall_back_to_entropy() -> None:
    result = two_nucleus_result(samples=False)
    f = dict(zip(IMAGE_FEATURES, image_features(result), strict=True))
    # stability unknown: 1 - mean entropy = 1 - 0.2 (nucleus 3) and 1 - 0 (nucleus 7)
    assert f["mean_stability"] == pytest.approx(0.9)
    assert f["predicted_quality"] == pytest.approx(0.9)  # no sample quality: mean stability


def test_nucleus_features_rows() -> None:
    result = two_nucleus_result()
    rows = nucleus_features(result)
    assert rows.shape == (2, len(NUCLEUS_FEATURES))
    col = {name: rows[:, i] for i, name in enumerate(NUCLEUS_FEATURES)}
    np.testing.assert_allclose(col["stability"], [0.5, 1.0])
    np.testing.assert_allclose(col["instability_squared"], [0.25, 0.0])
    np.testing.assert_allclose(col["log_area"], np.log([25, 16]))
    np.testing.assert_allclose(col["log_relative_area"], np.log([25 / 20.5, 16 / 20.5]))
    np.testing.assert_allclose(col["mean_entropy"], [0.2, 0.0])
    np.testing.assert_allclose(col["image_mean_entropy_fg"], 5 / 41)


def test_empty_result_gives_finite_features() -> None:
    result = two_nucleus_result()
    empty = empty_result(result)
    assert np.all(np.isfinite(image_features(empty)))
    assert nucleus_features(empty).shape == (0, len(NUCLEUS_FEATURES))
