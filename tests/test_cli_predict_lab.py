"""`bayescellseg predict` on the lab's files (issue 19's done-when, through the CLI) and with the
bundled model's trust signals (issue 21): calibrated labels, GeoJSON and ROI sets, channel
choice, ``--save`` and ``--resume``, predicted scores, ``p_correct`` and the review rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile

from bayescellseg.cli import EXIT_INPUTS_FAILED, EXIT_OK, EXIT_USAGE, main
from bayescellseg.inference.device import resolve_device
from bayescellseg.io.images import read_label_image
from bayescellseg.samples import sample_root
from bayescellseg.trust.signals import SUMMARY_COLUMNS as TRUST_COLUMNS
from tests.inference.conftest import make_model_dir
from tests.synthetic import synthetic_image, synthetic_labels

#: The two smallest bundled samples (256 x 256 and 320 x 256).
SAMPLES = (
    "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9",
    "c1afe66cd139f996fd984f5f2622903730ec2f1192d90608154f07f7ef6cdb4b",
)


def _nuclei_plane() -> np.ndarray:
    labels = synthetic_labels((96, 96), n=6, seed=2)
    return (synthetic_image(labels, seed=2)[..., 0] * 65535).astype(np.uint16)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _sample(sample_id: str) -> Path:
    return sample_root() / sample_id / "images" / f"{sample_id}.png"


def test_lzw_imagej_tiff_gives_calibrated_labels_geojson_and_rois(tmp_path: Path) -> None:
    source = tmp_path / "cells.tif"
    tifffile.imwrite(
        source, _nuclei_plane(), imagej=True, resolution=(1 / 0.5, 1 / 0.5),
        metadata={"unit": "micron"}, compression="lzw",
    )  # fmt: skip
    out = tmp_path / "out"
    args = ["predict", str(source), "--out", str(out), "--samples", "0", "--diameter", "7.5um"]
    assert main([*args, "--quiet"]) == EXIT_OK
    with tifffile.TiffFile(out / "cells_labels.tif") as tif, tifffile.TiffFile(source) as original:
        for tag in ("XResolution", "YResolution"):
            assert tif.pages[0].tags[tag].value == original.pages[0].tags[tag].value
        assert tif.imagej_metadata["unit"] == original.imagej_metadata["unit"] == "micron"
    labels = read_label_image(out / "cells_labels.tif")
    n = len(np.unique(labels)) - 1
    assert n >= 3
    collection = json.loads((out / "cells_nuclei.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == n
    for feature in collection["features"]:
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon" and ring[0] == ring[-1]
        assert 0 <= feature["properties"]["measurements"]["p_correct"] <= 1
    assert [r.name for r in roifile.roiread(out / "cells_rois.zip")] == [
        str(k) for k in range(1, n + 1)
    ]
    table = _rows(out / "cells_nuclei.csv")
    assert len(table) == n and all(0 <= float(r["p_correct"]) <= 1 for r in table)
    first = table[0]
    assert float(first["area_um2"]) == pytest.approx(int(first["area"]) * 0.25, rel=1e-5)
    assert [r["needs_review"] == "True" for r in table] == [
        float(r["p_correct"]) < 0.5 for r in table
    ]
    summary = json.loads((out / "cells_summary.json").read_text())
    assert (summary["pixel_size_um"], summary["pixel_size_source"]) == (
        pytest.approx(0.5),
        "ImageJ",
    )
    assert summary["channels"] is None and summary["diameter"] == pytest.approx(15.0)
    assert {"predicted_score", "ood", "ood_score"} <= set(summary)


def test_hyperstack_is_refused_without_channel_and_segments_with_channel_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nuclei = _nuclei_plane()
    other = np.random.default_rng(0).integers(0, 60000, nuclei.shape, dtype=np.uint16)
    source = tmp_path / "stack.tif"
    tifffile.imwrite(
        source, np.stack([other, other // 2, nuclei]), imagej=True, resolution=(2.0, 2.0),
        metadata={"axes": "CYX", "unit": "um"},
    )  # fmt: skip
    args = ["predict", str(source), "--samples", "0", "--diameter", "none"]
    assert main([*args, "--out", str(tmp_path / "a")]) == EXIT_INPUTS_FAILED
    err = capsys.readouterr().err
    assert "stack.tif" in err and "3 channels" in err
    assert "--channel N (0-based, 0-2)" in err and "--channels N,M" in err
    (row,) = _rows(tmp_path / "a" / "summary.csv")
    assert row["status"].startswith("failed:") and "3 channels" in row["status"]
    assert not (tmp_path / "a" / "stack_labels.tif").exists()

    out = tmp_path / "b"
    assert main([*args, "--out", str(out), "--channel", "2", "--pixel-size", "0.4"]) == EXIT_OK
    assert "--pixel-size 0.4 um overrides the file's 0.5 um (ImageJ)" in capsys.readouterr().out
    summary = json.loads((out / "stack_summary.json").read_text())
    assert summary["channels"] == [2] and summary["n_nuclei"] >= 3
    assert (summary["pixel_size_um"], summary["pixel_size_source"]) == (0.4, "--pixel-size")
    with tifffile.TiffFile(out / "stack_labels.tif") as tif:
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.4)


def test_save_chooses_the_files_and_resume_with_another_save_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["predict", str(_sample(SAMPLES[0])), "--out", str(out), "--samples", "0", "--quiet"]
    assert main([*args, "--save", "labels,csv"]) == EXIT_OK
    names = sorted(p.name for p in out.iterdir())
    stem = SAMPLES[0]
    expected = [f"{stem}_labels.tif", f"{stem}_nuclei.csv", f"{stem}_summary.json"]
    assert names == sorted([*expected, "run_config.json", "summary.csv"])
    assert json.loads((out / "run_config.json").read_text())["options"]["save"] == ["labels", "csv"]
    assert main([*args, "--resume"]) == EXIT_USAGE  # the default --save is all
    assert "save ['labels', 'csv'] -> ['labels'," in capsys.readouterr().err
    assert main([*args, "--resume", "--save", "csv,labels"]) == EXIT_OK
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it
        main([*args, "--save", "tiff"])
    assert exit_info.value.code == EXIT_USAGE
    assert "argument --save: unknown output 'tiff'; choose from labels," in capsys.readouterr().err


def test_min_quality_on_bundled_samples_writes_scores_flags_and_the_statement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    images = [str(_sample(s)) for s in SAMPLES]
    args = ["predict", *images, "--out", str(out), "--samples", "0", "--save", "csv"]
    assert main([*args, "--min-quality", "0.5"]) == EXIT_OK
    printed = capsys.readouterr().out
    rows = _rows(out / "summary.csv")
    assert list(rows[0])[2 : 2 + len(TRUST_COLUMNS)] == list(TRUST_COLUMNS)
    scores = [float(r["predicted_score"]) for r in rows]
    assert scores == sorted(scores) and all(0 <= s <= 1 for s in scores)
    for row in rows:
        assert float(row["predicted_score_low"]) <= float(row["predicted_score"])
        assert float(row["predicted_score"]) <= float(row["predicted_score_high"])
        certified = "not certified to reach DSB score 0.5" in row["reasons"]
        assert row["needs_review"] == ("True" if certified or row["ood"] == "True" else "False")
    run = json.loads((out / "run_config.json").read_text())
    assert run["device"] == run["options"]["device"] == str(resolve_device("auto"))
    rule = run["review_rule"]
    assert rule["min_quality"] == 0.5 and rule["n_images"] == 2
    assert "have a DSB score >= 0.5, on data like the calibration data" in rule["statement"]
    assert rule["statement"] in printed
    for sample in SAMPLES:
        table = _rows(out / f"{sample}_nuclei.csv")
        assert all(0 <= float(r["p_correct"]) <= 1 for r in table)

    # --resume keeps both images and re-reads their predicted scores for the batch rule
    (out / "summary.csv").unlink()
    assert main([*args, "--resume", "--review-fraction", "0.5"]) == EXIT_OK
    rule = json.loads((out / "run_config.json").read_text())["review_rule"]
    assert rule["n_images"] == 2 and rule["n_flagged"] == 1
    flagged = [r["needs_review"] == "True" for r in _rows(out / "summary.csv")]
    assert flagged[0] and "kept from the interrupted run" in capsys.readouterr().out


def test_review_rule_needs_a_trust_file_and_one_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model_dir(tmp_path)
    image = tmp_path / "x.tif"
    tifffile.imwrite(image, _nuclei_plane())
    args = ["predict", str(image), "--model", str(model), "--out", str(tmp_path / "out")]
    assert main([*args, "--min-quality", "0.6"]) == EXIT_USAGE
    assert "--min-quality: needs the predicted scores of a trust model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--min-quality", "0.6", "--review-fraction", "0.2"])
    assert exit_info.value.code == EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err
    assert main([*args, "--samples", "2", "--quiet"]) == EXIT_OK  # no trust file: no trust columns
    header = _rows(tmp_path / "out" / "summary.csv")[0]
    assert (
        "predicted_score" not in header
        and "p_correct" not in _rows(tmp_path / "out" / "x_nuclei.csv")[0]
    )
