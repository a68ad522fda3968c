"""Tests of the uncertainty overlay and map colouring."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps
from skimage.segmentation import find_boundaries

from bayescellseg.report.overlay import (
    FLAG_COLOR,
    colorize,
    display_image,
    make_overlay,
    uncertainty_vmax,
)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((40, 40), np.uint32)
    labels[5:15, 5:15] = 3
    labels[22:34, 20:32] = 8
    image = np.full((40, 40, 3), 0.1, np.float32)
    image[labels > 0] = 0.8
    return image, labels


def _cmap_bytes(name: str, x: float) -> np.ndarray:
    return np.asarray(colormaps[name](x, bytes=True)[:3], np.uint8)


def test_overlay_colours_contours_by_uncertainty() -> None:
    image, labels = _scene()
    out = make_overlay(image, labels, {3: 0.0, 8: 1.0})
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    edges = find_boundaries(labels, mode="inner")
    assert (out[edges & (labels == 3)] == _cmap_bytes("RdYlGn_r", 0.0)).all()
    assert (out[edges & (labels == 8)] == _cmap_bytes("RdYlGn_r", 1.0)).all()
    # Interiors and background show the stretched image (grey), not contour colours.
    interior = (labels > 0) & ~edges
    assert (out[interior] == out[interior][:, :1]).all()
    assert out[interior].min() > out[labels == 0].max()
    assert not (out == np.array(FLAG_COLOR, np.uint8)).all(axis=-1).any()


def test_flagged_nuclei_are_ringed() -> None:
    image, labels = _scene()
    plain = make_overlay(image, labels, {3: 0.2, 8: 0.9})
    flagged = make_overlay(image, labels, {3: 0.2, 8: 0.9}, flagged={8}, flag_width=2)
    magenta = (flagged == np.array(FLAG_COLOR, np.uint8)).all(axis=-1)
    ring = (labels[20:36, 18:34] == 0) & magenta[20:36, 18:34]
    # 2-px ring around the 12x12 square, grown with the 4-connected cross twice: four 12x2
    # sides (96 px) plus one diagonal pixel per corner (4 px).
    assert ring.sum() == 4 * 12 * 2 + 4
    assert not magenta[labels == 3].any() and not magenta[0:18, 0:18].any()
    assert (flagged != plain).any(axis=-1).sum() == magenta.sum()
    assert (flagged[labels > 0] == plain[labels > 0]).all()  # outlines unchanged


def test_missing_uncertainty_is_white_and_inputs_unchanged() -> None:
    image, labels = _scene()
    image_copy, labels_copy = image.copy(), labels.copy()
    out = make_overlay(image, labels, {3: 0.5})
    edges = find_boundaries(labels, mode="inner") & (labels == 8)
    assert (out[edges] == 255).all()
    assert np.array_equal(image, image_copy) and np.array_equal(labels, labels_copy)


def test_overlay_errors_and_empty_labels() -> None:
    image, labels = _scene()
    with pytest.raises(ValueError, match="do not match"):
        make_overlay(image[:-1], labels, {})
    with pytest.raises(ValueError, match="integers"):
        make_overlay(image, labels.astype(float), {})
    with pytest.raises(ValueError, match="colormap"):
        make_overlay(image, labels, {}, cmap="no-such-map")
    empty = make_overlay(image, np.zeros_like(labels), {})
    assert np.array_equal(empty, (display_image(image) * 255 + 0.5).astype(np.uint8))


def test_display_image_stretches_and_converts() -> None:
    grey = np.linspace(0, 1000, 100 * 100, dtype=np.float32).reshape(100, 100)
    out = display_image(grey, low=0.0, high=100.0)
    assert out.shape == (100, 100, 3) and out.dtype == np.float32
    assert out[0, 0, 0] == 0.0 and out[-1, -1, 2] == 1.0
    assert np.array_equal(out[..., 0], out[..., 1])
    stretched = display_image(grey)  # 1..99.8 percentiles saturate the extremes
    assert stretched[0, 0, 0] == 0.0 and stretched[-1, -1, 0] == 1.0
    assert stretched[50, 50, 0] == pytest.approx((grey[50, 50] - 10) / (998 - 10), abs=0.01)
    const = display_image(np.full((8, 8, 4), 0.3, np.float32))
    assert const.shape == (8, 8, 3) and np.isfinite(const).all()
    with pytest.raises(ValueError, match="image"):
        display_image(np.zeros((4, 4, 2)))


def test_colorize_maps_range_and_nan() -> None:
    values = np.array([[0.0, 0.5], [1.0, np.nan]])
    rgb = colorize(values, vmin=0.0, vmax=1.0, cmap="magma")
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == _cmap_bytes("magma", 0.0)).all()
    assert (rgb[1, 0] == _cmap_bytes("magma", 1.0)).all()
    assert (rgb[0, 1] == _cmap_bytes("magma", 0.5)).all()
    assert (rgb[1, 1] == 0).all()
    # Default range = finite min..max; values outside vmin..vmax are clipped.
    auto = colorize(values * 4 + 2)
    assert (auto[0, 0] == rgb[0, 0]).all() and (auto[1, 0] == rgb[1, 0]).all()
    clipped = colorize(np.array([[-1.0, 2.0]]), vmin=0, vmax=1)
    assert (clipped[0, 0] == rgb[0, 0]).all() and (clipped[0, 1] == rgb[1, 0]).all()
    assert (colorize(np.zeros((3, 3)))[0, 0] == _cmap_bytes("magma", 0.0)).all()
    with pytest.raises(ValueError, match="2-D"):
        colorize(np.zeros((2, 2, 3)))


def test_uncertainty_vmax_is_twice_a_usable_threshold() -> None:
    assert uncertainty_vmax(0.05) == pytest.approx(0.1)
    assert uncertainty_vmax(0.5) == pytest.approx(1.0)
    for unusable in (float("nan"), float("inf"), 0.0, -0.2):
        assert uncertainty_vmax(unusable) == 1.0
