"""Figures of the trust signals against truth, as PNG bytes (the style of :mod:`.plots`).

* :func:`interval_scatter`: predicted vs true DSB score, with each image's interval, per dataset;
* :func:`ood_strip`: the out-of-distribution score of each image, per dataset, with the
  threshold above which an image is flagged.

The ``p_correct`` reliability diagram is :func:`~bayescellseg.report.plots.reliability_diagram`
with nucleus labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from bayescellseg.report.plots import _empty_note, _png


def _groups(groups: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    names = np.asarray(list(groups), dtype=object)
    return names, list(dict.fromkeys(names.tolist()))


def interval_scatter(
    predicted: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    true: np.ndarray,
    groups: Sequence[str],
    coverage: float | None = None,
) -> bytes:
    """Predicted vs true DSB score per image, with the interval as a vertical bar.

    Args:
        predicted: (n,) predicted scores (nan values are skipped).
        low: (n,) lower ends of the intervals.
        high: (n,) upper ends.
        true: (n,) true scores.
        groups: (n,) dataset of each image (one colour each).
        coverage: The interval's stated coverage, shown in the title (None: not shown).

    Returns:
        PNG bytes.
    """
    p, lo, hi, t = (np.asarray(a, np.float64).reshape(-1) for a in (predicted, low, high, true))
    names, order = _groups(groups)
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="predicted = true")
    ok = np.isfinite(p) & np.isfinite(t)
    for i, name in enumerate(order):
        keep = ok & (names == name)
        bars = keep & np.isfinite(lo) & np.isfinite(hi)
        inside = np.mean((t[keep] >= lo[keep]) & (t[keep] <= hi[keep])) if keep.any() else 0.0
        ax.vlines(t[bars], lo[bars], hi[bars], color=f"C{i}", alpha=0.25, lw=1.2)
        ax.scatter(t[keep], p[keep], s=14, color=f"C{i}",
                   label=f"{name} ({keep.sum()}, {inside:.0%} inside)")  # fmt: skip
    if not ok.any():
        _empty_note(ax, "no image with a predicted score")
    ax.legend(loc="upper left", fontsize=8)
    stated = f" ({coverage:.0%} intervals)" if coverage is not None else ""
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="true DSB score", ylabel="predicted DSB score",
           title=f"Predicted vs true DSB score{stated}")  # fmt: skip
    return _png(fig)


def ood_strip(
    scores: np.ndarray,
    groups: Sequence[str],
    threshold: float | None = None,
    ylabel: str = "OOD score (distance)",
) -> bytes:
    """The OOD score of every image, one column per dataset, with the flagging threshold.

    Args:
        scores: (n,) OOD score (distance to the fitting images) per image; nan is skipped.
        groups: (n,) dataset of each image.
        threshold: Images above it are flagged (None: not drawn).
        ylabel: The y-axis label (what the score is).

    Returns:
        PNG bytes.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    names, order = _groups(groups)
    fig = Figure(figsize=(5.2, 4.2))
    ax = fig.subplots()
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, s.size)
    for i, name in enumerate(order):
        keep = (names == name) & np.isfinite(s)
        ax.scatter(i + jitter[keep], s[keep], s=12, alpha=0.7, color=f"C{i}")
        if keep.any():
            ax.hlines(np.median(s[keep]), i - 0.3, i + 0.3, color=f"C{i}", lw=2)
    if threshold is not None:
        ax.axhline(threshold, color="C3", ls="--", lw=1.2, label=f"OOD threshold {threshold:.2f}")
        ax.legend(loc="upper left", fontsize=8)
    if not np.isfinite(s).any():
        _empty_note(ax, "no image with an OOD score")
    ax.set_xticks(range(len(order)), [str(n) for n in order], rotation=20 if len(order) > 3 else 0)
    ax.set(xlim=(-0.6, max(len(order), 1) - 0.4), ylabel=ylabel,
           title="Out-of-distribution score per dataset (bar: median)")  # fmt: skip
    return _png(fig)
