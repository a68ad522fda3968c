"""predict_batch: outputs, failures, overwrite protection, review-queue order."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.pipelines.inputs import list_inputs
from bayescellseg.pipelines.predict import PredictOptions, predict_batch
from bayescellseg.prediction_folder import OUTPUT_SUFFIXES
from tests.synthetic import synthetic_image, synthetic_labels


def write_images(folder: Path, n: int = 2, corrupt: bool = True) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        labels = synthetic_labels((48, 56), n=4 + 3 * i, seed=10 + i)
        rgb = (synthetic_image(labels, seed=i, noise=0.05 + 0.1 * i) * 255).astype(np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(rgb).save(path)
        Image.fromarray(labels.astype(np.uint8)).save(folder / f"img{i}_labels.png")
        paths.append(path)
    if corrupt:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return paths


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_list_inputs_skips_label_images_and_reports_missing(tmp_path) -> None:
    images = write_images(tmp_path / "in", corrupt=True)
    files, problems = list_inputs([tmp_path / "in", images[0], tmp_path / "nope.png"])
    assert [p.name for p in files] == ["broken.png", "img0.png", "img1.png"]
    assert problems == [(tmp_path / "nope.png", "no such file or folder")]


def test_batch_outputs_failures_and_queue(model_dir, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bayescellseg")
    write_images(tmp_path / "in")
    out = tmp_path / "out"
    summary = predict_batch(
        Segmenter.load(model_dir), [tmp_path / "in"], out, PredictOptions(n_samples=3)
    )
    assert (summary.n_ok, summary.n_failed) == (2, 1)
    assert summary.failures[0][0].name == "broken.png"
    assert "broken.png" in summary.failures[0][1]
    for name in ("img0", "img1"):
        for suffix in OUTPUT_SUFFIXES:
            assert (out / f"{name}{suffix}").is_file(), suffix
        labels = tifffile.imread(out / f"{name}_labels.tif")
        assert labels.dtype == np.uint16 and labels.shape == (48, 56)
        for m in ("probability", "entropy", "aleatoric", "epistemic"):
            arr = tifffile.imread(out / f"{name}_{m}.tif")
            assert arr.dtype == np.float32 and arr.shape == (48, 56)
            assert 0 <= arr.min() and arr.max() <= 1
        overlay = np.asarray(Image.open(out / f"{name}_overlay.png"))
        assert overlay.shape == (48, 56, 3) and overlay.dtype == np.uint8
        rows = read_csv(out / f"{name}_nuclei.csv")
        assert len(rows) == len(np.unique(labels)) - 1
        if rows:
            assert list(rows[0])[:9] == [
                "label", "centroid_y", "centroid_x", "area", "mean_probability", "mean_entropy",
                "mean_mutual_information", "stability", "uncertainty",
            ]  # fmt: skip
            assert sum(int(r["area"]) for r in rows) == int((labels > 0).sum())
        info = json.loads((out / f"{name}_summary.json").read_text())
        assert info["n_nuclei"] == len(rows) and info["n_samples"] == 3
    assert not (out / "broken_labels.tif").exists()

    queue = read_csv(out / "summary.csv")
    assert [r["image"] for r in queue][-1] == "broken"
    assert queue[-1]["status"].startswith("failed:")
    ok = [float(r["uncertainty"]) for r in queue if r["status"] == "ok"]
    assert len(ok) == 2 and ok == sorted(ok, reverse=True)
    run = json.loads((out / "run_config.json").read_text())
    assert run["n_ok"] == 2 and run["n_failed"] == 1 and run["seed"] == 0
    assert run["options"]["n_samples"] == 3 and "torch" in run["versions"]
    printed = caplog.text
    assert "img0.png" in printed and "FAILED" in printed and "2 ok, 1 failed" in printed


def test_no_overwrite_without_flag(model_dir, tmp_path) -> None:
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    out = tmp_path / "out"
    predict_batch(Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2))
    before = (out / "img0_probability.tif").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        predict_batch(Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2))
    # Without the batch files, each image is refused up front and reported.
    (out / "summary.csv").unlink()
    (out / "run_config.json").unlink()
    summary = predict_batch(
        Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2, seed=5)
    )
    assert summary.n_failed == 1 and "exists, pass overwrite=True" in summary.failures[0][1]
    assert (out / "img0_probability.tif").read_bytes() == before
    # With the flag everything is replaced (a different seed gives different maps).
    (out / "summary.csv").unlink()
    (out / "run_config.json").unlink()
    summary = predict_batch(Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2, seed=5,
                                                                  overwrite=True))  # fmt: skip
    assert summary.n_ok == 1
    assert (out / "img0_probability.tif").read_bytes() != before


def test_duplicate_output_names_fail(model_dir, tmp_path) -> None:
    images = write_images(tmp_path / "a", n=1, corrupt=False)
    other = tmp_path / "b" / "img0.tif"
    other.parent.mkdir()
    tifffile.imwrite(other, np.asarray(Image.open(images[0])))
    summary = predict_batch(
        Segmenter.load(model_dir), [images[0], other], tmp_path / "out", PredictOptions(2)
    )
    assert summary.n_ok == 1 and "already used" in summary.failures[0][1]


def test_list_inputs_expands_dsb_root_and_sample_folder() -> None:
    from bayescellseg.pipelines.inputs import list_inputs
    from bayescellseg.samples import sample_ids, sample_root

    files, problems = list_inputs([sample_root()])
    assert problems == []
    assert [f.stem for f in files] == sorted(sample_ids())
    one, _ = list_inputs([sample_root() / sample_ids()[0]])
    assert one == [sample_root() / sample_ids()[0] / "images" / f"{sample_ids()[0]}.png"]


def test_list_inputs_reports_missing_path(tmp_path: Path) -> None:
    from bayescellseg.pipelines.inputs import list_inputs

    files, problems = list_inputs([tmp_path / "nope.png", tmp_path])
    assert files == []
    assert [p[1] for p in problems] == ["no such file or folder", problems[1][1]]
    assert "no images" in problems[1][1]


def test_overlay_colour_scale_is_centred_on_the_review_threshold(tmp_path) -> None:
    """A nucleus exactly at the review threshold is outlined in the colormap's middle (yellow),
    one at zero uncertainty in its green end."""
    from matplotlib import colormaps

    from bayescellseg.export import ExportOptions, write_exports
    from bayescellseg.inference.result import PredictionInfo, Result
    from bayescellseg.postprocess.nuclei import ImageSummary, NucleusRecord

    labels = np.zeros((40, 40), np.uint32)
    labels[5:15, 5:15] = 1
    labels[25:35, 25:35] = 2
    zeros = np.zeros((40, 40), np.float32)

    def record(label: int, u: float) -> NucleusRecord:
        return NucleusRecord(label, 0.0, 0.0, 100, 1.0, 0.0, 0.0, 1.0 - u, u, False)

    maps = dict.fromkeys(("probability", "entropy", "aleatoric", "epistemic", "variance"), zeros)
    summary = ImageSummary(2, 0.125, 1.0, 0.0, 0.0, 0.975, 0, 0.0, 0.9, 0.02, False)
    info = PredictionInfo(n_samples=2, tta=False, diameter=None, scale=1.0, precision="fp32")
    nuclei = [record(1, 0.0), record(2, 0.05)]
    result = Result(**maps, contour=zeros, labels=labels, nuclei=nuclei, summary=summary, info=info)
    options = ExportOptions(save=frozenset({"overlay"}), review_threshold=0.05)
    (path,) = write_exports(result, zeros, "x", tmp_path, options)
    overlay = np.asarray(Image.open(path))
    cmap = colormaps["RdYlGn_r"]
    assert tuple(overlay[5, 10]) == tuple(cmap(0.0, bytes=True)[:3])  # green end
    assert tuple(overlay[25, 30]) == tuple(cmap(0.5, bytes=True)[:3])  # middle: the threshold
