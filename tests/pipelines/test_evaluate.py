"""Evaluation runs on synthetic predictions written in the ``predict`` output format."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from matplotlib import colormaps
from PIL import Image
from skimage.segmentation import find_boundaries

from bayescellseg.errors import InputError
from bayescellseg.evaluation.gallery import TopK
from bayescellseg.evaluation.run import EvaluateOptions
from bayescellseg.evaluation.scoring import pixel_subsample
from bayescellseg.evaluation.sources import fallback_uncertainties, mean_per_label
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.pipelines.evaluate import (
    evaluate_model,
    evaluate_predictions,
    report_from_predictions,
)
from bayescellseg.report.html import GalleryEntry
from tests.synthetic import synthetic_image, synthetic_labels


def square(shape, top, left, size=4, label=1, into=None):
    out = np.zeros(shape, np.uint32) if into is None else into.copy()
    out[top : top + size, left : left + size] = label
    return out


def write_dsb(root: Path, sample_id: str, labels: np.ndarray, image: np.ndarray | None = None):
    """Write one sample in the Kaggle DSB2018 layout."""
    if image is None:
        image = synthetic_image(labels, seed=0)
    (root / sample_id / "images").mkdir(parents=True)
    (root / sample_id / "masks").mkdir()
    Image.fromarray((image * 255).round().astype(np.uint8)).save(
        root / sample_id / "images" / f"{sample_id}.png"
    )
    for k in np.unique(labels[labels > 0]):
        mask = ((labels == k) * 255).astype(np.uint8)
        Image.fromarray(mask).save(root / sample_id / "masks" / f"m{int(k):04d}.png")


def write_prediction(
    pred: Path,
    name: str,
    labels: np.ndarray,
    probability: np.ndarray | None = None,
    uncertainty: np.ndarray | None = None,
    nucleus_uncertainty: dict[int, float] | None = None,
    image_uncertainty: float | None = None,
    source: Path | None = None,
):
    """Write prediction files like ``bayescellseg predict`` does."""
    pred.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(pred / f"{name}_labels.tif", labels.astype(np.uint16))
    if probability is not None:
        tifffile.imwrite(pred / f"{name}_probability.tif", probability.astype(np.float32))
    if uncertainty is not None:
        for key in ("entropy", "aleatoric", "epistemic"):
            tifffile.imwrite(pred / f"{name}_{key}.tif", uncertainty.astype(np.float32))
    if nucleus_uncertainty is not None:
        with open(pred / f"{name}_nuclei.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["label", "centroid_y", "centroid_x", "area", "uncertainty"])
            for label, u in nucleus_uncertainty.items():
                writer.writerow([label, 0, 0, 16, u])
    summary = {"image": name, "n_nuclei": int(len(np.unique(labels)) - 1)}
    if image_uncertainty is not None:
        summary["uncertainty"] = image_uncertainty
        summary["predicted_quality"] = 1.0 - image_uncertainty
    if source is not None:
        summary["source"] = str(source)
    (pred / f"{name}_summary.json").write_text(json.dumps(summary))


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def perfect(tmp_path):
    """Two synthetic images predicted perfectly, one truth without prediction, one extra pred."""
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    for i, name in enumerate(["a", "b", "c"]):
        labels = synthetic_labels((48, 56), n=3, seed=i, radius=(4.0, 7.0))
        write_dsb(truth, name, labels)
        if name != "c":
            fg = (labels > 0).astype(np.float32)
            write_prediction(pred, name, labels, fg, np.zeros_like(fg), {1: 0.1},
                             0.1 * (i + 1))  # fmt: skip
    write_prediction(pred, "zz_extra", np.zeros((48, 56), np.uint32))
    return truth, pred


def test_perfect_prediction_report(perfect, tmp_path):
    truth, pred = perfect
    out = tmp_path / "report"
    metrics = evaluate_predictions(pred, truth, out)
    seg = metrics["overall"]["segmentation"]
    assert metrics["overall"]["n_images"] == 2
    for key in ("dsb", "ap50", "ap75", "f1", "dice", "iou"):
        assert seg[key] == pytest.approx(1.0), key
    assert seg["abs_count_error"] == 0
    cal = metrics["overall"]["calibration"]["all_pixels"]
    assert cal["ece"] == pytest.approx(0.0, abs=1e-6)
    assert cal["brier"] == pytest.approx(0.0, abs=1e-6)
    assert cal["n"] == 2 * 48 * 56
    assert metrics["missing_predictions"] == ["c"]
    assert metrics["missing_truths"] == ["zz_extra"]
    assert set(metrics["datasets"]) == {"truth"}
    assert metrics["ood"]["truth"]["mean_image_uncertainty"] == pytest.approx(0.15)
    # no error pixels -> AUROC undefined, written as null
    assert metrics["overall"]["uncertainty"]["pixel"]["entropy"]["auroc"] is None
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["overall"]["segmentation"]["dsb"] == pytest.approx(1.0)
    rows = read_rows(out / "per_image.csv")
    assert [r["image"] for r in rows] == ["a", "b"]
    assert all(float(r["dsb"]) == 1.0 for r in rows)
    config = json.loads((out / "evaluate_config.json").read_text())
    assert config["truth"] == str(truth)
    for name in ("reliability.png", "retention.png", "uncertainty_vs_score.png",
                 "roc_pixel.png", "roc_nucleus.png"):  # fmt: skip
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) >= 5 + 2 * 4  # figures + 2 gallery images x 4 panels
    assert all(re.match(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+$", s) for s in sources)
    assert "href=" not in html and "<script" not in html
    assert "zz_extra" in html and "no prediction" in html


def test_refuses_to_overwrite_before_any_work(perfect, tmp_path):
    truth, pred = perfect
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.html").write_text("old")
    with pytest.raises(FileExistsError, match="report.html: exists, pass overwrite=True"):
        evaluate_predictions(pred, truth, out)
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]


def test_cli_evaluate_pred_and_overwrite(perfect, tmp_path, capsys):
    from bayescellseg.cli import main

    truth, pred = perfect
    out = tmp_path / "r"
    args = ["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(out)]
    assert main(args) == 0
    first = (out / "metrics.json").read_text()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text()) == json.loads(first)
    assert main(["evaluate", "--pred", str(pred), "--out", str(out)]) == 2
    assert "--truth" in capsys.readouterr().err


def test_hand_checked_scores(tmp_path):
    """One-pixel shift, a false positive, and uncertainties that rank the errors perfectly."""
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    shape = (20, 20)
    # image "shift": one 4x4 nucleus predicted one pixel to the right: IoU 12/20 = 0.6 ->
    # matched at 0.5 and 0.55 only -> DSB 2/10 = 0.2
    t = square(shape, 2, 2)
    p = square(shape, 2, 3)
    # image "fp": nucleus found exactly (label 1) plus a false positive (label 2) -> at every
    # threshold TP 1, FP 1, FN 0 -> 1/2
    t2 = square(shape, 2, 2)
    p2 = square(shape, 12, 12, label=2, into=square(shape, 2, 2))
    # image "ok": perfect -> 1.0
    t3 = square(shape, 5, 5)
    for name, tl, pl, img_u in (("shift", t, p, 0.5), ("fp", t2, p2, 0.3), ("ok", t3, t3, 0.1)):
        write_dsb(truth, name, tl)
        error = (pl > 0) != (tl > 0)
        u = np.where(error, 0.9, 0.05).astype(np.float32)
        prob = np.where(pl > 0, 0.8, 0.2).astype(np.float32)
        nu = {1: 0.1, 2: 0.2} if name == "fp" else {1: 0.2}
        write_prediction(pred, name, pl, prob, u, nu, img_u)
    m = evaluate_predictions(pred, truth, tmp_path / "out")
    rows = {r["image"]: r for r in read_rows(tmp_path / "out" / "per_image.csv")}
    assert float(rows["shift"]["dsb"]) == pytest.approx(0.2)
    assert float(rows["fp"]["dsb"]) == pytest.approx(0.5)
    assert float(rows["ok"]["dsb"]) == pytest.approx(1.0)
    assert int(rows["fp"]["count_error"]) == 1
    # shift: fg 16 true, 16 pred, overlap 12 -> Dice 24/32
    assert float(rows["shift"]["dice"]) == pytest.approx(0.75)
    seg = m["overall"]["segmentation"]
    assert seg["dsb"] == pytest.approx((0.2 + 0.5 + 1.0) / 3)
    # prob 0.8 on predicted fg, 0.2 elsewhere: ECE over the image = mean |p - freq| per bin
    # shift: bin 0.8 holds 16 px with 12 true (freq .75): |.8-.75|*16; bin 0.2 holds 384 px
    # with 4 true: |.2 - 4/384|*384 -> ECE = (0.8 + 76.8 - 4) / 400
    assert float(rows["shift"]["ece"]) == pytest.approx((0.8 + 76.8 - 4) / 400, rel=1e-4)
    px = m["overall"]["uncertainty"]["pixel"]
    for key in ("entropy", "aleatoric", "epistemic"):
        assert px[key]["auroc"] == pytest.approx(1.0)
        assert px[key]["aupr"] == pytest.approx(1.0)
        assert px[key]["ueo"] == pytest.approx(1.0)
    nuc = m["overall"]["uncertainty"]["nucleus"]
    # nuclei: shift#1 matched (IoU 0.6; u .2), fp#1 matched (.1), fp#2 unmatched (.2),
    # ok#1 matched (.2); pairs (unmatched, matched): tie, win, tie -> (0.5 + 1 + 0.5) / 3
    assert nuc["n_nuclei"] == 4 and nuc["n_unmatched"] == 1
    assert nuc["auroc"] == pytest.approx(2 / 3)
    img = m["overall"]["uncertainty"]["image"]
    assert img["spearman_uncertainty_dsb"] == pytest.approx(-1.0)
    assert img["spearman_predicted_quality_dsb"] == pytest.approx(1.0)
    ret = img["retention"]
    assert ret["auc_model"] == pytest.approx(ret["auc_oracle"])
    assert ret["auc_model"] > ret["auc_random"]
    assert ret["model"][0] == pytest.approx(seg["dsb"])


def rle(mask: np.ndarray) -> str:
    """Kaggle run-length encoding (column-major, 1-based)."""
    flat = np.r_[0, mask.T.reshape(-1).astype(np.int8), 0]
    changes = np.flatnonzero(np.diff(flat)) + 1
    starts, ends = changes[::2], changes[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends, strict=True))


def test_rle_csv_truth(tmp_path):
    pred = tmp_path / "pred"
    labels = square((6, 5), 1, 1, size=2)
    labels = square((6, 5), 4, 3, size=2, label=2, into=labels)
    # rows 1-2, cols 1-2 of a 6-row image: column-major 0-based 7,8 and 13,14 -> "8 2 14 2"
    assert rle(labels == 1) == "8 2 14 2"
    csv_path = tmp_path / "truth.csv"
    csv_path.write_text(
        "ImageId,EncodedPixels\n"
        f"img1,{rle(labels == 1)}\nimg1,{rle(labels == 2)}\n"
        f"img2,{rle(labels == 1)}\n"
        f"img3,{rle(labels == 2)}\n"  # no prediction, no size: reported, not scored
    )
    write_prediction(pred, "img1", labels, (labels > 0).astype(np.float32))
    write_prediction(pred, "img2", labels)  # predicts one nucleus too many
    m = evaluate_predictions(pred, csv_path, tmp_path / "out")
    rows = {r["image"]: r for r in read_rows(tmp_path / "out" / "per_image.csv")}
    assert float(rows["img1"]["dsb"]) == pytest.approx(1.0)
    assert float(rows["img2"]["dsb"]) == pytest.approx(0.5)
    assert m["missing_predictions"] == ["img3"] and m["missing_truths"] == []
    assert set(m["datasets"]) == {"truth"}
    # img2 has no probability map: calibration covers img1's 30 pixels only
    assert m["overall"]["calibration"]["all_pixels"]["n"] == 30
    # with sizes in the CSV, a size that disagrees with the prediction is an error
    sized = tmp_path / "sized.csv"
    sized.write_text(f"ImageId,EncodedPixels,Height,Width\nimg1,{rle(labels == 1)},5,6\n")
    with pytest.raises(InputError, match="differs"):
        evaluate_predictions(pred, sized, tmp_path / "out2")


def test_no_matching_names(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    write_dsb(truth, "a", square((16, 16), 2, 2))
    write_prediction(pred, "b", square((16, 16), 2, 2))
    with pytest.raises(InputError, match="no prediction matches"):
        evaluate_predictions(pred, truth, tmp_path / "out")
    with pytest.raises(InputError, match="labels.tif"):
        evaluate_predictions(tmp_path / "truth", truth, tmp_path / "out")


def test_unreadable_prediction_is_reported(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    for name in ("a", "b"):
        write_dsb(truth, name, square((16, 16), 2, 2))
        write_prediction(pred, name, square((16, 16), 2, 2))
    (pred / "b_probability.tif").write_bytes(b"not a tiff")
    m = evaluate_predictions(pred, truth, tmp_path / "out")
    assert m["overall"]["n_images"] == 1
    assert m["failures"][0]["id"] == "b" and "probability" in m["failures"][0]["problem"]
    assert "not scored" in (tmp_path / "out" / "report.html").read_text()


def test_report_from_predictions_finds_truth(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    labels = synthetic_labels((32, 32), n=2, seed=3, radius=(3.0, 5.0))
    write_dsb(truth, "s1", labels)
    source = truth / "s1" / "images" / "s1.png"
    write_prediction(pred, "s1", labels, (labels > 0).astype(np.float32), source=source)
    html = report_from_predictions(pred, tmp_path / "out")
    assert html == tmp_path / "out" / "report.html" and html.is_file()


def test_model_mode_two_datasets(tmp_path):
    import torch

    from bayescellseg.model.build import build_model
    from bayescellseg.model.config import ModelConfig
    from bayescellseg.model.store import save_model

    torch.set_num_threads(1)
    config = ModelConfig(base_channels=4, depth=2, n_samples=3, dropout_rate=0.3)
    save_model(tmp_path / "model", build_model(config, seed=0), config)
    for ds, seed in (("set_a", 1), ("set_b", 2)):
        for k in range(2):
            labels = synthetic_labels((40, 40), n=2, seed=seed * 10 + k, radius=(4.0, 6.0))
            write_dsb(tmp_path / ds, f"{ds}_{k}", labels)
    out = tmp_path / "out"
    seg = Segmenter.load(tmp_path / "model")
    m = evaluate_model(seg, [tmp_path / "set_a", tmp_path / "set_b"], out, EvaluateOptions(limit=1))
    assert m["overall"]["n_images"] == 2
    assert set(m["datasets"]) == {"set_a", "set_b"} == set(m["ood"])
    assert m["overall"]["calibration"]["all_pixels"]["n"] == 2 * 40 * 40
    assert set(m["overall"]["uncertainty"]["pixel"]) == {"entropy", "aleatoric", "epistemic"}
    for ds in ("set_a", "set_b"):
        u = m["ood"][ds]["mean_image_uncertainty"]
        assert u is None or u >= 0
    rows = read_rows(out / "per_image.csv")
    assert [r["image"] for r in rows] == ["set_a_0", "set_b_0"]
    assert 0.0 <= float(rows[0]["dsb"]) <= 1.0
    config = json.loads((out / "evaluate_config.json").read_text())
    assert config["datasets"] == ["set_a", "set_b"] and config["limit"] == 1
    with pytest.raises(InputError, match="split"):
        evaluate_model(seg, [tmp_path / "set_a"], tmp_path / "o2", EvaluateOptions(split="val"))


def test_pixel_subsample_is_seeded_and_bounded():
    a = pixel_subsample(10_000, 100, "ds/img", seed=0)
    assert a.size == 100 and np.array_equal(a, pixel_subsample(10_000, 100, "ds/img", seed=0))
    assert not np.array_equal(a, pixel_subsample(10_000, 100, "ds/other", seed=0))
    assert np.array_equal(pixel_subsample(50, 100, "x", 0), np.arange(50))


def test_fallback_uncertainties_by_hand():
    labels = np.array([[0, 1, 1], [0, 2, 0]], np.uint32)
    mi = np.array([[0.9, 0.2, 0.4], [0.5, 0.6, 0.7]], np.float32)
    assert mean_per_label(labels, mi) == pytest.approx({1: 0.3, 2: 0.6})
    per_nucleus, image = fallback_uncertainties(labels, {"epistemic": mi})
    assert per_nucleus == pytest.approx({1: 0.3, 2: 0.6})
    assert image == pytest.approx((0.2 + 0.4 + 0.6) / 3)
    assert fallback_uncertainties(labels, {})[0] == {}


def test_topk_keeps_largest_and_builds_lazily():
    built = []
    keeper = TopK(2)
    for key in (0.1, 0.5, float("nan"), 0.3, 0.05):
        keeper.offer(key, lambda k=key: built.append(k) or GalleryEntry(str(k), "", ()))
    assert [e.title for e in keeper.entries()] == ["0.5", "0.3"]
    assert 0.05 not in built and len(built) == 3


def test_gallery_panels_are_small_jpegs():
    import io

    from bayescellseg.evaluation.gallery import render_panels
    from bayescellseg.evaluation.sources import EvalItem, Prediction

    labels = synthetic_labels((500, 600), n=5, seed=0)
    maps = {"entropy": np.full(labels.shape, 0.5, np.float32)}
    item = EvalItem("ds", "x", labels, Prediction(labels, maps, {1: 0.2}), None)
    panels = render_panels(item, {2})
    assert [c.split(" ")[0] for c, _ in panels] == ["image", "truth", "prediction:", "predictive"]
    for _, data in panels:
        img = Image.open(io.BytesIO(data))
        assert img.format == "JPEG" and img.size == (400, 333)


def test_gallery_colour_scale_follows_the_review_threshold():
    """A nucleus at the review threshold is outlined yellow; without a threshold, green."""
    from bayescellseg.evaluation.gallery import render_panels
    from bayescellseg.evaluation.sources import EvalItem, Prediction

    labels = square((40, 40), 10, 10, size=16)
    outline = find_boundaries(labels, mode="inner") & (labels == 1)

    def outline_colour(threshold: float) -> tuple[np.ndarray, str]:
        prediction = Prediction(labels, {}, {1: 0.05}, review_threshold=threshold)
        item = EvalItem("ds", "x", labels, prediction)
        data = dict(render_panels(item, set()))
        caption = next(c for c in data if c.startswith("prediction:"))
        rgb = np.asarray(Image.open(io.BytesIO(data[caption])).convert("RGB"), float)
        return rgb[outline].mean(axis=0), caption

    at_threshold, caption = outline_colour(0.05)
    assert "yellow = review threshold" in caption
    expected = np.asarray(colormaps["RdYlGn_r"](0.5)[:3]) * 255
    assert np.abs(at_threshold - expected).max() < 25  # JPEG tolerance
    unknown, caption = outline_colour(float("nan"))
    assert "yellow" not in caption
    assert np.abs(unknown - np.asarray(colormaps["RdYlGn_r"](0.05)[:3]) * 255).max() < 25


def test_review_threshold_is_read_from_the_run_config(tmp_path):
    from bayescellseg.evaluation.sources import iter_prediction_items, plan_predictions

    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    labels = square((16, 18), 2, 2)
    Image.fromarray(labels.astype(np.uint8)).save(truth / "cells_labels.png")
    Image.fromarray((synthetic_image(labels) * 255).astype(np.uint8)).save(truth / "cells.png")
    write_prediction(pred, "cells", labels)
    plan, loaders = plan_predictions(pred, truth)
    (item,) = iter_prediction_items(pred, plan, loaders)
    assert math.isnan(item.prediction.review_threshold)  # no run_config.json
    (pred / "run_config.json").write_text(json.dumps({"review": {"nucleus_uncertainty": 0.07}}))
    (item,) = iter_prediction_items(pred, plan, loaders)
    assert item.prediction.review_threshold == pytest.approx(0.07)
    (pred / "run_config.json").write_text("{not json")
    (item,) = iter_prediction_items(pred, plan, loaders)
    assert math.isnan(item.prediction.review_threshold)


def test_label_image_folder_truth(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    labels = square((16, 18), 2, 2)
    labels = square((16, 18), 9, 9, label=7, into=labels)
    Image.fromarray((synthetic_image(labels) * 255).astype(np.uint8)).save(truth / "cells.png")
    Image.fromarray(labels.astype(np.uint8)).save(truth / "cells_labels.png")
    write_prediction(pred, "cells", square((16, 18), 2, 2))  # misses nucleus 7
    m = evaluate_predictions(pred, truth, tmp_path / "out")
    # one of two nuclei found exactly at every threshold: TP 1, FN 1 -> 1/2
    assert m["overall"]["segmentation"]["dsb"] == pytest.approx(0.5)
    assert m["overall"]["segmentation"]["count_error"] == -1
