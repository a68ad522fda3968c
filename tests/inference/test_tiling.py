"""Tile positions, cores and Gaussian weights."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.inference.tiling import (
    core_slices,
    gaussian_weight,
    tile_cores,
    tile_extent,
    tile_slices,
    tile_starts,
)


def test_single_tile_when_image_fits() -> None:
    assert tile_starts(100, 512, 64) == [0]
    assert tile_starts(512, 512, 64) == [0]


def test_starts_hand_computed() -> None:
    # size 1000, tile 512, overlap 64: step 448 -> ceil(488 / 448) + 1 = 3 tiles,
    # spread evenly: actual step 244 -> 0, 244, 488.
    assert tile_starts(1000, 512, 64) == [0, 244, 488]
    # Exact fit: 0, 448, 896 for size 1408.
    assert tile_starts(1408, 512, 64) == [0, 448, 896]


@pytest.mark.parametrize("size", [513, 700, 1000, 4096, 5000])
@pytest.mark.parametrize("overlap", [0, 64, 128])
def test_starts_cover_with_overlap(size: int, overlap: int) -> None:
    tile = 512
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] == size - tile
    gaps = np.diff(starts)
    assert np.all(gaps > 0) and np.all(tile - gaps >= overlap)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 32, 32)
    with pytest.raises(ValueError, match="positive"):
        tile_starts(0, 32, 4)


def test_slices_cover_and_cores_partition() -> None:
    shape = (300, 170)
    tiles = tile_slices(shape, 128, 32)
    cores = core_slices(shape, 128, 32)
    assert len(tiles) == len(cores)
    covered = np.zeros(shape, int)
    owned = np.zeros(shape, int)
    for (tr, tc), (cr, cc) in zip(tiles, cores, strict=True):
        assert tr.stop - tr.start == 128 and tc.stop - tc.start == 128
        assert tr.start <= cr.start and cr.stop <= tr.stop
        assert tc.start <= cc.start and cc.stop <= tc.stop
        covered[tr, tc] += 1
        owned[cr, cc] += 1
    assert covered.min() >= 1
    assert np.all(owned == 1)


def test_cores_hand_computed() -> None:
    # starts 0, 244, 488 with tile 512: centres 256, 500, 744 -> cuts at 378 and 622.
    assert tile_cores(1000, 512, 64) == [(0, 378), (378, 622), (622, 1000)]
    # Small images: a single tile of the image's own size.
    assert tile_cores(50, 512, 64) == [(0, 50)]
    assert tile_slices((50, 60), 512, 64) == [(slice(0, 50), slice(0, 60))]


def test_gaussian_weight() -> None:
    w = gaussian_weight(64)
    assert w.shape == (64, 64) and w.dtype == np.float32
    assert w.max() == pytest.approx(1.0, abs=1e-3)
    assert w.min() > 0
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    # Separable Gaussian with sigma = 64 / 8 = 8: the corner is exp(-(31.5 / 8)^2)
    # relative to the (off-grid) centre, the row through the centre pixels follows one 1-D curve.
    centre = np.exp(-0.5 * (0.5 / 8) ** 2) ** 2
    assert w[0, 0] == pytest.approx(np.exp(-((31.5 / 8) ** 2)) / centre, rel=1e-4)
    rect = gaussian_weight((16, 40), sigma_scale=0.25)
    assert rect.shape == (16, 40)


def test_tile_extent_hand_computed_cases() -> None:
    # 520 needs 2 tiles of 512; 2 tiles of ceil((520 + 64) / 2) = 292 cover it too
    assert tile_extent(520, 512, 64) == 292
    assert tile_extent(520, 512, 64, align=16) == 304
    assert tile_extent(2048, 512, 64, align=16) == 464  # 5 tiles: ceil(2304 / 5) = 461
    assert tile_extent(1000, 512, 64, align=16) == 384  # 3 tiles: ceil(1128 / 3) = 376
    assert tile_extent(300, 512, 64, align=16) == 300  # one tile: the whole axis
    assert tile_extent(513, 512, 64, align=512) == 512  # never beyond the largest tile
    with pytest.raises(ValueError, match="align"):
        tile_extent(600, 512, 64, align=0)


@pytest.mark.parametrize("size", [33, 100, 511, 513, 520, 777, 1000, 1388, 2048, 4099])
@pytest.mark.parametrize("align", [1, 16])
def test_tile_extent_needs_no_more_tiles_and_keeps_the_overlap(size: int, align: int) -> None:
    tile, overlap = 512, 64
    extent = tile_extent(size, tile, overlap, align)
    assert 1 <= extent <= min(tile, size)
    starts = tile_starts(size, extent, overlap)
    assert len(starts) <= len(tile_starts(size, tile, overlap))
    assert starts[0] == 0 and starts[-1] + extent == size
    gaps = np.diff(starts)
    assert (extent - gaps >= overlap).all()  # neighbours overlap by at least the minimum
