"""Evaluation figures as PNG bytes (matplotlib, Agg backend, no pyplot global state).

Every function builds its own :class:`matplotlib.figure.Figure`, renders it with the Agg canvas
and returns the PNG file content, so figures can be written atomically and inlined in HTML.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bayescellseg.metrics.calibration import ReliabilityBins
from bayescellseg.metrics.retention import RetentionCurve

DPI = 110


def _png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes (fixed margins: one draw, no tight-bbox pass)."""
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.12, top=0.92, hspace=0.08)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _empty_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve points (false-positive rate, true-positive rate) for plotting.

    Thresholds run from +inf down through every distinct score (ties move together), so the
    curve starts at (0, 0) and ends at (1, 1); its trapezoid area equals the tie-aware AUROC.

    Args:
        scores: Higher = more likely positive.
        labels: Boolean (or 0/1) positives, same size.

    Returns:
        ``(fpr, tpr)`` float64 arrays; empty when a class is missing.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = np.cumsum(~y_sorted)[last_of_tie]
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def reliability_diagram(
    curves: Mapping[str, ReliabilityBins],
    title: str = "",
    labels: tuple[str, str, str] = (
        "predicted foreground probability",
        "fraction of pixels that are nucleus",
        "pixels",
    ),  # fmt: skip
) -> bytes:
    """Reliability diagram: positive frequency vs mean predicted probability, per bin.

    Args:
        curves: Name (e.g. ``"all pixels"``, ``"boundary band"``) -> reliability bins.
        title: Figure title.
        labels: The x axis, y axis and count axis labels (default: foreground pixels).

    Returns:
        PNG bytes. The lower panel shows the count per bin (log scale).
    """
    fig = Figure(figsize=(5.2, 5.8))
    ax, ax_hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfect calibration")
    for i, (name, bins) in enumerate(curves.items()):
        full = bins.counts > 0
        color = f"C{i}"
        ax.plot(
            bins.mean_prob[full],
            bins.frequency[full],
            "o-",
            color=color,
            ms=4,
            label=f"{name} (ECE {bins.ece:.3f})",
        )
        centers = 0.5 * (bins.edges[1:] + bins.edges[:-1])
        width = (bins.edges[1] - bins.edges[0]) / (len(curves) + 0.5)
        ax_hist.bar(
            centers + (i - (len(curves) - 1) / 2) * width,
            np.maximum(bins.counts, 0),
            width=width,
            color=color,
            alpha=0.8,
        )
    if not curves:
        _empty_note(ax, "no probabilities")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        ylabel=labels[1],
        title=title or "Reliability of the foreground probability",
    )
    ax.legend(loc="upper left", fontsize=8)
    ax_hist.set(xlabel=labels[0], ylabel=labels[2])
    if any(b.n > 0 for b in curves.values()):
        ax_hist.set_yscale("log")
    return _png(fig)


def retention_plot(
    curve: RetentionCurve | None, title: str = "", ylabel: str = "DSB score"
) -> bytes:
    """Retention curves: mean score of the kept images vs fraction referred to an expert.

    Args:
        curve: Model / random / oracle curves (None: an empty placeholder figure).
        title: Figure title.
        ylabel: Name of the image score.

    Returns:
        PNG bytes.
    """
    fig = Figure(figsize=(5.2, 4.2))
    ax = fig.subplots()
    if curve is None:
        _empty_note(ax, "needs images with an image uncertainty")
    else:
        f = curve.fractions
        ax.plot(f, curve.oracle, color="C2", label=f"oracle (AUC {curve.auc_oracle:.3f})")
        ax.plot(
            f, curve.model, color="C0", lw=2, label=f"model uncertainty (AUC {curve.auc_model:.3f})"
        )
        ax.plot(f, curve.random, color="0.5", ls="--", label=f"random (AUC {curve.auc_random:.3f})")
        ax.legend(loc="lower right", fontsize=8)
    ax.set(
        xlabel="fraction of images referred (most uncertain first)",
        ylabel=f"mean {ylabel} of kept images",
        xlim=(0, 1),
        title=title or "Retention curve",
    )
    return _png(fig)


def score_scatter(
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    xlabel: str = "image uncertainty",
    ylabel: str = "DSB score",
    title: str = "",
) -> bytes:
    """Scatter plot of one value per image, coloured by group (dataset).

    Args:
        x: X value per image (nan values are skipped).
        y: Y value per image.
        groups: Group name per image.
        xlabel: X axis label.
        ylabel: Y axis label.
        title: Figure title.

    Returns:
        PNG bytes.
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1)
    names = np.asarray(list(groups), dtype=object)
    fig = Figure(figsize=(5.2, 4.2))
    ax = fig.subplots()
    ok = np.isfinite(xs) & np.isfinite(ys)
    for i, name in enumerate(dict.fromkeys(names.tolist())):
        keep = ok & (names == name)
        ax.scatter(
            xs[keep], ys[keep], s=14, alpha=0.7, color=f"C{i}", label=f"{name} ({keep.sum()})"
        )
    if not ok.any():
        _empty_note(ax, "no image has both values")
    elif len(set(names.tolist())) > 1:
        ax.legend(fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or f"{ylabel} vs {xlabel}")
    return _png(fig)


def roc_plot(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str = "") -> bytes:
    """ROC curves of uncertainty as a detector of errors.

    Args:
        curves: Name -> ``(fpr, tpr, auroc)``; empty curves are listed as "n/a".
        title: Figure title.

    Returns:
        PNG bytes.
    """
    fig = Figure(figsize=(4.8, 4.6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="chance (0.5)")
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        if len(fpr) == 0:
            ax.plot([], [], color=f"C{i}", label=f"{name} (n/a)")
            continue
        ax.plot(fpr, tpr, color=f"C{i}", lw=1.8, label=f"{name} (AUROC {auc:.3f})")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="false-positive rate",
        ylabel="true-positive rate (errors found)",
        title=title or "ROC",
    )
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
