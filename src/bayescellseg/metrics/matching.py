"""Instance matching between true and predicted nuclei, and the DSB2018 score.

Conventions:

* Instance labels are integer arrays of the same shape, 0 = background, any positive ids
  (not necessarily consecutive).
* A true nucleus ``i`` and a predicted nucleus ``j`` *match at threshold t* when
  ``IoU(i, j) > t`` (strictly greater, as in the Kaggle 2018 Data Science Bowl evaluation).
  For ``t >= 0.5`` such matches are automatically one-to-one: if ``IoU(i, j) > 0.5`` then
  ``|i ∩ j| > |i ∪ j| / 2 >= max(|i|, |j|) / 2``, so ``j`` covers more than half of ``i`` and
  no other disjoint prediction can; likewise for ``i`` within ``j``. No Hungarian step is
  needed, and this is what the official score does. For ``t < 0.5`` the one-to-one matching
  maximising the total IoU is computed with :func:`scipy.optimize.linear_sum_assignment`
  (as StarDist's ``matching``).
* The IoUs come from :mod:`bayescellseg.metrics.overlaps`, the package's one IoU engine.
* The Kaggle "precision" at threshold ``t`` is ``TP / (TP + FP + FN)``. When there is
  nothing to find and nothing predicted (``TP + FP + FN = 0``) it is defined as 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from bayescellseg.metrics.overlaps import LabelIndex, Overlaps, iou_matrix, label_index, overlaps

__all__ = [
    "DSB_THRESHOLDS",
    "CountError",
    "MatchResult",
    "average_precision",
    "count_error",
    "dsb_score",
    "f1",
    "iou_matrix",  # the IoU engine lives in metrics.overlaps; re-exported for callers
    "match",
]

DSB_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.5, 1.0, 0.05), 2))
"""The ten IoU thresholds of the DSB2018 score: 0.5, 0.55, ..., 0.95."""


@dataclass(frozen=True)
class CountError:
    """Difference between the predicted and the true number of nuclei.

    Attributes:
        n_true: Number of true nuclei.
        n_pred: Number of predicted nuclei.
        signed: ``n_pred - n_true`` (positive = over-counting).
        absolute: ``|n_pred - n_true|``.
        relative: ``|n_pred - n_true| / n_true`` (nan when ``n_true == 0``).
    """

    n_true: int
    n_pred: int
    signed: int
    absolute: int
    relative: float


@dataclass(frozen=True)
class MatchResult:
    """Matching of true and predicted nuclei at several IoU thresholds.

    Arrays are read-only. Per-threshold arrays have one entry per ``thresholds`` value;
    per-nucleus arrays follow the order of ``ids_true`` / ``ids_pred`` (sorted ids).

    Attributes:
        thresholds: IoU thresholds, matched when ``IoU > t``.
        ids_true: Sorted ids of the true nuclei, shape (n_true,).
        ids_pred: Sorted ids of the predicted nuclei, shape (n_pred,).
        tp: True positives (matched pairs) per threshold.
        fp: False positives ``n_pred - tp`` per threshold.
        fn: False negatives ``n_true - tp`` per threshold.
        precision: Kaggle precision ``tp / (tp + fp + fn)`` per threshold (1 when all are 0).
        true_best_iou: Best IoU of each true nucleus with any prediction (0 if untouched).
        pred_best_iou: Best IoU of each predicted nucleus with any true nucleus.
        pred_best_true: Id of the true nucleus giving ``pred_best_iou`` (0 if none overlaps).
        pred_has_match: Whether each predicted nucleus has a true match at IoU > 0.5
            (the nucleus-level error label: ``False`` = the prediction is an error).
        true_has_match: Whether each true nucleus is found at IoU > 0.5.
    """

    thresholds: tuple[float, ...]
    ids_true: np.ndarray
    ids_pred: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    true_best_iou: np.ndarray
    pred_best_iou: np.ndarray
    pred_best_true: np.ndarray
    pred_has_match: np.ndarray
    true_has_match: np.ndarray

    @property
    def n_true(self) -> int:
        """Number of true nuclei."""
        return int(self.ids_true.size)

    @property
    def n_pred(self) -> int:
        """Number of predicted nuclei."""
        return int(self.ids_pred.size)

    @property
    def score(self) -> float:
        """Mean of ``precision`` over the thresholds (the DSB score for ``DSB_THRESHOLDS``)."""
        return float(np.mean(self.precision))

    def at(self, threshold: float) -> dict[str, float]:
        """TP, FP, FN, precision, recall and F1 at one of the thresholds.

        Args:
            threshold: One of ``self.thresholds`` (compared after rounding to 6 decimals).

        Returns:
            Dict with keys ``tp, fp, fn, precision, recall, f1``. ``recall = tp / n_true`` and
            ``f1 = 2 tp / (2 tp + fp + fn)``; both are 1 when their denominator is 0.

        Raises:
            KeyError: If ``threshold`` is not one of the thresholds.
        """
        rounded = np.round(np.asarray(self.thresholds), 6)
        hits = np.flatnonzero(rounded == round(float(threshold), 6))
        if hits.size == 0:
            raise KeyError(f"threshold {threshold} not in {self.thresholds}")
        k = int(hits[0])
        tp, fp, fn = int(self.tp[k]), int(self.fp[k]), int(self.fn[k])
        return {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": float(self.precision[k]),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        }


def _ratio(num: float, den: float) -> float:
    """``num / den`` with ``0 / 0 = 1`` (nothing to find, nothing found)."""
    return 1.0 if den == 0 else float(num) / float(den)


def _normalise_thresholds(thresholds: float | Sequence[float]) -> tuple[float, ...]:
    """Thresholds as a tuple of floats in [0, 1)."""
    values = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise ValueError("thresholds must be a number or a non-empty sequence of numbers")
    if np.any(~np.isfinite(values)) or np.any(values < 0) or np.any(values >= 1):
        raise ValueError(f"IoU thresholds must lie in [0, 1), got {values.tolist()}")
    return tuple(float(v) for v in values)


def _count_tp(ov: Overlaps, threshold: float) -> int:
    """Number of one-to-one matches with IoU > threshold."""
    keep = ov.iou > threshold
    if threshold >= 0.5:
        return int(np.count_nonzero(keep))  # unique by the IoU > 0.5 argument
    if not np.any(keep):
        return 0
    rows, row_idx = np.unique(ov.rows[keep], return_inverse=True)
    cols, col_idx = np.unique(ov.cols[keep], return_inverse=True)
    cost = np.zeros((rows.size, cols.size), np.float64)
    cost[row_idx, col_idx] = ov.iou[keep]
    r, c = linear_sum_assignment(cost, maximize=True)
    return int(np.count_nonzero(cost[r, c] > threshold))


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def match(
    true_labels: np.ndarray | LabelIndex,
    pred_labels: np.ndarray | LabelIndex,
    thresholds: float | Sequence[float] = DSB_THRESHOLDS,
) -> MatchResult:
    """Match predicted to true nuclei at one or several IoU thresholds.

    At threshold ``t`` a pair matches when ``IoU > t`` (see the module docstring for why this
    is one-to-one for ``t >= 0.5``; below 0.5 the IoU-maximising assignment is used).
    ``TP(t)`` = matched pairs, ``FP(t) = n_pred - TP(t)``, ``FN(t) = n_true - TP(t)`` and the
    Kaggle precision is ``TP / (TP + FP + FN)``, defined as 1 when there are no true and no
    predicted nuclei.

    Args:
        true_labels: Integer instance labels, 0 = background, or their
            :class:`~bayescellseg.metrics.overlaps.LabelIndex`.
        pred_labels: Integer instance labels of the same shape (or their ``LabelIndex``).
        thresholds: One threshold or a sequence, each in [0, 1). Default: the DSB2018 ten.

    Returns:
        A :class:`MatchResult`.

    Raises:
        ValueError: If the shapes differ, the labels are invalid or a threshold is outside [0, 1).
    """
    ths = _normalise_thresholds(thresholds)
    ov = overlaps(true_labels, pred_labels)
    n_t, n_p = ov.ids_true.size, ov.ids_pred.size
    tp = np.array([_count_tp(ov, t) for t in ths], dtype=np.int64)
    fp = n_p - tp
    fn = n_t - tp
    precision = np.array(
        [_ratio(a, a + b + c) for a, b, c in zip(tp, fp, fn, strict=True)], np.float64
    )

    true_best = ov.true_best_iou()
    pred_best = ov.pred_best_iou()
    pred_best_true = np.zeros(n_p, np.int64)
    if ov.iou.size:
        order = np.lexsort((ov.iou, ov.cols))  # by column, then IoU ascending: last is best
        last = np.r_[ov.cols[order][1:] != ov.cols[order][:-1], True]
        best = order[last]
        pred_best_true[ov.cols[best]] = ov.ids_true[ov.rows[best]]

    return MatchResult(
        thresholds=ths,
        ids_true=_readonly(ov.ids_true.copy()),
        ids_pred=_readonly(ov.ids_pred.copy()),
        tp=_readonly(tp),
        fp=_readonly(fp),
        fn=_readonly(fn),
        precision=_readonly(precision),
        true_best_iou=_readonly(true_best),
        pred_best_iou=_readonly(pred_best),
        pred_best_true=_readonly(pred_best_true),
        pred_has_match=_readonly(pred_best > 0.5),
        true_has_match=_readonly(true_best > 0.5),
    )


def dsb_score(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Official DSB2018 score of one image.

    ``score = (1 / 10) * sum_t TP(t) / (TP(t) + FP(t) + FN(t))`` over
    ``t in DSB_THRESHOLDS`` (0.5, 0.55, ..., 0.95), matching at ``IoU > t``.
    Edge cases: no true and no predicted nuclei -> 1.0; no true nuclei but some predicted
    -> 0.0; true nuclei but no prediction -> 0.0.

    Args:
        true_labels: Integer instance labels, 0 = background.
        pred_labels: Integer instance labels of the same shape.

    Returns:
        The score in [0, 1].
    """
    return match(true_labels, pred_labels, DSB_THRESHOLDS).score


