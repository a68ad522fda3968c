"""Nucleus sizes: equivalent diameters against hand-computed areas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayescellseg.data.sizes import equivalent_diameters, median_diameter


def test_equivalent_diameters_of_known_areas() -> None:
    labels = np.zeros((20, 20), np.uint16)
    labels[0:2, 0:2] = 1  # area 4
    labels[5:15, 5:15] = 7  # area 100; labels 2-6 absent
    before = labels.copy()
    d = equivalent_diameters(labels)
    np.testing.assert_allclose(d, [math.sqrt(16 / math.pi), math.sqrt(400 / math.pi)])
    np.testing.assert_array_equal(labels, before)
    assert equivalent_diameters(np.zeros((4, 4), np.uint8)).size == 0


def test_median_diameter_pools_images_and_needs_nuclei() -> None:
    a = np.zeros((10, 10), np.int32)
    a[:1, :1] = 1  # area 1
    b = np.zeros((10, 10), np.int32)
    b[:2, :2], b[5:8, 5:8] = 1, 2  # areas 4, 9
    assert median_diameter([a, b]) == pytest.approx(math.sqrt(16 / math.pi))
    assert math.isnan(median_diameter([a, b], min_count=4))
    assert math.isnan(median_diameter([]))


@pytest.mark.parametrize(
    "bad", [np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3)), -np.ones((2, 2), int)]
)
def test_equivalent_diameters_rejects_bad_labels(bad) -> None:
    with pytest.raises(ValueError, match="labels"):
        equivalent_diameters(bad)
