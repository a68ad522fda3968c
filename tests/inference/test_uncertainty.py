"""Entropy, mutual information and variance maps; stitching of moments."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.inference.tiling import gaussian_weight, tile_slices
from bayescellseg.inference.uncertainty import (
    MomentStitcher,
    binary_entropy,
    sample_moments,
    uncertainty_maps,
)


def test_binary_entropy_hand_values() -> None:
    h = binary_entropy(np.array([0.0, 1.0, 0.5, 0.25]))
    expected_quarter = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))  # 0.8113 bits
    np.testing.assert_allclose(h, [0.0, 0.0, 1.0, expected_quarter], atol=1e-6)


def test_disagreeing_certain_samples_are_purely_epistemic() -> None:
    # Samples p = [0, 1]: mean 0.5 -> H = 1 bit, each sample certain -> E[H] = 0, MI = 1,
    # variance = E[p^2] - E[p]^2 = 0.5 - 0.25 = 0.25.
    fg = np.array([0.0, 1.0], np.float32).reshape(2, 1, 1)
    maps = uncertainty_maps(sample_moments(fg, np.zeros_like(fg)))
    assert maps.probability[0, 0] == pytest.approx(0.5)
    assert maps.entropy[0, 0] == pytest.approx(1.0)
    assert maps.aleatoric[0, 0] == pytest.approx(0.0)
    assert maps.epistemic[0, 0] == pytest.approx(1.0)
    assert maps.variance[0, 0] == pytest.approx(0.25)


def test_agreeing_uncertain_samples_are_purely_aleatoric() -> None:
    fg = np.full((5, 2, 3), 0.5, np.float32)
    maps = uncertainty_maps(sample_moments(fg, fg))
    np.testing.assert_allclose(maps.entropy, 1.0, atol=1e-6)
    np.testing.assert_allclose(maps.aleatoric, 1.0, atol=1e-6)
    np.testing.assert_allclose(maps.epistemic, 0.0, atol=1e-6)
    np.testing.assert_allclose(maps.variance, 0.0, atol=1e-6)
    np.testing.assert_allclose(maps.contour, 0.5)


def test_mixed_hand_case() -> None:
    # p = [0.2, 0.6]: mean 0.4, H(0.4) = 0.97095, E[H] = (H(0.2) + H(0.6)) / 2
    # = (0.72193 + 0.97095) / 2 = 0.84644, MI = 0.12451, var = (0.04 + 0.36) / 2 - 0.16 = 0.04.
    fg = np.array([0.2, 0.6], np.float32).reshape(2, 1, 1)
    maps = uncertainty_maps(sample_moments(fg, fg))
    assert maps.entropy[0, 0] == pytest.approx(0.970951, abs=1e-5)
    assert maps.aleatoric[0, 0] == pytest.approx(0.846439, abs=1e-5)
    assert maps.epistemic[0, 0] == pytest.approx(0.124512, abs=1e-5)
    assert maps.variance[0, 0] == pytest.approx(0.04, abs=1e-6)


def test_random_maps_ranges_and_identity() -> None:
    rng = np.random.default_rng(0)
    fg = rng.beta(0.5, 0.5, size=(20, 16, 16)).astype(np.float32)
    ct = rng.uniform(size=(20, 16, 16)).astype(np.float32)
    before = fg.copy()
    maps = uncertainty_maps(sample_moments(fg, ct))
    np.testing.assert_array_equal(fg, before)  # input not modified
    for name in ("probability", "entropy", "aleatoric", "epistemic", "contour"):
        arr = getattr(maps, name)
        assert arr.shape == (16, 16) and arr.dtype == np.float32
        assert arr.min() >= 0 and arr.max() <= 1
    assert maps.variance.max() <= 0.25
    np.testing.assert_allclose(maps.epistemic, maps.entropy - maps.aleatoric, atol=1e-6)
    np.testing.assert_allclose(maps.variance, fg.var(axis=0), atol=1e-6)


def test_stitching_identical_tiles_reproduces_moments() -> None:
    rng = np.random.default_rng(1)
    fg = rng.uniform(size=(4, 50, 70)).astype(np.float32)
    whole = sample_moments(fg, fg)
    stitcher = MomentStitcher((50, 70))
    for rows, cols in tile_slices((50, 70), 32, 8):
        tile_moments = sample_moments(fg[:, rows, cols], fg[:, rows, cols])
        stitcher.add((rows, cols), tile_moments, gaussian_weight(32))
    stitched = uncertainty_maps(stitcher.result())
    expected = uncertainty_maps(whole)
    for name in ("probability", "entropy", "aleatoric", "epistemic", "variance", "contour"):
        np.testing.assert_allclose(getattr(stitched, name), getattr(expected, name), atol=1e-5)


def test_stitching_detects_uncovered_pixels() -> None:
    stitcher = MomentStitcher((4, 4))
    with pytest.raises(RuntimeError, match="not covered"):
        stitcher.result()


def test_tie_broken_uncertainty_hand_values() -> None:
    from bayescellseg.inference.uncertainty import TIE_FLOOR, tie_broken_uncertainty

    # (1 - 0.001) * d + 0.001 * h
    assert tie_broken_uncertainty(0.0, 0.2, 3) == pytest.approx(0.0002)
    assert tie_broken_uncertainty(0.5, 0.3, 2) == pytest.approx(0.999 * 0.5 + 0.0003)
    assert tie_broken_uncertainty(1.0, 1.0, 1) == pytest.approx(1.0)
    assert tie_broken_uncertainty(0.0, 0.0, 3) == TIE_FLOOR  # nuclei: never exactly 0
    assert tie_broken_uncertainty(0.0, 0.0, 0) == 0.0  # nothing predicted: may be 0


def test_tie_broken_uncertainty_orders_ties_by_entropy_keeps_other_order() -> None:
    from bayescellseg.inference.uncertainty import tie_broken_uncertainty

    tied = [tie_broken_uncertainty(0.0, h, 5) for h in (0.05, 0.3, 0.1)]
    assert np.argsort(tied).tolist() == [0, 2, 1]
    # a disagreement gap larger than 0.001 is never reversed by the entropy
    assert tie_broken_uncertainty(0.002, 0.0, 5) > tie_broken_uncertainty(0.0, 1.0, 5)
