"""Issue 20, cases 2 and 6: ``evaluate`` and ``data check`` report unusable files, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from bayescellseg.cli import main
from tests.pipelines.test_evaluate import square, write_dsb, write_prediction

SHAPE = (24, 24)


def _truncated_labels(path: Path) -> None:
    tifffile.imwrite(path, np.arange(24 * 24, dtype=np.uint16).reshape(SHAPE), compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    labels = square(SHAPE, 4, 4, size=6)
    for name in ("good", "empty", "small", "cut"):
        write_dsb(truth, name, labels)
        write_prediction(pred, name, labels)
    for mask in (truth / "empty" / "masks").iterdir():
        mask.unlink()  # empty masks folder
    small = truth / "small" / "masks" / "m0001.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(small)  # mask of another size
    _truncated_labels(pred / "cut_labels.tif")  # truncated label tif in --pred
    return truth, pred


def test_case2_and_6_evaluate_exits_1_and_names_unusable_images(tmp_path, capsys) -> None:
    truth, pred = _setup(tmp_path)
    out = tmp_path / "report"
    code = main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "3 image(s) could not be used; the scores above cover only the other 1" in err
    assert "empty/masks: masks/ folder holds no PNG masks" in err
    assert "m0001.png: mask size 10x10 differs from the image's 24x24" in err
    assert "cut_labels.tif: cannot decode TIFF" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(f["id"] for f in metrics["failures"]) == ["cut", "empty", "small"]
    assert metrics["overall"]["n_images"] == 1


def test_evaluate_with_every_image_usable_exits_0(tmp_path) -> None:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    labels = square(SHAPE, 4, 4, size=6)
    write_dsb(truth, "good", labels)
    write_prediction(pred, "good", labels)
    out = tmp_path / "report"
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(out)]) == 0


def test_case2_data_check_reports_a_corrupt_tiff(tmp_path, capsys) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(folder / "a.png")
    tifffile.imwrite(folder / "a_labels.tif", square(SHAPE, 2, 2).astype(np.uint16))
    (folder / "b.tif").write_bytes(b"II*\x00")
    _truncated_labels(folder / "b_labels.tif")
    assert main(["data", "check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "b.tif: cannot decode TIFF" in out and "b_labels.tif: cannot decode TIFF" in out
