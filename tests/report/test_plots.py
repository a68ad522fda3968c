"""Evaluation figures: ROC points by hand, every plot renders a PNG (also with empty input)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import integrate

from bayescellseg.metrics.calibration import reliability_bins
from bayescellseg.metrics.uncertainty import auroc, retention_curve
from bayescellseg.report import plots


def open_png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.width > 200 and img.height > 200
    return img


def test_roc_points_by_hand():
    # ranked: .9 (pos), .8 (neg), .7 (pos), .1 (neg)
    fpr, tpr = plots.roc_points(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0]))
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert integrate.trapezoid(tpr, fpr) == pytest.approx(0.75)


def test_roc_points_ties_move_together_and_match_auroc():
    scores = np.array([0.5, 0.5, 0.2, 0.9, 0.2, 0.5])
    labels = np.array([1, 0, 0, 1, 1, 0], bool)
    fpr, tpr = plots.roc_points(scores, labels)
    assert len(fpr) == 1 + 3  # one point per distinct score
    assert integrate.trapezoid(tpr, fpr) == pytest.approx(auroc(scores, labels))


def test_roc_points_single_class_is_empty():
    fpr, tpr = plots.roc_points(np.array([0.1, 0.2]), np.array([True, True]))
    assert fpr.size == 0 and tpr.size == 0


def test_every_plot_renders():
    rng = np.random.default_rng(0)
    prob = rng.uniform(size=1000)
    target = rng.uniform(size=1000) < prob
    bins = reliability_bins(prob, target)
    open_png(plots.reliability_diagram({"all pixels": bins, "band": bins}))
    curve = retention_curve(rng.uniform(size=10), rng.uniform(size=10))
    open_png(plots.retention_plot(curve))
    open_png(plots.score_scatter(rng.uniform(size=10), rng.uniform(size=10), ["a"] * 5 + ["b"] * 5))
    fpr, tpr = plots.roc_points(prob, target)
    open_png(
        plots.roc_plot({"entropy": (fpr, tpr, 0.8), "none": (np.empty(0), np.empty(0), np.nan)})
    )


def test_plots_with_nothing_to_show():
    open_png(plots.reliability_diagram({}))
    open_png(plots.retention_plot(None))
    open_png(plots.score_scatter(np.array([np.nan]), np.array([0.5]), ["a"]))
    open_png(plots.roc_plot({}))
