"""Tests of ECE, reliability bins, Brier, NLL, the boundary band and temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.metrics.calibration import (
    CalibrationAccumulator,
    boundary_band,
    brier,
    ece,
    nll,
    reliability_bins,
)

PROB = np.array([0.1, 0.1, 0.9, 0.9, 0.95, 0.55])
TARGET = np.array([0, 1, 1, 1, 0, 1], bool)


def test_ece_by_hand() -> None:
    # 10 bins. bin 1: p = 0.1, 0.1 (targets 0, 1): mean 0.1, freq 0.5, gap 0.4, n 2.
    # bin 9: p = 0.9, 0.9, 0.95 (1, 1, 0): mean 2.75/3, freq 2/3, gap 0.25, n 3.
    # bin 5: p = 0.55 (1): gap 0.45, n 1.
    # ECE = (2 * 0.4 + 3 * 0.25 + 1 * 0.45) / 6 = 2.0 / 6.
    assert ece(PROB, TARGET, n_bins=10) == pytest.approx(2.0 / 6)
    bins = reliability_bins(PROB, TARGET, n_bins=10)
    assert bins.counts.tolist() == [0, 2, 0, 0, 0, 1, 0, 0, 0, 3]
    assert bins.mean_prob[1] == pytest.approx(0.1) and bins.frequency[1] == 0.5
    assert bins.mean_prob[9] == pytest.approx(2.75 / 3) and bins.frequency[9] == pytest.approx(
        2 / 3
    )
    assert np.isnan(bins.mean_prob[0]) and np.isnan(bins.frequency[0])
    assert bins.edges.tolist() == pytest.approx(np.linspace(0, 1, 11).tolist())
    assert bins.ece == pytest.approx(2.0 / 6)


def test_probability_one_goes_in_last_bin_and_perfect_calibration() -> None:
    bins = reliability_bins(np.array([1.0, 0.0]), np.array([1, 0]), n_bins=15)
    assert bins.counts[-1] == 1 and bins.counts[0] == 1
    assert ece(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0
    # p = 0.25 on 4 pixels with exactly one positive: perfectly calibrated
    assert ece(np.full(4, 0.25), np.array([1, 0, 0, 0])) == 0.0


def test_brier_and_nll_by_hand() -> None:
    p = np.array([0.8, 0.3, 0.0])
    y = np.array([1, 0, 1])
    assert brier(p, y) == pytest.approx((0.04 + 0.09 + 1.0) / 3)
    # the p = 0 pixel with y = 1 is clipped to eps: -log(1e-7)
    expected = -(np.log(0.8) + np.log(0.7) + np.log(1e-7)) / 3
    assert nll(p, y) == pytest.approx(expected)
    assert nll(p, y, eps=1e-3) == pytest.approx(-(np.log(0.8) + np.log(0.7) + np.log(1e-3)) / 3)


def test_mask_selects_pixels_and_empty_is_nan() -> None:
    mask = np.array([True, True, False, False, False, False])
    assert ece(PROB, TARGET, n_bins=10, mask=mask) == pytest.approx(0.4)
    assert brier(PROB, TARGET, mask=mask) == pytest.approx((0.01 + 0.81) / 2)
    none = np.zeros(6, bool)
    assert np.isnan(ece(PROB, TARGET, mask=none)) and np.isnan(nll(PROB, TARGET, mask=none))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        ece(np.array([1.2]), np.array([1]))
    with pytest.raises(ValueError, match="binary"):
        brier(np.array([0.2]), np.array([2]))
    with pytest.raises(ValueError, match="differ in shape"):
        nll(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="boolean"):
        ece(PROB, TARGET, mask=np.ones(6))


def test_accumulator_equals_one_shot() -> None:
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (16, 16)) for _ in range(3)]
    targets = [rng.uniform(0, 1, (16, 16)) < p for p in images]
    masks = [rng.uniform(0, 1, (16, 16)) < 0.7 for _ in range(3)]
    acc = CalibrationAccumulator(n_bins=15)
    for p, t, m in zip(images, targets, masks, strict=True):
        acc.add(p, t, m)
    res = acc.result()
    all_p = np.concatenate([p[m] for p, m in zip(images, masks, strict=True)])
    all_t = np.concatenate([t[m] for t, m in zip(targets, masks, strict=True)])
    assert res.n == all_p.size
    assert res.ece == pytest.approx(ece(all_p, all_t), rel=1e-12)
    assert res.brier == pytest.approx(brier(all_p, all_t), rel=1e-12)
    assert res.nll == pytest.approx(nll(all_p, all_t), rel=1e-12)
    one = reliability_bins(all_p, all_t)
    assert np.array_equal(res.bins.counts, one.counts)
    assert np.allclose(res.bins.mean_prob, one.mean_prob, equal_nan=True)
    d = res.to_dict()
    assert d["n"] == res.n and len(d["bins"]["counts"]) == 15
    empty = CalibrationAccumulator().result()
    assert empty.n == 0 and np.isnan(empty.ece)


def test_boundary_band_of_a_square() -> None:
    labels = np.zeros((20, 20), np.uint32)
    labels[5:15, 5:15] = 1
    band = boundary_band(labels, width=2)
    # middle row: 2 px outside and 2 px inside each edge
    assert np.flatnonzero(band[10]).tolist() == [3, 4, 5, 6, 13, 14, 15, 16]
    assert not band[10, 10] and not band[0, 0]
    one = boundary_band(labels > 0, width=1)
    assert np.flatnonzero(one[10]).tolist() == [4, 5, 14, 15]
    assert not boundary_band(np.zeros((5, 5), bool)).any()


def test_boundary_band_sees_contacts_only_with_labels() -> None:
    labels = np.zeros((12, 20), np.uint32)
    labels[2:10, 2:10] = 1
    labels[2:10, 10:18] = 2  # touching at column 9/10
    assert boundary_band(labels, width=1)[5, 9] and boundary_band(labels, width=1)[5, 10]
    assert not boundary_band(labels > 0, width=1)[5, 9]
    with pytest.raises(ValueError, match="width"):
        boundary_band(labels, width=0)
