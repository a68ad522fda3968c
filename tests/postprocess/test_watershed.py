"""Tests of marker-controlled watershed instances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from bayescellseg.errors import InputError
from bayescellseg.metrics.matching import dsb_score
from bayescellseg.postprocess.watershed import (
    WatershedParams,
    _remove_small,
    enclosed_background,
    instances_from_maps,
)
from tests.synthetic import synthetic_labels


def _maps(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ideal network output: foreground = labels > 0, contour = inner instance boundaries."""
    fg = (labels > 0).astype(np.float32)
    contour = find_boundaries(labels, mode="inner").astype(np.float32)
    return fg, contour


def _two_touching() -> np.ndarray:
    labels = np.zeros((40, 60), np.uint32)
    yy, xx = np.mgrid[:40, :60]
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    labels[((yy - 20) ** 2 + (xx - 39) ** 2 <= 100) & (labels == 0)] = 2
    return labels


def test_separates_touching_pair_only_with_contour() -> None:
    truth = _two_touching()
    assert ndi.label(truth > 0)[1] == 1  # one connected blob
    fg, contour = _maps(truth)
    labels = instances_from_maps(fg, contour)
    assert labels.dtype == np.uint32
    assert labels.max() == 2
    # Each predicted nucleus covers one true nucleus almost exactly.
    for t in (1, 2):
        ids, counts = np.unique(labels[truth == t], return_counts=True)
        assert ids[np.argmax(counts)] > 0
        assert counts.max() / counts.sum() > 0.95
    assert np.array_equal(labels > 0, truth > 0)
    # Without the contour line the blob stays one nucleus.
    merged = instances_from_maps(fg, np.zeros_like(contour))
    assert merged.max() == 1


def test_synthetic_image_recovers_all_nuclei() -> None:
    truth = synthetic_labels((128, 128), n=8, seed=3)
    fg, contour = _maps(truth)
    labels = instances_from_maps(fg, contour, WatershedParams(min_size=5))
    sizes = np.bincount(truth.ravel())[1:]
    assert labels.max() == int((sizes >= 5).sum())


def test_small_objects_removed_and_labels_sequential() -> None:
    fg = np.zeros((30, 30), np.float32)
    fg[2:8, 2:8] = 1.0  # 36 px
    fg[20:22, 20:22] = 1.0  # 4 px -> removed with min_size 10
    fg[15:25, 2:12] = 1.0  # 100 px
    labels = instances_from_maps(fg, np.zeros_like(fg), WatershedParams(min_size=10))
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert labels[21, 21] == 0
    assert np.bincount(labels.ravel())[1:].tolist() == [36, 100]


