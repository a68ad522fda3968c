"""Tests of instance matching and the DSB2018 score."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import expand_labels

from bayescellseg.metrics.matching import (
    DSB_THRESHOLDS,
    average_precision,
    count_error,
    dsb_score,
    f1,
    iou_matrix,
    match,
)
from tests.synthetic import synthetic_labels


def square(shape: tuple[int, int], r0: int, c0: int, size: int, label: int = 1) -> np.ndarray:
    out = np.zeros(shape, np.uint32)
    out[r0 : r0 + size, c0 : c0 + size] = label
    return out


def test_dsb_thresholds_are_the_ten_official_values() -> None:
    assert DSB_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_perfect_prediction_scores_one_even_with_other_ids() -> None:
    true = synthetic_labels((64, 64), n=6, seed=3)
    pred = np.where(true > 0, true * 7 + 100, 0).astype(np.uint32)  # same nuclei, other ids
    assert dsb_score(true, pred) == 1.0
    res = match(true, pred)
    assert np.all(res.tp == res.n_true) and np.all(res.fp == 0) and np.all(res.fn == 0)
    assert np.all(res.pred_has_match)
    assert np.array_equal(res.pred_best_true, (res.ids_pred - 100) // 7)


def test_one_pixel_shift_of_a_4x4_square_by_hand() -> None:
    # True: a 4x4 square (16 px). Prediction: the same square shifted right by one pixel.
    # Intersection = 4 rows x 3 columns = 12 px; union = 16 + 16 - 12 = 20 px; IoU = 12/20 = 0.6.
    # Matched (IoU > t) at t = 0.5 and 0.55 only (0.6 > 0.6 is false), so
    # TP/(TP+FP+FN) = 1/1 at 2 thresholds and 0/(0+1+1) = 0 at the other 8: score = 2/10 = 0.2.
    true = square((10, 10), 2, 2, 4)
    pred = square((10, 10), 2, 3, 4)
    ids_t, ids_p, iou = iou_matrix(true, pred)
    assert iou.shape == (1, 1) and iou[0, 0] == pytest.approx(0.6)
    res = match(true, pred)
    assert res.tp.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert res.fp.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    assert res.fn.tolist() == res.fp.tolist()
    assert dsb_score(true, pred) == pytest.approx(0.2)
    assert average_precision(true, pred, 0.5) == 1.0
    assert average_precision(true, pred, 0.75) == 0.0


def test_iou_of_exactly_half_is_not_a_match() -> None:
    # 4x4 true square inside a 4x8 predicted rectangle: IoU = 16 / 32 = 0.5, and 0.5 > 0.5 is false.
    true = square((10, 12), 2, 2, 4)
    pred = np.zeros((10, 12), np.uint32)
    pred[2:6, 2:10] = 5
    res = match(true, pred, 0.5)
    assert res.pred_best_iou[0] == 0.5
    assert res.tp.tolist() == [0] and not res.pred_has_match[0]
    assert dsb_score(true, pred) == 0.0


def test_two_objects_with_one_miss_and_one_false_positive() -> None:
    # Truth: A and B. Prediction: A exactly, and C where there is no nucleus.
    # At every threshold TP = 1 (A), FN = 1 (B), FP = 1 (C): precision = 1/3, score = 1/3.
    true = square((20, 20), 1, 1, 4, 1) + square((20, 20), 10, 10, 4, 2)
    pred = square((20, 20), 1, 1, 4, 3) + square((20, 20), 1, 12, 5, 9)
    res = match(true, pred)
    assert np.all(res.tp == 1) and np.all(res.fp == 1) and np.all(res.fn == 1)
    assert np.allclose(res.precision, 1 / 3)
    assert dsb_score(true, pred) == pytest.approx(1 / 3)
    assert f1(true, pred) == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))  # 0.5
    assert res.pred_has_match.tolist() == [True, False]  # ids_pred = [3, 9]
    assert res.true_has_match.tolist() == [True, False]
    assert res.true_best_iou.tolist() == [1.0, 0.0]
    assert res.pred_best_true.tolist() == [1, 0]
    assert res.at(0.5) == {
        "tp": 1,
        "fp": 1,
        "fn": 1,
        "precision": pytest.approx(1 / 3),
        "recall": 0.5,
        "f1": 0.5,
    }
    with pytest.raises(KeyError):
        res.at(0.3)


def test_empty_images() -> None:
    empty = np.zeros((8, 8), np.uint32)
    one = square((8, 8), 2, 2, 3)
    assert dsb_score(empty, empty) == 1.0  # nothing to find, nothing predicted
    assert dsb_score(empty, one) == 0.0  # only false positives
    assert dsb_score(one, empty) == 0.0  # only misses
    assert f1(empty, empty) == 1.0 and f1(one, empty) == 0.0
    res = match(empty, one)
    assert res.n_true == 0 and res.n_pred == 1 and np.all(res.fp == 1)
    ids_t, ids_p, iou = iou_matrix(empty, one)
    assert ids_t.size == 0 and ids_p.tolist() == [1] and iou.shape == (0, 1)


def test_iou_matrix_hand_values_and_non_consecutive_ids() -> None:
    true = np.zeros((6, 6), np.uint32)
    true[0:2, 0:2] = 7  # 4 px
    true[4:6, 4:6] = 3  # 4 px
    pred = np.zeros((6, 6), np.uint32)
    pred[0:2, 1:3] = 2  # 4 px, 2 shared with id 7 -> IoU 2 / 6
    pred[3:6, 3:6] = 40  # 9 px, contains id 3 -> IoU 4 / 9
    ids_t, ids_p, iou = iou_matrix(true, pred)
    assert ids_t.tolist() == [3, 7] and ids_p.tolist() == [2, 40]
    expected = np.array([[0.0, 4 / 9], [2 / 6, 0.0]])
    assert np.allclose(iou, expected)


def test_iou_matrix_matches_brute_force_on_random_labels() -> None:
    true = synthetic_labels((96, 96), n=12, seed=5)
    pred = np.roll(synthetic_labels((96, 96), n=12, seed=5), (2, -3), axis=(0, 1))
    pred[pred == 4] = 0
    ids_t, ids_p, iou = iou_matrix(true, pred)
    for i, a in enumerate(ids_t):
        for j, b in enumerate(ids_p):
            ta, pb = true == a, pred == b
            assert iou[i, j] == pytest.approx((ta & pb).sum() / (ta | pb).sum())


def test_low_threshold_matching_is_one_to_one() -> None:
    # 1 x 20 strip. T1 = cols 0-9, T2 = cols 10-19, P1 = cols 5-14, P2 = cols 0-4.
    # IoU(T1, P1) = 5/15, IoU(T2, P1) = 5/15, IoU(T1, P2) = 5/10. Three pairs exceed 0.3 but a
    # one-to-one matching has at most 2 (T1-P2, T2-P1).
    true = np.zeros((1, 20), np.uint32)
    true[0, :10], true[0, 10:] = 1, 2
    pred = np.zeros((1, 20), np.uint32)
    pred[0, 5:15], pred[0, :5] = 1, 2
    res = match(true, pred, thresholds=[0.3, 0.4, 0.5])
    assert res.tp.tolist() == [2, 1, 0]
    assert res.precision.tolist() == pytest.approx([1.0, 1 / 3, 0.0])


def test_count_error() -> None:
    true = square((20, 20), 1, 1, 4, 1) + square((20, 20), 10, 10, 4, 2)
    pred = square((20, 20), 1, 1, 4, 5)
    ce = count_error(true, pred)
    assert (ce.n_true, ce.n_pred, ce.signed, ce.absolute) == (2, 1, -1, 1)
    assert ce.relative == 0.5
    assert np.isnan(count_error(np.zeros((3, 3), int), pred[:3, :3]).relative)


def test_inputs_untouched_results_read_only_and_bad_input() -> None:
    true = synthetic_labels((48, 48), n=4, seed=2)
    pred = np.roll(true, 1, axis=0)
    t0, p0 = true.copy(), pred.copy()
    res = match(true, pred)
    assert np.array_equal(true, t0) and np.array_equal(pred, p0)
    with pytest.raises(ValueError):
        res.tp[0] = 5
    with pytest.raises(ValueError, match="differ in shape"):
        match(true, pred[:10])
    with pytest.raises(ValueError, match="integer"):
        match(true.astype(float), pred)
    with pytest.raises(ValueError, match=">= 0"):
        match(true.astype(np.int32) - 1, pred)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        match(true, pred, thresholds=1.0)


def test_huge_label_values_and_bool_masks() -> None:
    true = square((10, 10), 2, 2, 4, 1)
    pred = square((10, 10), 2, 2, 4, 1).astype(np.uint64) * np.uint64(2**40)
    assert dsb_score(true, pred) == 1.0
    assert dsb_score(true > 0, true) == 1.0


def test_1000x1000_with_500_nuclei() -> None:
    rng = np.random.default_rng(0)
    seeds = np.zeros((1000, 1000), np.uint32)
    pts = rng.choice(1000 * 1000, 500, replace=False)
    seeds.flat[pts] = np.arange(1, 501)
    true = expand_labels(seeds, 20).astype(np.uint32)
    pred = np.roll(true, 2, axis=1)
    res = match(true, pred)
    ids_t, ids_p, iou = iou_matrix(true, pred)
    assert res.n_true == 500 and iou.shape == (500, 500)
    assert 0.0 < res.score < 1.0


def test_real_dsb_masks_self_match(dsb_root) -> None:
    from PIL import Image

    sample = sorted(p for p in dsb_root.iterdir() if p.is_dir())[0]
    masks = sorted((sample / "masks").glob("*.png"))
    first = np.asarray(Image.open(masks[0]))
    labels = np.zeros(first.shape[:2], np.uint32)
    for k, path in enumerate(masks, start=1):
        m = np.asarray(Image.open(path))
        labels[(m > 0) & (labels == 0)] = k
    assert dsb_score(labels, labels) == 1.0
    shifted = np.roll(labels, 1, axis=1)
    score = dsb_score(labels, shifted)
    assert 0.0 < score < 1.0
