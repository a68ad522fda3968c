"""How useful an uncertainty is: does it point at the errors, at pixel, nucleus and image level?

Pixel level: AUROC / AUPR of the uncertainty for the label "this pixel is wrong", the
Uncertainty-Error Overlap (UEO) and the QU-BraTS filtering scores. Nucleus level: AUROC of
the nucleus uncertainty for "this predicted nucleus has no true match". Image level: Spearman
correlation with the image score and retention (referral) curves. The ranking scores live in
:mod:`bayescellseg.metrics.ranking`, the retention curves in :mod:`bayescellseg.metrics.retention`;
both are re-exported here.

Higher uncertainty is always taken to mean "more likely wrong".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from bayescellseg.metrics.ranking import (
    aupr,
    auroc,
    auroc_and_aupr,
    mean_height,
    nucleus_error_auroc,
    spearman,
)
from bayescellseg.metrics.retention import RetentionCurve, retention_curve

__all__ = [
    "QUBRATS_THRESHOLDS",
    "ErrorDetection",
    "QUBraTSScores",
    "RetentionCurve",
    "UEOCurve",
    "aupr",
    "auroc",
    "best_ueo",
    "error_detection",
    "normalize_uncertainty",
    "nucleus_error_auroc",
    "qubrats_scores",
    "retention_curve",
    "spearman",
]  # the ranking scores and retention curves live in metrics.ranking / metrics.retention

QUBRATS_THRESHOLDS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)
"""Uncertainty thresholds (on [0, 1]) of the QU-BraTS score, from keep-all to keep-certain."""


class ErrorDetection(NamedTuple):
    """Ranking quality of an uncertainty map for the pixel label "prediction is wrong".

    Attributes:
        auroc: Area under the ROC curve (nan if all pixels are right or all wrong).
        aupr: Average precision (nan in the same cases).
    """

    auroc: float
    aupr: float


@dataclass(frozen=True)
class UEOCurve:
    """Uncertainty-Error Overlap as a function of the uncertainty threshold.

    Attributes:
        thresholds: Thresholds on the normalised uncertainty (pixels with ``u > t`` flagged).
        ueo: Dice between the flagged pixels and the error pixels at each threshold.
    """

    thresholds: np.ndarray
    ueo: np.ndarray


@dataclass(frozen=True)
class QUBraTSScores:
    """QU-BraTS uncertainty scores (Mehta et al. 2022) of one binary segmentation.

    Attributes:
        thresholds: Uncertainty thresholds on [0, 1] (descending).
        dice: Dice of the pixels kept (uncertainty <= threshold) at each threshold.
        ftp_ratio: Fraction of the true positives filtered out at each threshold.
        ftn_ratio: Fraction of the true negatives filtered out at each threshold.
        auc_dice: Area under ``dice`` over the thresholds.
        auc_ftp: Area under ``ftp_ratio``.
        auc_ftn: Area under ``ftn_ratio``.
        score: ``(auc_dice + (1 - auc_ftp) + (1 - auc_ftn)) / 3`` (higher is better).
    """

    thresholds: np.ndarray
    dice: np.ndarray
    ftp_ratio: np.ndarray
    ftn_ratio: np.ndarray
    auc_dice: float
    auc_ftp: float
    auc_ftn: float
    score: float


def _binary_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """``mask > 0`` for bool/integer masks (float masks must be 0/1)."""
    arr = np.asarray(mask)
    if np.issubdtype(arr.dtype, np.floating) and arr.size and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must be a binary mask or labels, not a probability map")
    return arr > 0


def _check_same_shape(**arrays: np.ndarray) -> None:
    shapes = {name: np.shape(a) for name, a in arrays.items() if a is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"arrays differ in shape: {shapes}")


def error_detection(
    uncertainty: np.ndarray,
    pred_fg: np.ndarray,
    true_fg: np.ndarray,
    mask: np.ndarray | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> ErrorDetection:
    """How well a pixel uncertainty map ranks the wrong pixels first.

    The error label is ``(pred_fg > 0) != (true_fg > 0)``; AUROC and AUPR of ``uncertainty``
    for that label are computed with :func:`auroc` and :func:`aupr`.

    Args:
        uncertainty: Pixel uncertainty (higher = less sure).
        pred_fg: Predicted foreground (bool mask or instance labels; not a probability).
        true_fg: True foreground (bool mask or instance labels).
        mask: Optional boolean mask of the pixels to use.
        max_samples: Score a random subsample of at most this many pixels (None = all).
        seed: Seed of the subsample.

    Returns:
        ``ErrorDetection(auroc, aupr)``; both nan when there are no errors (or only errors).
    """
    _check_same_shape(uncertainty=uncertainty, pred_fg=pred_fg, true_fg=true_fg, mask=mask)
    err = _binary_mask(pred_fg, "pred_fg") != _binary_mask(true_fg, "true_fg")
    u = np.asarray(uncertainty, dtype=np.float64)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        u, err = u[m], err[m]
    u, err = u.reshape(-1), err.reshape(-1)
    if max_samples is not None and u.size > max_samples:
        pick = np.random.default_rng(seed).choice(u.size, size=int(max_samples), replace=False)
        u, err = u[pick], err[pick]
    return ErrorDetection(*auroc_and_aupr(u, err))


def normalize_uncertainty(
    uncertainty: np.ndarray, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Map an uncertainty map to [0, 1].

    ``u' = clip((u - lo) / (hi - lo), 0, 1)`` with ``(lo, hi) = value_range``, or the map's own
    minimum and maximum when ``value_range`` is None (min-max normalisation). A constant map
    becomes all zeros.

    Args:
        uncertainty: Uncertainty values (finite).
        value_range: Known range of the measure, e.g. ``(0, 1)`` for binary entropy in bits.

    Returns:
        A new float64 array in [0, 1].
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    if u.size and not np.all(np.isfinite(u)):
        raise ValueError("uncertainty must be finite")
    if value_range is None:
        if u.size == 0:
            return u.copy()
        lo, hi = float(u.min()), float(u.max())
    else:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            raise ValueError(f"value_range must satisfy low < high, got {value_range}")
    if hi <= lo:
        return np.zeros_like(u)
    return np.clip((u - lo) / (hi - lo), 0.0, 1.0)


def _select(u: np.ndarray, err: np.ndarray, mask: np.ndarray | None) -> tuple:
    _check_same_shape(uncertainty=u, error=err, mask=mask)
    uu = np.asarray(u)
    ee = _binary_mask(err, "error")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        uu, ee = uu[m], ee[m]
    return uu.reshape(-1), ee.reshape(-1)


def ueo_curve(
    uncertainty: np.ndarray,
    error: np.ndarray,
    thresholds: Sequence[float] | np.ndarray | None = None,
    value_range: tuple[float, float] | None = None,
    mask: np.ndarray | None = None,
) -> UEOCurve:
    """Uncertainty-Error Overlap (Jungo & Reyes 2019) at each threshold.

    The uncertainty is first normalised to [0, 1] (:func:`normalize_uncertainty`; min-max
    over the selected pixels unless ``value_range`` is given). At threshold ``t`` the flagged
    pixels are ``U_t = {u' > t}`` and ``UEO(t) = 2 |U_t ∩ E| / (|U_t| + |E|)`` (Dice with the
    error mask ``E``); 1 when both are empty.

    Args:
        uncertainty: Pixel uncertainty.
        error: Boolean error mask of the same shape (e.g. ``pred_fg != true_fg``).
        thresholds: Thresholds on [0, 1]; default ``linspace(0, 1, 101)``.
        value_range: Known range of the uncertainty (None = min-max).
        mask: Optional boolean mask of the pixels to use.

    Returns:
        A :class:`UEOCurve`.
    """
    u, e = _select(uncertainty, error, mask)
    un = normalize_uncertainty(u, value_range)
    ths = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds, float)
    ths = np.atleast_1d(ths).astype(np.float64)
    order = np.argsort(un, kind="stable")
    u_sorted = un[order]
    # errors among the pixels at or after each sorted position
    err_suffix = np.r_[np.cumsum(e[order][::-1])[::-1], 0]
    first_flagged = np.searchsorted(u_sorted, ths, side="right")
    n_flagged = un.size - first_flagged
    tp = err_suffix[first_flagged]
    n_err = int(np.count_nonzero(e))
    den = n_flagged + n_err
    ueo = np.where(den > 0, 2.0 * tp / np.maximum(den, 1), 1.0)
    return UEOCurve(thresholds=ths, ueo=ueo.astype(np.float64))


def best_ueo(
    uncertainty: np.ndarray,
    error: np.ndarray,
    thresholds: Sequence[float] | np.ndarray | None = None,
    value_range: tuple[float, float] | None = None,
    mask: np.ndarray | None = None,
) -> tuple[float, float]:
    """Maximum Uncertainty-Error Overlap over the thresholds (see :func:`ueo_curve`).

    Returns:
        ``(ueo, threshold)`` at the best (lowest, on ties) threshold on the normalised scale.
    """
    curve = ueo_curve(uncertainty, error, thresholds, value_range, mask)
    k = int(np.argmax(curve.ueo))
    return float(curve.ueo[k]), float(curve.thresholds[k])


def qubrats_scores(
    uncertainty: np.ndarray,
    pred_fg: np.ndarray,
    true_fg: np.ndarray,
    thresholds: Sequence[float] = QUBRATS_THRESHOLDS,
    value_range: tuple[float, float] | None = None,
    mask: np.ndarray | None = None,
) -> QUBraTSScores:
    """QU-BraTS uncertainty score of a binary segmentation.

    From Mehta et al. 2022, "QU-BraTS: MICCAI BraTS 2020 Challenge on Quantifying
    Uncertainty in Brain Tumor Segmentation" (MELBA), reference code RagMeh11/QU-BraTS.
    The uncertainty is normalised to [0, 1] (the paper's [0, 100] divided by 100). For each
    threshold ``tau`` the pixels with ``u' > tau`` are filtered out (marked uncertain), and

    * ``Dice(tau)`` = Dice of truth and prediction restricted to the kept pixels
      (1 when both are empty there),
    * ``FTP(tau) = (TP_all - TP_kept(tau)) / TP_all`` (0 when ``TP_all = 0``),
    * ``FTN(tau) = (TN_all - TN_kept(tau)) / TN_all`` (0 when ``TN_all = 0``).

    With ``AUC_m`` the trapezoid area under ``m(tau)`` over ``tau`` divided by the range of
    ``tau`` (1 for the default ``{1, 0.75, 0.5, 0.25, 0}``),
    ``score = (AUC_Dice + (1 - AUC_FTP) + (1 - AUC_FTN)) / 3``. A good uncertainty keeps
    Dice high while filtering few correct pixels.

    Args:
        uncertainty: Pixel uncertainty.
        pred_fg: Predicted foreground (bool mask or instance labels).
        true_fg: True foreground (bool mask or instance labels).
        thresholds: Thresholds on [0, 1].
        value_range: Known range of the uncertainty (None = min-max over the pixels used).
        mask: Optional boolean mask of the pixels to use (the paper's brain mask).

    Returns:
        A :class:`QUBraTSScores`.
    """
    _check_same_shape(uncertainty=uncertainty, pred_fg=pred_fg, true_fg=true_fg, mask=mask)
    p = _binary_mask(pred_fg, "pred_fg")
    t = _binary_mask(true_fg, "true_fg")
    u = np.asarray(uncertainty)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        u, p, t = u[m], p[m], t[m]
    u = normalize_uncertainty(u.reshape(-1), value_range)
    p, t = p.reshape(-1), t.reshape(-1)
    ths = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if ths.size < 1:
        raise ValueError("thresholds must not be empty")
    tp_all = p & t
    tn_all = ~p & ~t
    n_tp, n_tn = int(np.count_nonzero(tp_all)), int(np.count_nonzero(tn_all))
    dice, ftp, ftn = [], [], []
    for tau in ths:
        keep = u <= tau
        inter = int(np.count_nonzero(tp_all & keep))
        den = int(np.count_nonzero(p & keep)) + int(np.count_nonzero(t & keep))
        dice.append(1.0 if den == 0 else 2.0 * inter / den)
        ftp.append(0.0 if n_tp == 0 else (n_tp - inter) / n_tp)
        kept_tn = int(np.count_nonzero(tn_all & keep))
        ftn.append(0.0 if n_tn == 0 else (n_tn - kept_tn) / n_tn)
    dice_a, ftp_a, ftn_a = (np.asarray(v, np.float64) for v in (dice, ftp, ftn))
    auc_d, auc_p, auc_n = (mean_height(ths, v) for v in (dice_a, ftp_a, ftn_a))
    return QUBraTSScores(
        thresholds=ths,
        dice=dice_a,
        ftp_ratio=ftp_a,
        ftn_ratio=ftn_a,
        auc_dice=auc_d,
        auc_ftp=auc_p,
        auc_ftn=auc_n,
        score=(auc_d + (1.0 - auc_p) + (1.0 - auc_n)) / 3.0,
    )
