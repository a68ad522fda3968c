"""Tests for bayescellseg.data.targets."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.data.targets import make_targets
from tests.synthetic import synthetic_labels


def test_two_touching_squares_hand_computed() -> None:
    labels = np.zeros((6, 8), np.uint32)
    labels[1:5, 1:4] = 1
    labels[1:5, 4:7] = 2
    before = labels.copy()
    t = make_targets(labels)
    assert t.shape == (2, 6, 8) and t.dtype == np.float32
    fg = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )
    contour = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 1, 0, 1, 1, 0, 1, 0],  # columns 3 and 4: the shared edge, one pixel each side
            [0, 1, 0, 1, 1, 0, 1, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(t[0], fg)
    np.testing.assert_array_equal(t[1], contour)
    np.testing.assert_array_equal(labels, before)


def test_touching_nuclei_separated_by_contour() -> None:
    labels = synthetic_labels((64, 64), n=0, seed=0, touching_pair=True)
    t = make_targets(labels)
    interior = (t[0] > 0) & (t[1] == 0)
    # no interior pixel of label 1 is 4-adjacent to an interior pixel of label 2
    a = interior & (labels == 1)
    b = interior & (labels == 2)
    for shifted in (np.roll(b, 1, 0), np.roll(b, -1, 0), np.roll(b, 1, 1), np.roll(b, -1, 1)):
        assert not (a & shifted).any()
    assert ((t[1] > 0) <= (t[0] > 0)).all()


def test_image_edge_is_not_contour_and_empty_labels() -> None:
    labels = np.full((4, 5), 7, np.uint16)
    t = make_targets(labels)
    assert t[0].all() and not t[1].any()
    t = make_targets(np.zeros((3, 3), np.int32))
    assert not t.any()


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        make_targets(np.zeros((2, 3, 3), np.uint32))
    with pytest.raises(ValueError, match="integer"):
        make_targets(np.zeros((3, 3), np.float32))
