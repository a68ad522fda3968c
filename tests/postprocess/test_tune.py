"""Tests of watershed tuning and review-threshold tuning."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from bayescellseg.metrics.matching import dsb_score
from bayescellseg.postprocess.nuclei import ReviewThresholds
from bayescellseg.postprocess.tune import (
    nucleus_errors,
    review_thresholds_from_validation,
    tune_review_thresholds,
    tune_watershed,
)
from bayescellseg.postprocess.watershed import WatershedParams, instances_from_maps


def _touching_pair() -> np.ndarray:
    labels = np.zeros((40, 60), np.uint32)
    yy, xx = np.mgrid[:40, :60]
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    labels[((yy - 20) ** 2 + (xx - 39) ** 2 <= 100) & (labels == 0)] = 2
    return labels


def test_tune_watershed_picks_working_foreground_threshold() -> None:
    truth = _touching_pair()
    fg = np.where(truth > 0, 0.45, 0.05).astype(np.float32)  # an under-confident model
    contour = find_boundaries(truth, mode="inner").astype(np.float32)
    grid = {"fg_threshold": (0.5, 0.4), "marker_threshold": (0.3,)}
    params, score = tune_watershed([fg], [contour], [truth], grid=grid)
    assert params.fg_threshold == 0.4 and params.marker_threshold == 0.3
    assert dsb_score(truth, instances_from_maps(fg, contour, WatershedParams(0.5))) == 0.0
    assert score == pytest.approx(dsb_score(truth, instances_from_maps(fg, contour, params)))
    assert score > 0.5


def test_tune_watershed_picks_contour_weight_that_splits() -> None:
    truth = _touching_pair()
    fg = (truth > 0).astype(np.float32)
    contour = find_boundaries(truth, mode="inner").astype(np.float32)
    shifted = np.roll(truth, 2, axis=0)  # a second image, to average over two
    fg2 = (shifted > 0).astype(np.float32)
    contour2 = find_boundaries(shifted, mode="inner").astype(np.float32)
    params, score = tune_watershed(
        [fg, fg2], [contour, contour2], [truth, shifted], grid={"contour_weight": (0.0, 1.0)}
    )
    assert params.contour_weight == 1.0
    merged = WatershedParams(contour_weight=0.0)
    merged_score = dsb_score(truth, instances_from_maps(fg, contour, merged))
    assert merged_score < 0.1  # one blob: at best IoU ~0.5 with one nucleus
    assert score > 0.5
    # Settings outside the grid keep the base values.
    base = WatershedParams(min_size=3)
    params, _ = tune_watershed([fg], [contour], [truth], {"contour_weight": (1.0,)}, base)
    assert params.min_size == 3


def test_tune_watershed_errors() -> None:
    truth = _touching_pair()
    fg = (truth > 0).astype(np.float32)
    with pytest.raises(ValueError, match="must match"):
        tune_watershed([fg], [fg, fg], [truth])
    with pytest.raises(ValueError, match="at least one"):
        tune_watershed([], [], [])
    with pytest.raises(ValueError, match="unknown watershed setting"):
        tune_watershed([fg], [fg], [truth], grid={"threshold": (0.5,)})
    with pytest.raises(ValueError, match="shapes differ"):
        tune_watershed([fg], [fg[:-1]], [truth])


def test_review_threshold_perfect_separation() -> None:
    u = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    err = np.array([0, 0, 0, 1, 1, 1], bool)
    choice = tune_review_thresholds(u, err)
    assert choice.threshold == pytest.approx(0.5)  # midpoint of 0.3 and 0.7
    assert (choice.value, choice.precision, choice.recall) == (1.0, 1.0, 1.0)
    assert choice.flagged_fraction == 0.5 and choice.n_errors == 3 and choice.n_items == 6


def test_review_threshold_f1_and_youden_by_hand() -> None:
    u = np.array([0.1, 0.4, 0.5, 0.6, 0.9])
    err = np.array([0, 1, 0, 1, 1], bool)
    # F1 per flagging: all 6/8, {.4,.5,.6,.9} 6/7, {.5,.6,.9} 4/6, {.6,.9} 4/5, {.9} 2/4, none 0.
    f1 = tune_review_thresholds(u, err, "f1")
    assert f1.threshold == pytest.approx(0.25) and f1.value == pytest.approx(6 / 7)
    assert f1.precision == pytest.approx(3 / 4) and f1.recall == 1.0
    assert f1.false_positive_rate == pytest.approx(0.5)
    # Youden J = TPR - FPR: all 0, 0.25 -> 1 - 1/2, 0.45 -> 2/3 - 1/2, 0.55 -> 2/3 - 0, ...
    youden = tune_review_thresholds(u, err, "youden")
    assert youden.threshold == pytest.approx(0.55) and youden.value == pytest.approx(2 / 3)


def test_review_threshold_edge_cases() -> None:
    # No errors: flag nothing (threshold at the maximum).
    none = tune_review_thresholds(np.array([0.2, 0.4]), np.array([False, False]))
    assert none.threshold == 0.4 and none.flagged_fraction == 0.0 and none.value == 1.0
    # All errors: flag everything, with a threshold below the smallest score.
    every = tune_review_thresholds(np.array([0.2, 0.4]), np.array([True, True]))
    assert 0 <= every.threshold < 0.2 and every.flagged_fraction == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        tune_review_thresholds(np.array([]), np.array([], bool))
    with pytest.raises(ValueError, match="finite"):
        tune_review_thresholds(np.array([np.nan, 0.1]), np.array([True, False]))
    with pytest.raises(ValueError, match="criterion"):
        tune_review_thresholds(np.array([0.1]), np.array([True]), "auc")  # type: ignore[arg-type]


def test_nucleus_errors_by_hand() -> None:
    truth = np.zeros((20, 20), np.uint32)
    truth[2:6, 2:6] = 1
    pred = np.zeros((20, 20), np.uint32)
    pred[2:6, 3:7] = 4  # IoU 12/20 = 0.6 > 0.5: correct
    pred[10:14, 10:14] = 2  # nothing there: error
    assert nucleus_errors(truth, pred).tolist() == [True, False]  # labels 2, 4


def test_review_thresholds_from_validation() -> None:
    thresholds, choices = review_thresholds_from_validation(
        nucleus_uncertainties=np.array([0.1, 0.2, 0.6, 0.7]),
        nucleus_is_error=np.array([False, False, True, True]),
        image_uncertainties=np.array([0.05, 0.1, 0.4]),
        image_scores=np.array([0.9, 0.8, 0.3]),
        base=ReviewThresholds(max_flagged_fraction=0.1),
    )
    assert thresholds == ReviewThresholds(0.4, 0.25, 0.1)
    assert choices["nucleus"].value == 1.0 and choices["image"].n_errors == 1
