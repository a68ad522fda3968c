"""The trust-signal part of the evaluation report: its figures and its HTML section.

Figures (only when the images carry trust signals): ``trust_scores.png`` (predicted vs true DSB
score with the intervals, by dataset), ``trust_reliability.png`` (reliability of the nucleus
``p_correct``), ``trust_ood.png`` (OOD score per dataset with the flagging threshold). The
section's table has, overall and per dataset, the predicted score's MAE and interval coverage,
the review rule's realised rate, the review budget's share of the oracle's gain, the ``p_correct``
ECE and the OOD AUROC of each dataset against the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bayescellseg.evaluation.trusted import ScoredTrust, trust_batch
from bayescellseg.metrics.calibration import reliability_bins
from bayescellseg.report import trust_plots
from bayescellseg.report.html import Section, Table
from bayescellseg.report.plots import reliability_diagram

TRUST_FIGURE_FILES = ("trust_scores.png", "trust_reliability.png", "trust_ood.png")

EXPLAIN = (
    "What the model says about its own quality, checked against the truth. The predicted DSB "
    "score (with an interval that should hold the true score for the stated share of images) "
    "comes from the model's trust.json, fitted on held-out images. p_correct is the probability "
    "that a predicted nucleus matches a true one at IoU 0.5; calibrated means that of the nuclei "
    "with p_correct 0.8, 80% are right (ECE: the mean gap, lower is better). The OOD score is "
    "the distance of an image's features to the images the trust model was fitted on; an image "
    "above the threshold is flagged as unlike them.",
    "Realised rate: of the images the --min-quality rule leaves unflagged, the share whose true "
    "score reaches the needed quality (to compare with the stated rate). Oracle-gain share: how "
    "much of the best possible gain in mean DSB score of the kept images the review budget "
    "achieves when the images with the lowest predicted score are reviewed (1 = as good as "
    "reviewing the truly worst ones). OOD AUROC: how well the OOD score tells one dataset's "
    "images from the others' (0.5: not at all).",
)


def trust_figures(scored: Sequence[ScoredTrust], block: Mapping[str, Any]) -> dict:
    """File name -> (caption, PNG bytes) of the trust figures ({} without trust signals)."""
    if not block.get("available"):
        return {}
    batch = trust_batch(scored)
    names = batch.datasets.tolist()
    curves = {"all nuclei": reliability_bins(batch.p_correct, batch.correct)}
    if len(set(names)) > 1:
        for name in dict.fromkeys(names):
            keep = batch.nucleus_dataset == name
            curves[str(name)] = reliability_bins(batch.p_correct[keep], batch.correct[keep])
    labels = ("p_correct", "fraction of nuclei matching a true one (IoU 0.5)", "nuclei")
    return {
        "trust_scores.png": (
            "Predicted vs true DSB score, one point per image; the bar is its interval.",
            trust_plots.interval_scatter(batch.predicted, batch.low, batch.high, batch.true,
                                         names, block.get("stated_coverage")),
        ),
        "trust_reliability.png": (
            "Reliability of the nucleus p_correct: fraction of nuclei that are right, per bin.",
            reliability_diagram(curves, "Reliability of p_correct", labels),
        ),
        "trust_ood.png": _ood_figure(batch.ood_score, batch.ood_level, names, block),
    }  # fmt: skip


def _ood_figure(score: np.ndarray, level: np.ndarray, names: list, block: Mapping) -> tuple:
    """The OOD strip: of ``ood_level`` (flag line 1) when every image has one, else of the
    image-feature distance with its threshold (predictions made before ``ood_level``)."""
    caption = "Out-of-distribution {} of each image, per dataset; images above the dashed line are flagged."  # fmt: skip
    if level.size and np.isfinite(level).all():
        what = "level (the larger of the image-feature and bottleneck distances, each over its threshold)"  # fmt: skip
        png = trust_plots.ood_strip(level, names, 1.0, ylabel="OOD level (distance / threshold)")
        return caption.format(what), png
    png = trust_plots.ood_strip(score, names, block.get("ood_threshold"))
    return caption.format("score (distance of the image features)"), png


def _row(name: str, m: Mapping[str, Any]) -> tuple:
    score, budget, nucleus = m["score"], m["budget"], m["nucleus"]
    review = m.get("review") or {}
    return (name, score.get("n_images"), score.get("mae"), score.get("bias"),
            score.get("pearson"), score.get("coverage"), score.get("mean_width"),
            review.get("realised_rate"), budget.get("oracle_gain_share"), nucleus.get("ece"),
            nucleus.get("error_auroc"), m.get("ood_flagged"),
            m.get("ood_auroc_vs_others"))  # fmt: skip


def trust_table(block: Mapping[str, Any]) -> Table:
    """Overall and per-dataset trust measures of ``metrics.json["trust"]``."""
    rows = [_row("all images", block["overall"])]
    datasets = block.get("datasets") or {}
    if len(datasets) > 1:
        rows += [_row(name, m) for name, m in datasets.items()]
    stated = block.get("stated_coverage")
    rate = "" if block.get("min_quality") is None else (
        f" Realised rate: unflagged images with a true DSB score >= {block['min_quality']:g}, "
        f"stated {1 - block['alpha']:.0%}.")  # fmt: skip
    return Table(
        "Trust signals against truth",
        ("", "images", "score MAE", "bias", "Pearson", "interval coverage", "mean width",
         "realised rate", f"oracle-gain share @ {block['review_fraction']:.0%}",
         "p_correct ECE", "nucleus-error AUROC", "OOD flagged", "OOD AUROC vs others"),
        tuple(rows),
        ("Interval coverage: share of images whose true score lies in its interval"
         + (f" (stated {stated:.0%})." if stated is not None else ".") + rate),
    )  # fmt: skip


def trust_section(block: Mapping[str, Any], figs: Mapping[str, tuple[str, bytes]]) -> Section:
    """The report's "Trust signals" section (says they are absent when there are none)."""
    if not block.get("available"):
        return Section("Trust signals", (f"Trust signals are absent: {block.get('reason')}.",))
    notes = list(EXPLAIN)
    if block.get("review_statement"):
        notes.append(f"Review rule (--min-quality): {block['review_statement']}.")
    if block.get("n_images_without"):
        notes.append(f"{block['n_images_without']} scored image(s) carry no trust signals and "
                     "are left out of this section.")  # fmt: skip
    return Section("Trust signals", tuple(notes), (trust_table(block),), tuple(figs.values()))
