"""Turn evaluation results into figures and the content of the HTML report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bayescellseg.evaluation.scoring import (
    Evaluator,
    ImageRecord,
    nucleus_arrays,
    per_image_columns,
    retention,
)
from bayescellseg.evaluation.sources import UNCERTAINTY_MAPS
from bayescellseg.metrics.uncertainty import auroc
from bayescellseg.report import plots
from bayescellseg.report.html import GalleryEntry, ReportContent, Table

MAP_TITLES = {
    "entropy": "predictive entropy (total)",
    "aleatoric": "expected entropy (aleatoric)",
    "epistemic": "mutual information (epistemic)",
}

INTRO = (
    "Each predicted segmentation is compared with the ground truth. The DSB score is the "
    "Data Science Bowl 2018 metric: the mean over IoU thresholds 0.5, 0.55, ..., 0.95 of "
    "TP / (TP + FP + FN), averaged over images; AP50 / AP75 are the same ratio at one threshold.",
    "Calibration: a calibrated foreground probability of 0.8 is right 80% of the time "
    "(ECE = expected calibration error over 15 bins; lower is better). The boundary band is the "
    "pixels within 3 px of a true nucleus outline, where most mistakes are.",
    "Uncertainty quality: how well the uncertainty points at mistakes. AUROC 0.5 = no better "
    "than chance, 1 = every wrong pixel / nucleus is more uncertain than every right one. "
    "A useful image uncertainty has a negative Spearman correlation with the DSB score, and its "
    "retention curve lies above the random one (referring the most uncertain images first).",
)


def _retention_or_none(records: Sequence[ImageRecord]):
    try:
        return retention(records)
    except ValueError:
        return None


def figures(evaluator: Evaluator) -> dict[str, tuple[str, bytes]]:
    """The report figures of all images: file name -> (caption, PNG bytes)."""
    records = evaluator.records
    cal = evaluator.calibration(None)
    bins = {} if cal is None else {"all pixels": cal[0].bins, "boundary band": cal[1].bins}
    pixel_curves = {}
    for key in UNCERTAINTY_MAPS:
        have = [r for r in records if key in r.pixel_uncertainty]
        if have:
            u = np.concatenate([r.pixel_uncertainty[key] for r in have])
            err = np.concatenate([r.pixel_error for r in have])
            pixel_curves[MAP_TITLES[key]] = (*plots.roc_points(u, err), auroc(u, err))
    nu, has_match = nucleus_arrays(records)
    nucleus_curves = {}
    if nu.size:
        nucleus_curves["nucleus uncertainty"] = (
            *plots.roc_points(nu, ~has_match),
            auroc(nu, ~has_match),
        )
    u = np.array([r.row["image_uncertainty"] for r in records], dtype=np.float64)
    s = np.array([r.row["dsb"] for r in records], dtype=np.float64)
    return {
        "reliability.png": ("Reliability diagram of the foreground probability (all images).",
                            plots.reliability_diagram(bins)),
        "retention.png": ("Retention curve: mean DSB score of the images kept when the most "
                          "uncertain ones are referred to an expert.",
                          plots.retention_plot(_retention_or_none(records))),
        "uncertainty_vs_score.png": ("Image uncertainty vs DSB score, one point per image.",
                                     plots.score_scatter(u, s, [r.dataset for r in records])),
        "roc_pixel.png": ("Pixel level: uncertainty as a detector of wrong pixels (pooled "
                          "pixel subsample).",
                          plots.roc_plot(pixel_curves, "Pixel errors")),
        "roc_nucleus.png": ("Nucleus level: nucleus uncertainty as a detector of predicted "
                            "nuclei with no true match at IoU 0.5.",
                            plots.roc_plot(nucleus_curves, "Nucleus errors")),
    }  # fmt: skip


def _groups(metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    datasets = metrics.get("datasets", {})
    groups = [("all images", metrics["overall"])]
    if len(datasets) > 1:
        groups += list(datasets.items())
    return groups


def _segmentation_table(groups) -> Table:
    rows = []
    for name, m in groups:
        s = m["segmentation"]
        rows.append((name, m["n_images"], s["dsb"], s["dsb_median"], s["ap50"], s["ap75"],
                     s["f1"], s["dice"], s["iou"], s["abs_count_error"], s["count_error"]))  # fmt: skip
    return Table(
        "Segmentation (means over images)",
        ("", "images", "DSB score", "median DSB", "AP50", "AP75", "F1@0.5", "pixel Dice",
         "pixel IoU", "|count error|", "count error"),
        tuple(rows),
        "Count error = predicted minus true number of nuclei (negative: nuclei missed or merged).",
    )  # fmt: skip


def _calibration_table(groups) -> Table | None:
    rows = []
    for name, m in groups:
        c = m.get("calibration")
        if c:
            a, b = c["all_pixels"], c["boundary_band"]
            rows.append((name, a["ece"], b["ece"], a["brier"], b["brier"], a["nll"], b["nll"]))
    if not rows:
        return None
    return Table(
        "Calibration of the foreground probability",
        ("", "ECE", "ECE (band)", "Brier", "Brier (band)", "NLL", "NLL (band)"),
        tuple(rows),
    )


def _pixel_table(metrics: Mapping[str, Any]) -> Table | None:
    pixel = metrics["overall"]["uncertainty"]["pixel"]
    if not pixel:
        return None
    rows = []
    for key, p in pixel.items():
        q = p["qubrats"]
        rows.append((MAP_TITLES.get(key, key), p["auroc"], p["aupr"], p["error_rate"], p["ueo"],
                     q["score"], q["auc_dice"], q["auc_ftp"], q["auc_ftn"]))  # fmt: skip
    return Table(
        "Pixel-level uncertainty: does it find the wrong pixels? (all images)",
        ("map", "AUROC", "AUPR", "error rate", "best UEO", "QU-BraTS score", "AUC Dice",
         "AUC filtered TP", "AUC filtered TN"),
        tuple(rows),
        "AUPR should be compared with the error rate (its chance level). UEO = best Dice between "
        "thresholded uncertainty and the error mask. QU-BraTS (Mehta et al. 2022): Dice after "
        "removing uncertain pixels vs the fraction of correct pixels removed; higher is better.",
    )  # fmt: skip


def _nucleus_image_table(groups) -> Table:
    rows = []
    for name, m in groups:
        n, i = m["uncertainty"]["nucleus"], m["uncertainty"]["image"]
        r = i.get("retention") or {}
        rows.append((name, n["auroc"], n["n_nuclei"], n["n_unmatched"], i["mean_uncertainty"],
                     i["spearman_uncertainty_dsb"], i["spearman_predicted_quality_dsb"],
                     r.get("auc_model"), r.get("auc_random"), r.get("auc_oracle")))  # fmt: skip
    return Table(
        "Nucleus- and image-level uncertainty",
        ("", "nucleus AUROC", "nuclei", "unmatched", "mean image uncertainty",
         "Spearman(uncertainty, DSB)", "Spearman(predicted quality, DSB)",
         "retention AUC model", "retention AUC random", "retention AUC oracle"),
        tuple(rows),
        "Nucleus AUROC: uncertainty of predicted nuclei with no true match at IoU 0.5 vs matched "
        "ones. With several datasets, a higher mean image uncertainty on one of them suggests "
        "it is out of the training distribution.",
    )  # fmt: skip


def _warnings(metrics: Mapping[str, Any]) -> tuple[str, ...]:
    out = []
    for key, text in (("missing_predictions", "truth image(s) have no prediction"),
                      ("missing_truths", "prediction(s) have no truth")):  # fmt: skip
        names = metrics.get(key) or []
        if names:
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            out.append(f"{len(names)} {text} and were not scored: {shown}")
    for failure in metrics.get("failures") or []:
        out.append(f"not scored: {failure['dataset']}/{failure['id']}: {failure['problem']}")
    return tuple(out)


def build_content(
    metrics: Mapping[str, Any],
    records: Sequence[ImageRecord],
    figs: Mapping[str, tuple[str, bytes]],
    galleries: Mapping[str, Sequence[GalleryEntry]],
    config: Mapping[str, Any],
) -> ReportContent:
    """Assemble the HTML report content from the metrics, records, figures and galleries."""
    groups = _groups(metrics)
    tables = [_segmentation_table(groups), _calibration_table(groups), _pixel_table(metrics),
              _nucleus_image_table(groups)]  # fmt: skip
    columns = per_image_columns(records)
    details = Table(
        "Per-image scores (sorted by DSB score, worst first)",
        columns,
        tuple(tuple(r.row.get(k) for k in columns)
              for r in sorted(records, key=lambda r: r.row["dsb"])),
    )  # fmt: skip
    return ReportContent(
        title="bayescellseg evaluation report",
        intro=INTRO,
        warnings=_warnings(metrics),
        tables=tuple(t for t in tables if t is not None),
        figures=tuple(figs.values()),
        galleries=dict(galleries),
        details_table=details,
        config=config,
    )
