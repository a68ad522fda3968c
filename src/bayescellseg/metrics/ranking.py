"""Ranking quality of an uncertainty: AUROC, average precision and rank correlation.

Higher scores are taken to mean "more likely positive" (for an uncertainty: "more likely wrong").
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, stats

__all__ = ["aupr", "auroc", "auroc_and_aupr", "mean_height", "nucleus_error_auroc", "spearman"]


def _scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 scores and bool labels, validated."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.size} vs {y.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if y.dtype != bool:
        if y.size and not np.all((y == 0) | (y == 1)):
            raise ValueError("labels must be binary (bool or 0/1)")
        y = y.astype(bool)
    return s, y


def _tie_groups(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives per distinct score, from the highest score down (one sort)."""
    order = np.argsort(-s)
    s_sorted, y_sorted = s[order], y[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    pos = np.add.reduceat(y_sorted.astype(np.int64), starts)
    size = np.diff(np.r_[starts, s_sorted.size])
    return pos, size - pos


def _auroc_from_groups(pos: np.ndarray, neg: np.ndarray) -> float:
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    pos_above = np.cumsum(pos) - pos
    wins = np.sum(neg * (pos_above + 0.5 * pos))
    return float(wins / (float(n_pos) * float(n_neg)))


def _aupr_from_groups(pos: np.ndarray, neg: np.ndarray) -> float:
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tp = np.cumsum(pos).astype(np.float64)
    called = np.cumsum(pos + neg).astype(np.float64)
    return float(np.sum((pos / n_pos) * (tp / called)))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the positive class ``labels == 1``.

    The rank (Mann-Whitney U) statistic: ``AUROC = (R_pos - n_pos (n_pos + 1) / 2) /
    (n_pos n_neg)`` where ``R_pos`` is the sum of the ranks of the positives with ties given
    their average rank, i.e. the fraction of (positive, negative) pairs where the positive
    scores higher, a tie counting 1/2. It is evaluated from one sort, grouping tied scores.

    Args:
        scores: Higher = more likely positive (e.g. uncertainty for "is an error").
        labels: Binary labels of the same size.

    Returns:
        AUROC in [0, 1]; nan when the labels are all positive or all negative (undefined).
    """
    return _auroc_from_groups(*_tie_groups(*_scores_labels(scores, labels)))


def aupr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve, step-wise).

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score values in decreasing order,
    where ``P_k`` and ``R_k`` are the precision and recall when every sample with a score
    ``>=`` the k-th value is called positive (tied scores enter together; the definition of
    scikit-learn's ``average_precision_score``). A random ranking gives about the positive
    prevalence.

    Args:
        scores: Higher = more likely positive.
        labels: Binary labels of the same size.

    Returns:
        AP in [0, 1]; nan when the labels are all positive or all negative (uninformative).
    """
    return _aupr_from_groups(*_tie_groups(*_scores_labels(scores, labels)))


def auroc_and_aupr(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """:func:`auroc` and :func:`aupr` of the same scores from one sort.

    Args:
        scores: Higher = more likely positive.
        labels: Binary labels of the same size.

    Returns:
        ``(auroc, aupr)``; both nan when the labels are all positive or all negative.
    """
    pos, neg = _tie_groups(*_scores_labels(scores, labels))
    return _auroc_from_groups(pos, neg), _aupr_from_groups(pos, neg)


def nucleus_error_auroc(nucleus_uncertainty: np.ndarray, has_match: np.ndarray) -> float:
    """AUROC of nucleus uncertainty for "this predicted nucleus has no true match".

    The positive class is ``~has_match`` (no true nucleus with IoU > 0.5, e.g.
    ``MatchResult.pred_has_match``), so 1.0 means every unmatched nucleus is more uncertain
    than every matched one.

    Args:
        nucleus_uncertainty: One uncertainty per predicted nucleus.
        has_match: Boolean per predicted nucleus, same order.

    Returns:
        AUROC in [0, 1]; nan if all nuclei are matched or none is.
    """
    labels = np.asarray(has_match).reshape(-1)
    if labels.dtype != bool and labels.size and not np.all((labels == 0) | (labels == 1)):
        raise ValueError("has_match must be boolean (or 0/1)")
    return auroc(nucleus_uncertainty, ~labels.astype(bool))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation, ignoring pairs where either value is nan.

    Args:
        x: First variable (e.g. image uncertainty).
        y: Second variable of the same size (e.g. image DSB score).

    Returns:
        rho in [-1, 1]; nan with fewer than 3 complete pairs or a constant variable.
    """
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.size != b.size:
        raise ValueError(f"x and y differ in size: {a.size} vs {b.size}")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def mean_height(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area of y(x) for any monotone x, divided by the range of x (mean height)."""
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    span = xs[-1] - xs[0]
    if span <= 0:
        return float(ys.mean())
    return float(integrate.trapezoid(ys, xs) / span)
