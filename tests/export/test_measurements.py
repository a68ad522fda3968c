"""Nucleus measurements against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayescellseg.export.measurements import measure_nuclei, measurement_columns, nucleus_table
from tests.export.results import synthetic_result


def _labels_and_intensity() -> tuple[np.ndarray, np.ndarray]:
    """1: a 4 x 10 rectangle; 2: a 5 x 5 square; 3: a 4 x 10 rectangle with a 2 x 4 notch cut
    from the middle of its top edge (area 32, convex hull the full 40-pixel rectangle)."""
    labels = np.zeros((20, 30), np.uint32)
    labels[1:5, 2:12] = 1
    labels[8:13, 2:7] = 2
    labels[14:18, 15:25] = 3
    labels[14:16, 18:22] = 0
    intensity = np.zeros((20, 30), np.uint16)
    intensity[labels == 1] = 100
    intensity[2, 5] = 400  # one bright pixel: mean (39 * 100 + 400) / 40 = 107.5
    intensity[8:13, 2:7] = np.arange(25).reshape(5, 5)  # mean 12, max 24
    intensity[labels == 3] = 7
    return labels, intensity


def test_shape_and_intensity_columns_by_hand() -> None:
    labels, intensity = _labels_and_intensity()
    m = measure_nuclei(labels, intensity, ("",), pixel_size_um=0.5)
    rect, square, notched = m[1], m[2], m[3]
    assert rect["area"] == 40 and square["area"] == 25 and notched["area"] == 32
    # contour through the boundary pixels' centres: 2 (h - 1) + 2 (w - 1)
    assert rect["perimeter"] == pytest.approx(24.0) and square["perimeter"] == pytest.approx(16.0)
    # second moments of a h x w pixel rectangle: (h^2 - 1) / 12 and (w^2 - 1) / 12
    var_rows, var_cols = (16 - 1) / 12, (100 - 1) / 12
    assert rect["major_axis_length"] == pytest.approx(4 * math.sqrt(var_cols))
    assert rect["minor_axis_length"] == pytest.approx(4 * math.sqrt(var_rows))
    assert rect["eccentricity"] == pytest.approx(math.sqrt(1 - var_rows / var_cols))
    assert square["eccentricity"] == pytest.approx(0.0, abs=1e-12)
    assert rect["solidity"] == pytest.approx(1.0) and notched["solidity"] == pytest.approx(32 / 40)
    assert rect["mean_intensity"] == pytest.approx(107.5) and rect["max_intensity"] == 400
    assert square["mean_intensity"] == pytest.approx(12.0) and square["max_intensity"] == 24
    assert (rect["bbox_min_row"], rect["bbox_min_col"]) == (1, 2)
    assert (rect["bbox_max_row"], rect["bbox_max_col"]) == (5, 12)
    assert rect["area_um2"] == pytest.approx(40 * 0.25)
    assert rect["perimeter_um"] == pytest.approx(24 * 0.5)
    assert rect["major_axis_length_um"] == pytest.approx(2 * math.sqrt(var_cols))
    assert set(rect) == {"area", *measurement_columns(("",))}


def test_unknown_pixel_size_leaves_micrometre_columns_nan() -> None:
    labels, intensity = _labels_and_intensity()
    rect = measure_nuclei(labels, intensity)[1]
    for column in ("area_um2", "perimeter_um", "major_axis_length_um", "minor_axis_length_um"):
        assert math.isnan(rect[column])
    assert rect["perimeter"] == pytest.approx(24.0)


def test_several_planes_get_named_columns() -> None:
    labels, intensity = _labels_and_intensity()
    planes = np.stack([intensity, intensity * 2], axis=-1)
    square = measure_nuclei(labels, planes, ("c0", "c2"))[2]
    assert square["mean_intensity_c0"] == pytest.approx(12.0)
    assert square["mean_intensity_c2"] == pytest.approx(24.0)
    assert square["max_intensity_c2"] == 48
    assert "mean_intensity" not in square
    assert measurement_columns(("c0", "c2"))[9:13] == (
        "mean_intensity_c0",
        "max_intensity_c0",
        "mean_intensity_c2",
        "max_intensity_c2",
    )


def test_mismatched_planes_are_refused() -> None:
    labels, intensity = _labels_and_intensity()
    with pytest.raises(ValueError, match="does not match"):
        measure_nuclei(labels, intensity, ("a", "b"))
    with pytest.raises(ValueError, match="does not match"):
        measure_nuclei(labels, intensity[:5])


def test_table_merges_uncertainty_and_measurements_in_record_order() -> None:
    result, image = synthetic_result()
    columns = measurement_columns(("",))
    rows = nucleus_table(result.nuclei, measure_nuclei(result.labels, image), columns)
    assert [r["label"] for r in rows] == [r.label for r in result.nuclei]
    for row, record in zip(rows, result.nuclei, strict=True):
        assert row["area"] == record.area == int((result.labels == record.label).sum())
        assert row["mean_entropy"] == pytest.approx(record.mean_entropy)
        assert row["mean_intensity"] == pytest.approx(3000 + 10 * record.label)
    assert list(rows[0])[:10] == list(result.nuclei[0].to_dict())
    assert list(rows[0])[10:] == list(columns)


def test_inputs_are_not_modified() -> None:
    labels, intensity = _labels_and_intensity()
    before = labels.copy(), intensity.copy()
    measure_nuclei(labels, intensity, ("",), 0.5)
    np.testing.assert_array_equal(labels, before[0])
    np.testing.assert_array_equal(intensity, before[1])