def average_precision(
    true_labels: np.ndarray, pred_labels: np.ndarray, threshold: float = 0.5
) -> float:
    """DSB-style "average precision" at one IoU threshold: ``TP / (TP + FP + FN)``.

    This is the quantity averaged by the DSB score (e.g. AP50 at 0.5, AP75 at 0.75), not the
    area under a precision-recall curve. 1 when there are no true and no predicted nuclei.

    Args:
        true_labels: Integer instance labels.
        pred_labels: Integer instance labels of the same shape.
        threshold: IoU threshold in [0, 1), matched when ``IoU > threshold``.

    Returns:
        The value in [0, 1].
    """
    return float(match(true_labels, pred_labels, threshold).precision[0])


def f1(true_labels: np.ndarray, pred_labels: np.ndarray, threshold: float = 0.5) -> float:
    """Object-level F1 at one IoU threshold: ``2 TP / (2 TP + FP + FN)``.

    Args:
        true_labels: Integer instance labels.
        pred_labels: Integer instance labels of the same shape.
        threshold: IoU threshold in [0, 1), matched when ``IoU > threshold``.

    Returns:
        F1 in [0, 1]; 1 when there are no true and no predicted nuclei.
    """
    res = match(true_labels, pred_labels, threshold)
    tp, fp, fn = int(res.tp[0]), int(res.fp[0]), int(res.fn[0])
    return _ratio(2 * tp, 2 * tp + fp + fn)


def count_error(true_labels: np.ndarray, pred_labels: np.ndarray) -> CountError:
    """Error in the number of nuclei (distinct positive ids) of a prediction.

    Args:
        true_labels: Integer instance labels.
        pred_labels: Integer instance labels (any shape).

    Returns:
        A :class:`CountError` with ``signed = n_pred - n_true``, ``absolute = |signed|`` and
        ``relative = absolute / n_true`` (nan if there are no true nuclei).
    """
    n_t = label_index(true_labels, "true_labels").n
    n_p = label_index(pred_labels, "pred_labels").n
    signed = n_p - n_t
    relative = abs(signed) / n_t if n_t else float("nan")
    return CountError(
        n_true=n_t, n_pred=n_p, signed=signed, absolute=abs(signed), relative=relative
    )
