"""ImageJ-compatible TIFFs: calibration, dtypes, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from bayescellseg.io.imagej import imagej_array, write_imagej_tiff


def test_labels_keep_values_and_carry_pixel_size(tmp_path: Path) -> None:
    labels = np.arange(12, dtype=np.uint32).reshape(3, 4)
    write_imagej_tiff(tmp_path / "l.tif", labels, pixel_size_um=0.5, labels=True)
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.is_imagej and tif.pages[0].dtype == np.uint16
        assert tif.imagej_metadata["unit"] == "micron" and tif.imagej_metadata["max"] == 11
        assert tif.pages[0].tags["XResolution"].value == (2, 1)
        assert tif.pages[0].tags["YResolution"].value == (2, 1)
        np.testing.assert_array_equal(tif.asarray(), labels)


def test_many_labels_become_exact_float32_and_maps_float32(tmp_path: Path) -> None:
    labels = np.array([[0, 70000], [1, 2]], np.uint32)
    assert imagej_array(labels, labels=True).dtype == np.float32
    np.testing.assert_array_equal(imagej_array(labels, labels=True), labels)
    with pytest.raises(ValueError, match="beyond 2\\*\\*24"):
        imagej_array(np.array([[2**24]], np.uint32), labels=True)
    write_imagej_tiff(tmp_path / "m.tif", np.full((2, 2), 0.25, np.float64))
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        assert tif.pages[0].dtype == np.float32 and "unit" not in tif.imagej_metadata


def test_existing_file_needs_overwrite(tmp_path: Path) -> None:
    write_imagej_tiff(tmp_path / "m.tif", np.zeros((2, 2), np.uint8))
    with pytest.raises(FileExistsError):
        write_imagej_tiff(tmp_path / "m.tif", np.zeros((2, 2), np.uint8))
    write_imagej_tiff(tmp_path / "m.tif", np.ones((2, 2), np.uint8), overwrite=True)
    assert tifffile.imread(tmp_path / "m.tif").max() == 1
