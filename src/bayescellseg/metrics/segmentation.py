"""Pixel-level overlap scores and a one-call summary of an instance segmentation."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from bayescellseg.metrics.matching import DSB_THRESHOLDS, match


@dataclass(frozen=True)
class SegmentationScores:
    """Instance and pixel scores of one predicted segmentation.

    Attributes:
        dsb: DSB2018 score (mean of ``TP / (TP + FP + FN)`` over IoU > 0.5, ..., 0.95).
        ap50: ``TP / (TP + FP + FN)`` at IoU > 0.5.
        ap75: ``TP / (TP + FP + FN)`` at IoU > 0.75.
        f1: Object F1 ``2 TP / (2 TP + FP + FN)`` at IoU > 0.5.
        dice: Pixel Dice of the foregrounds.
        iou: Pixel IoU (Jaccard) of the foregrounds.
        count_error: ``n_pred - n_true``.
        abs_count_error: ``|n_pred - n_true|``.
        n_true: Number of true nuclei.
        n_pred: Number of predicted nuclei.
    """

    dsb: float
    ap50: float
    ap75: float
    f1: float
    dice: float
    iou: float
    count_error: int
    abs_count_error: int
    n_true: int
    n_pred: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict (JSON/CSV friendly)."""
        return asdict(self)


def _foreground_pair(true_fg: np.ndarray, pred_fg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean foregrounds (``> 0``) of two same-shape arrays."""
    t = np.asarray(true_fg)
    p = np.asarray(pred_fg)
    if t.shape != p.shape:
        raise ValueError(f"true and predicted masks differ in shape: {t.shape} vs {p.shape}")
    return t > 0, p > 0


def pixel_dice(true_fg: np.ndarray, pred_fg: np.ndarray) -> float:
    """Dice coefficient of two foreground masks: ``2 |T ∩ P| / (|T| + |P|)``.

    Args:
        true_fg: True mask; any array, foreground is ``> 0`` (instance labels work too).
        pred_fg: Predicted mask of the same shape.

    Returns:
        Dice in [0, 1]; 1.0 when both masks are empty (nothing to find, nothing predicted).

    Raises:
        ValueError: If the shapes differ.
    """
    t, p = _foreground_pair(true_fg, pred_fg)
    den = int(np.count_nonzero(t)) + int(np.count_nonzero(p))
    if den == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(t & p)) / den


def pixel_iou(true_fg: np.ndarray, pred_fg: np.ndarray) -> float:
    """Jaccard index of two foreground masks: ``|T ∩ P| / |T ∪ P|``.

    Args:
        true_fg: True mask; any array, foreground is ``> 0`` (instance labels work too).
        pred_fg: Predicted mask of the same shape.

    Returns:
        IoU in [0, 1]; 1.0 when both masks are empty.

    Raises:
        ValueError: If the shapes differ.
    """
    t, p = _foreground_pair(true_fg, pred_fg)
    union = int(np.count_nonzero(t | p))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(t & p)) / union


def segmentation_summary(true_labels: np.ndarray, pred_labels: np.ndarray) -> SegmentationScores:
    """All standard scores of one predicted instance segmentation (one matching pass).

    Args:
        true_labels: Integer instance labels, 0 = background.
        pred_labels: Integer instance labels of the same shape.

    Returns:
        A :class:`SegmentationScores`; see :mod:`bayescellseg.metrics.matching` for the
        matching rule and the empty-image conventions.

    Raises:
        ValueError: If the shapes differ or the labels are invalid.
    """
    res = match(true_labels, pred_labels, DSB_THRESHOLDS)
    at50 = res.at(0.5)
    return SegmentationScores(
        dsb=res.score,
        ap50=at50["precision"],
        ap75=res.at(0.75)["precision"],
        f1=at50["f1"],
        dice=pixel_dice(true_labels, pred_labels),
        iou=pixel_iou(true_labels, pred_labels),
        count_error=res.n_pred - res.n_true,
        abs_count_error=abs(res.n_pred - res.n_true),
        n_true=res.n_true,
        n_pred=res.n_pred,
    )
