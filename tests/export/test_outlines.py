"""Outlines, QuPath GeoJSON and ImageJ ROI sets: round trips back to the label image."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import roifile
from scipy import ndimage
from skimage.draw import polygon2mask

from bayescellseg.export.geojson import feature_collection, write_geojson
from bayescellseg.export.measurements import measure_nuclei, measurement_columns, nucleus_table
from bayescellseg.export.polygons import nucleus_outlines, outline
from bayescellseg.export.rois import write_roi_zip
from tests.export.results import synthetic_result


def _rasterise(points_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside a pixel-corner (x, y) polygon."""
    return polygon2mask(shape, np.column_stack([points_xy[:, 1] - 0.5, points_xy[:, 0] - 0.5]))


def _assert_within_border(mask: np.ndarray, back: np.ndarray) -> None:
    """``back`` equals ``mask`` except on the 1-pixel border band around the nucleus edge."""
    band = ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)
    assert not ((mask ^ back) & ~band).any()
    assert (mask & back).sum() / (mask | back).sum() > 0.85


def test_outline_of_a_rectangle_runs_along_pixel_edges() -> None:
    mask = np.zeros((6, 7), bool)
    mask[1:4, 2:6] = True
    ring = outline(mask)
    # corners cut by half a pixel: 8 vertices on the edges x = 2, 6 and y = 1, 4
    assert len(ring) == 8
    assert ring[:, 0].min() == 2 and ring[:, 0].max() == 6
    assert ring[:, 1].min() == 1 and ring[:, 1].max() == 4
    np.testing.assert_array_equal(_rasterise(ring, mask.shape), mask)


def test_single_pixel_and_offset() -> None:
    ring = outline(np.ones((1, 1), bool), offset=(5, 3))
    np.testing.assert_allclose(np.sort(ring[:, 0]), [3, 3.5, 3.5, 4])
    np.testing.assert_allclose(np.sort(ring[:, 1]), [5, 5.5, 5.5, 6])
    with pytest.raises(ValueError, match="empty"):
        outline(np.zeros((2, 2), bool))


def test_outlines_rasterise_back_within_one_pixel() -> None:
    result, _ = synthetic_result()
    outlines = nucleus_outlines(result.labels)
    assert list(outlines) == sorted(np.unique(result.labels[result.labels > 0]).tolist())
    for label, ring in outlines.items():
        _assert_within_border(result.labels == label, _rasterise(ring, result.labels.shape))


def _rows(result, image) -> list[dict]:
    columns = measurement_columns(("",))
    return nucleus_table(result.nuclei, measure_nuclei(result.labels, image), columns)


def test_geojson_is_strict_json_with_one_detection_per_nucleus(tmp_path: Path) -> None:
    result, image = synthetic_result()
    path = tmp_path / "a_nuclei.geojson"
    outlines = nucleus_outlines(result.labels)
    write_geojson(path, feature_collection(outlines, _rows(result, image), pixel_size_um=0.5))

    def no_nan(value: str) -> None:
        raise AssertionError(f"non-standard JSON constant {value}")

    data = json.loads(path.read_text(), parse_constant=no_nan)
    assert data["type"] == "FeatureCollection"
    features = data["features"]
    assert len(features) == len(result.nuclei)
    flagged = {r.label for r in result.nuclei if r.needs_review}
    assert flagged == {1}
    for feature, record in zip(features, result.nuclei, strict=True):
        props = feature["properties"]
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        assert props["objectType"] == "detection" and props["label"] == record.label
        expected = "Needs review" if record.label in flagged else "Nucleus"
        assert props["classification"]["name"] == expected
        assert props["measurements"]["area"] == record.area
        assert props["measurements"]["uncertainty"] == pytest.approx(record.uncertainty)
        assert "stability" not in props["measurements"]  # NaN without samples: left out
        assert props["pixel_size_um"] == 0.5
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert len(ring) >= 4 and (ring[0] == ring[-1]).all()
        _assert_within_border(result.labels == record.label, _rasterise(ring, image.shape))


def test_roi_zip_has_one_named_roi_per_nucleus_in_label_order(tmp_path: Path) -> None:
    result, _ = synthetic_result()
    path = tmp_path / "a_rois.zip"
    write_roi_zip(path, nucleus_outlines(result.labels))
    rois = roifile.roiread(path)
    labels = sorted(r.label for r in result.nuclei)
    assert [roi.name for roi in rois] == [str(label) for label in labels]
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [f"{label}.roi" for label in labels]
    for roi, label in zip(rois, labels, strict=True):
        assert roi.roitype == roifile.ROI_TYPE.POLYGON
        back = _rasterise(roi.coordinates(), result.labels.shape)
        _assert_within_border(result.labels == label, back)


def test_image_without_nuclei_gives_empty_exports(tmp_path: Path) -> None:
    write_roi_zip(tmp_path / "e.zip", {})
    with zipfile.ZipFile(tmp_path / "e.zip") as archive:
        assert archive.namelist() == []
    assert feature_collection({}, []) == {"type": "FeatureCollection", "features": []}
