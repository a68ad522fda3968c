"""write_exports: the per-image files of predict, chosen with --save, calibrated."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile

from bayescellseg.errors import InputError, OutputError
from bayescellseg.export import (
    DEFAULT_SAVE,
    SAVE_CHOICES,
    ExportOptions,
    export_paths,
    parse_save,
    write_exports,
)
from bayescellseg.io.images import load_image, read_label_image
from bayescellseg.postprocess.nuclei import NUCLEUS_COLUMNS
from tests.export.results import synthetic_result

ALL_FILES = [
    "a_labels.tif",
    "a_probability.tif",
    "a_entropy.tif",
    "a_aleatoric.tif",
    "a_epistemic.tif",
    "a_overlay.png",
    "a_nuclei.csv",
    "a_nuclei.geojson",
    "a_rois.zip",
]


def _imagej_calibration(path: Path) -> tuple[float, str]:
    with tifffile.TiffFile(path) as tif:
        num, den = tif.pages[0].tags["XResolution"].value
        return den / num, tif.imagej_metadata["unit"]


def test_everything_is_written_calibrated(tmp_path: Path) -> None:
    result, image = synthetic_result()
    source = tmp_path / "a.tif"
    tifffile.imwrite(
        source, image, imagej=True, resolution=(1 / 0.325, 1 / 0.325), metadata={"unit": "um"},
        compression="lzw",
    )  # fmt: skip
    loaded = load_image(source)
    out = tmp_path / "out"
    written = write_exports(result, loaded, "a", out, ExportOptions(pixel_size_um=0.325))
    assert [p.name for p in written] == ALL_FILES
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_FILES)
    for name in ("a_labels.tif", "a_probability.tif", "a_epistemic.tif"):
        size, unit = _imagej_calibration(out / name)
        assert size == pytest.approx(0.325) and unit == "micron"
    assert load_image(out / "a_labels.tif").pixel_size.x == pytest.approx(0.325)
    np.testing.assert_array_equal(read_label_image(out / "a_labels.tif"), result.labels)
    np.testing.assert_array_equal(tifffile.imread(out / "a_entropy.tif"), result.entropy)
    with open(out / "a_nuclei.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result.nuclei)
    assert list(rows[0])[: len(NUCLEUS_COLUMNS)] == list(NUCLEUS_COLUMNS)
    first = next(r for r in rows if r["label"] == "1")
    assert float(first["area_um2"]) == pytest.approx(int(first["area"]) * 0.325**2, rel=1e-5)
    assert float(first["mean_intensity"]) == pytest.approx(3010)
    assert first["needs_review"] == "True"
    features = json.loads((out / "a_nuclei.geojson").read_text())["features"]
    assert len(features) == len(result.nuclei) == len(roifile.roiread(out / "a_rois.zip"))


def test_save_chooses_the_files_and_raw_arrays_work(tmp_path: Path) -> None:
    result, image = synthetic_result()
    save = parse_save("labels, csv,geojson")
    written = write_exports(result, image, "a", tmp_path, ExportOptions(save=save))
    assert [p.name for p in written] == ["a_labels.tif", "a_nuclei.csv", "a_nuclei.geojson"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    with tifffile.TiffFile(tmp_path / "a_labels.tif") as tif:
        assert tif.is_imagej and "unit" not in tif.imagej_metadata  # uncalibrated
    header = (tmp_path / "a_nuclei.csv").read_text().splitlines()[0].split(",")
    assert "mean_intensity" in header and "area_um2" in header
    row = (tmp_path / "a_nuclei.csv").read_text().splitlines()[1].split(",")
    assert row[header.index("area_um2")] == ""  # pixel size unknown


def test_parse_save_groups_and_errors() -> None:
    assert parse_save("maps") == {"probability", "entropy", "aleatoric", "epistemic"}
    assert parse_save("all") == DEFAULT_SAVE == frozenset(SAVE_CHOICES)
    assert parse_save(["rois"]) == {"rois"}
    with pytest.raises(InputError, match=r"^save: unknown output 'tiff'; choose from labels,"):
        parse_save("labels,tiff")
    with pytest.raises(InputError, match="^save: choose at least one"):
        parse_save(" , ")


def test_existing_files_are_refused_naming_the_shown_folder(tmp_path: Path) -> None:
    result, image = synthetic_result()
    options = ExportOptions(save=frozenset({"rois"}), shown_dir=Path("/final/out"))
    write_exports(result, image, "a", tmp_path, options)
    with pytest.raises(
        OutputError, match=r"^/final/out/a_rois\.zip: cannot write \(already exists"
    ):
        write_exports(result, image, "a", tmp_path, options)
    again = ExportOptions(save=frozenset({"rois"}), overwrite=True)
    assert write_exports(result, image, "a", tmp_path, again) == [tmp_path / "a_rois.zip"]


def test_export_paths_follow_the_choice_order(tmp_path: Path) -> None:
    paths = export_paths(tmp_path, "x", {"rois", "labels"})
    assert paths == {"labels": tmp_path / "x_labels.tif", "rois": tmp_path / "x_rois.zip"}


def test_result_is_not_modified(tmp_path: Path) -> None:
    result, image = synthetic_result()
    labels, prob = result.labels.copy(), result.probability.copy()
    write_exports(result, image, "a", tmp_path)
    np.testing.assert_array_equal(result.labels, labels)
    np.testing.assert_array_equal(result.probability, prob)