def test_remove_small_renumbers_kept_labels_in_their_order() -> None:
    labels = np.array([[0, 5, 5, 2], [7, 7, 7, 2], [0, 0, 9, 9]], np.int32)
    # areas: 2 -> 2 px, 5 -> 2, 7 -> 3, 9 -> 2
    assert _remove_small(labels, 2).tolist() == [[0, 2, 2, 1], [3, 3, 3, 1], [0, 0, 4, 4]]
    assert _remove_small(labels, 3).tolist() == [[0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    assert _remove_small(labels, 3).dtype == np.uint32
    assert labels[0, 1] == 5  # input untouched


def test_unmarked_small_nucleus_is_kept() -> None:
    # A 4x4 nucleus whose every pixel is contour gets no marker but must still be found.
    fg = np.zeros((20, 20), np.float32)
    fg[5:9, 5:9] = 1.0
    contour = np.zeros_like(fg)
    contour[5:9, 5:9] = 1.0
    labels = instances_from_maps(fg, contour, WatershedParams(min_size=4))
    assert labels.max() == 1
    assert (labels > 0).sum() == 16


def test_holes_filled_per_nucleus() -> None:
    fg = np.zeros((30, 30), np.float32)
    fg[5:20, 5:20] = 1.0
    fg[10:13, 10:13] = 0.0  # hole inside one nucleus
    with_fill = instances_from_maps(fg, np.zeros_like(fg))
    assert (with_fill[10:13, 10:13] == 1).all()
    without = instances_from_maps(fg, np.zeros_like(fg), WatershedParams(fill_holes=False))
    assert (without[10:13, 10:13] == 0).all()


def test_gap_between_two_nuclei_is_not_filled() -> None:
    # Background enclosed by two different nuclei is not a hole of either.
    labels = np.zeros((30, 30), np.uint32)
    labels[5:25, 5:15] = 1
    labels[5:25, 15:25] = 2
    labels[12:16, 12:18] = 0
    fg, contour = _maps(labels)
    out = instances_from_maps(fg, contour, WatershedParams(min_size=5))
    assert out.max() == 2
    assert (out[12:16, 12:18] == 0).all()


def test_thresholds_shape_the_mask() -> None:
    fg = np.full((10, 10), 0.45, np.float32)
    assert instances_from_maps(fg, np.zeros_like(fg)).max() == 0
    lower = WatershedParams(fg_threshold=0.4, marker_threshold=0.3)
    assert instances_from_maps(fg, np.zeros_like(fg), lower).max() == 1


def test_inputs_not_modified_and_validated() -> None:
    fg, contour = _maps(_two_touching())
    fg_copy, contour_copy = fg.copy(), contour.copy()
    instances_from_maps(fg, contour)
    assert np.array_equal(fg, fg_copy) and np.array_equal(contour, contour_copy)
    with pytest.raises(ValueError, match="same shape"):
        instances_from_maps(fg, contour[:-1])
    bad = fg.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        instances_from_maps(bad, contour)


def test_params_json_round_trip_and_errors() -> None:
    params = WatershedParams(fg_threshold=0.4, marker_erosion=1, fill_holes=False)
    again = WatershedParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert again == params
    assert WatershedParams.from_dict({}) == WatershedParams()
    with pytest.raises(InputError, match="unknown watershed setting"):
        WatershedParams.from_dict({"threshold": 0.5}, source="model/config.json")
    with pytest.raises(InputError, match="min_size"):
        WatershedParams.from_dict({"min_size": -1})


def test_marker_erosion_removes_thin_markers() -> None:
    fg = np.zeros((30, 30), np.float32)
    fg[5:25, 5:25] = 1.0
    eroded = instances_from_maps(fg, np.zeros_like(fg), WatershedParams(marker_erosion=2))
    assert eroded.max() == 1
    assert (eroded > 0).sum() == 400  # the watershed regrows the eroded marker to the mask


def test_large_1024_map_separates_tiles() -> None:
    tile = synthetic_labels((128, 128), n=25, seed=0, radius=(5.0, 12.0)).astype(np.int64)
    n_tile = int(tile.max())
    offsets = np.arange(64).reshape(8, 8) * n_tile
    truth = np.where(tile[None, None] > 0, tile[None, None] + offsets[..., None, None], 0)
    truth = truth.transpose(0, 2, 1, 3).reshape(1024, 1024)  # 8x8 tiles, distinct labels
    fg, contour = _maps(truth)
    fg = ndi.gaussian_filter(fg, 1.0)
    instances_from_maps(fg[:64, :64], contour[:64, :64])  # warm-up
    labels = instances_from_maps(fg, contour)
    assert labels.max() > 0.9 * len(np.unique(truth)) - 1


def _read_dsb_labels(folder: Path) -> np.ndarray:
    from PIL import Image

    labels = None
    for k, path in enumerate(sorted((folder / "masks").glob("*.png")), start=1):
        mask = np.asarray(Image.open(path)) > 0
        if labels is None:
            labels = np.zeros(mask.shape, np.uint32)
        labels[mask & (labels == 0)] = k
    assert labels is not None
    return labels


def test_ideal_maps_of_real_images_reconstruct_truth(dsb_root: Path) -> None:
    # Five real images: with ideal maps (targets), the post-processing alone
    # should lose little (over 52 images the mean DSB score is ~0.98 with default settings).
    ids = sorted(p.name for p in dsb_root.iterdir())[:40:8]
    scores = []
    for sample_id in ids:
        truth = _read_dsb_labels(dsb_root / sample_id)
        fg, contour = _maps(truth)
        scores.append(dsb_score(truth, instances_from_maps(fg, contour)))
    assert np.mean(scores) > 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_enclosed_background_equals_binary_fill_holes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    background = ndi.binary_opening(rng.uniform(size=(70, 90)) > 0.45)  # many small holes
    expected = ndi.binary_fill_holes(~background) & background
    assert expected.any() and (background & ~expected).any()
    np.testing.assert_array_equal(enclosed_background(background), expected)
    assert not enclosed_background(np.zeros((5, 5), bool)).any()
    assert not enclosed_background(np.ones((5, 5), bool)).any()
