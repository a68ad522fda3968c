"""The issue's done-when cases at library level, with the bundled model: an LZW 16-bit ImageJ
TIFF and a 3-channel CYX hyperstack in, calibrated labels, GeoJSON and ROI set out. (The CLI
test comes with the predict pipeline's wiring.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile

from bayescellseg.errors import InputError
from bayescellseg.export import ExportOptions, write_exports
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.io.images import load_image, read_label_image
from bayescellseg.io.pixelsize import diameter_in_pixels
from tests.synthetic import synthetic_image, synthetic_labels


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.load()  # the bundled model


def _nuclei_plane() -> np.ndarray:
    labels = synthetic_labels((96, 96), n=6, seed=2)
    return (synthetic_image(labels, seed=2)[..., 0] * 65535).astype(np.uint16)


def _predict_and_export(
    segmenter: Segmenter, path: Path, out: Path, diameter: str | None = None, **channel
) -> list[Path]:
    """What the predict pipeline does per image."""
    loaded = load_image(path, **channel)
    pixel = loaded.pixel_size.um if loaded.pixel_size else None
    result = segmenter.predict(
        loaded.image, n_samples=0, diameter=diameter_in_pixels(diameter, pixel)
    )
    return write_exports(result, loaded, path.stem, out, ExportOptions(pixel_size_um=pixel))


def test_lzw_imagej_tiff_gives_calibrated_labels_geojson_and_rois(
    segmenter: Segmenter, tmp_path: Path
) -> None:
    source = tmp_path / "cells.tif"
    tifffile.imwrite(
        source, _nuclei_plane(), imagej=True, resolution=(1 / 0.5, 1 / 0.5),
        metadata={"unit": "micron"}, compression="lzw",
    )  # fmt: skip
    _predict_and_export(segmenter, source, tmp_path / "out", diameter="7.5um")  # 15 px
    labels_path = tmp_path / "out" / "cells_labels.tif"
    with tifffile.TiffFile(labels_path) as tif, tifffile.TiffFile(source) as original:
        for tag in ("XResolution", "YResolution"):
            assert tif.pages[0].tags[tag].value == original.pages[0].tags[tag].value
        assert tif.imagej_metadata["unit"] == original.imagej_metadata["unit"] == "micron"
    labels = read_label_image(labels_path)
    n = len(np.unique(labels)) - 1
    assert n >= 3
    features = json.loads((tmp_path / "out" / "cells_nuclei.geojson").read_text())["features"]
    assert len(features) == n and all(f["geometry"]["type"] == "Polygon" for f in features)
    assert len(roifile.roiread(tmp_path / "out" / "cells_rois.zip")) == n


def test_hyperstack_needs_channel_2_and_segments_with_it(
    segmenter: Segmenter, tmp_path: Path
) -> None:
    nuclei = _nuclei_plane()
    rng = np.random.default_rng(0)
    other = rng.integers(0, 60000, nuclei.shape, dtype=np.uint16)  # other markers: noise
    source = tmp_path / "stack.tif"
    tifffile.imwrite(
        source, np.stack([other, other // 2, nuclei]), imagej=True, resolution=(2.0, 2.0),
        metadata={"axes": "CYX", "unit": "um"},
    )  # fmt: skip
    with pytest.raises(InputError, match=r"stack\.tif: image has 3 channels \(axes 'CYX'\)"):
        _predict_and_export(segmenter, source, tmp_path / "out")
    _predict_and_export(segmenter, source, tmp_path / "out", channel=2)
    labels = read_label_image(tmp_path / "out" / "stack_labels.tif")
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, nuclei, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    _predict_and_export(segmenter, plain, tmp_path / "ref")
    np.testing.assert_array_equal(labels, read_label_image(tmp_path / "ref" / "plain_labels.tif"))
    assert len(np.unique(labels)) - 1 >= 3
