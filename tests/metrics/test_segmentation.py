"""Tests of pixel Dice/IoU and the segmentation summary."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.metrics.segmentation import pixel_dice, pixel_iou, segmentation_summary


def test_pixel_dice_and_iou_by_hand() -> None:
    true = np.zeros((4, 4), bool)
    true[0:2, 0:2] = True  # 4 px
    pred = np.zeros((4, 4), bool)
    pred[0:2, 1:4] = True  # 6 px, 2 shared
    assert pixel_dice(true, pred) == pytest.approx(2 * 2 / (4 + 6))  # 0.4
    assert pixel_iou(true, pred) == pytest.approx(2 / 8)  # union = 4 + 6 - 2


def test_labels_count_as_foreground_and_empty_cases() -> None:
    empty = np.zeros((5, 5), np.uint32)
    lab = np.zeros((5, 5), np.uint32)
    lab[1:3, 1:3] = 9
    assert pixel_dice(lab, lab > 0) == 1.0
    assert pixel_dice(empty, empty) == 1.0 and pixel_iou(empty, empty) == 1.0
    assert pixel_dice(lab, empty) == 0.0 and pixel_iou(empty, lab) == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_dice(lab, lab[:4])


def test_segmentation_summary_two_objects_one_miss_one_false_positive() -> None:
    true = np.zeros((20, 20), np.uint32)
    true[1:5, 1:5] = 1  # A, 16 px
    true[10:14, 10:14] = 2  # B, 16 px (missed)
    pred = np.zeros((20, 20), np.uint32)
    pred[1:5, 1:5] = 3  # A exactly
    pred[1:6, 12:17] = 9  # false positive, 25 px
    s = segmentation_summary(true, pred)
    assert s.dsb == pytest.approx(1 / 3)  # TP=FP=FN=1 at every threshold
    assert s.ap50 == pytest.approx(1 / 3) and s.ap75 == pytest.approx(1 / 3)
    assert s.f1 == pytest.approx(0.5)
    assert s.dice == pytest.approx(2 * 16 / (32 + 41))
    assert s.iou == pytest.approx(16 / (32 + 41 - 16))
    assert (s.count_error, s.abs_count_error, s.n_true, s.n_pred) == (0, 0, 2, 2)
    d = s.to_dict()
    assert set(d) == {
        "dsb",
        "ap50",
        "ap75",
        "f1",
        "dice",
        "iou",
        "count_error",
        "abs_count_error",
        "n_true",
        "n_pred",
    }


def test_summary_of_shifted_square() -> None:
    true = np.zeros((10, 10), np.uint32)
    true[2:6, 2:6] = 1
    pred = np.roll(true, 1, axis=1)  # IoU 12/20 = 0.6: matched at 0.5 and 0.55 only
    s = segmentation_summary(true, pred)
    assert s.dsb == pytest.approx(0.2)
    assert s.ap50 == 1.0 and s.ap75 == 0.0 and s.f1 == 1.0
    assert s.dice == pytest.approx(24 / 32) and s.iou == pytest.approx(0.6)
