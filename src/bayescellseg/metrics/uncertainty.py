"""How useful an uncertainty is: does it point at the errors, at pixel, nucleus and image level?

Pixel level: AUROC / AUPR of the uncertainty for the label "this pixel is wrong", the
Uncertainty-Error Overlap (UEO) and the QU-BraTS filtering scores. Nucleus level: AUROC of
the nucleus uncertainty for "this predicted nucleus has no true match". Image level: Spearman
correlation with the image score and retention (referral) curves.

Higher uncertainty is always taken to mean "more likely wrong".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import integrate, stats

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


@dataclass(frozen=True)
class RetentionCurve:
    """Mean image score when the most uncertain images are referred to an expert.

    Attributes:
        fractions: Referred fractions ``f`` in [0, 1), ascending.
        model: Score with the model's uncertainty ordering (most uncertain referred first).
        random: Expected score with a random ordering.
        oracle: Score with the ideal ordering (worst-scoring referred first).
        auc_model: Mean height of ``model`` over ``f`` (trapezoid area / range of ``f``).
        auc_random: Same for ``random``.
        auc_oracle: Same for ``oracle``.
        n_images: Number of images.
        referred_score: ``None`` if the curve is the mean over kept images, else the score
            assumed for each referred image.
    """

    fractions: np.ndarray
    model: np.ndarray
    random: np.ndarray
    oracle: np.ndarray
    auc_model: float
    auc_random: float
    auc_oracle: float
    n_images: int
    referred_score: float | None

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict."""
        return {
            "fractions": self.fractions.tolist(),
            "model": self.model.tolist(),
            "random": self.random.tolist(),
            "oracle": self.oracle.tolist(),
            "auc_model": self.auc_model,
            "auc_random": self.auc_random,
            "auc_oracle": self.auc_oracle,
            "n_images": self.n_images,
            "referred_score": self.referred_score,
        }


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
    pos, neg = _tie_groups(*_scores_labels(u, err))
    return ErrorDetection(_auroc_from_groups(pos, neg), _aupr_from_groups(pos, neg))


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


def _auc_over(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area of y(x) for any monotone x, divided by the range of x (mean height)."""
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    span = xs[-1] - xs[0]
    if span <= 0:
        return float(ys.mean())
    return float(integrate.trapezoid(ys, xs) / span)


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
    auc_d, auc_p, auc_n = (_auc_over(ths, v) for v in (dice_a, ftp_a, ftn_a))
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


def _expected_kept_sums(order_key: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Expected sum of the ``k`` values with the smallest keys, k = 0..n, ties broken at random.

    Within a group of tied keys every member is equally likely to be kept, so each value is
    replaced by its group mean before the prefix sums.
    """
    order = np.argsort(order_key, kind="stable")
    keys, vals = order_key[order], values[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    group_sum = np.add.reduceat(vals, starts)
    group_size = np.diff(np.r_[starts, keys.size])
    smoothed = np.repeat(group_sum / group_size, group_size)
    return np.r_[0.0, np.cumsum(smoothed)]


def retention_curve(
    uncertainty: np.ndarray,
    scores: np.ndarray,
    fractions: Sequence[float] | np.ndarray | None = None,
    referred_score: float | None = None,
) -> RetentionCurve:
    """Retention (referral) curves: image quality after referring the most uncertain images.

    For a referred fraction ``f`` of ``n`` images, ``k = floor(f n)`` images are referred and
    the curve value is the mean score of the ``n - k`` images kept (``referred_score=None``,
    the usual definition), or ``(sum of kept scores + k * referred_score) / n`` when referred
    images are assumed to be corrected by the expert (e.g. ``referred_score=1.0``).
    Orderings: *model* refers the highest uncertainty first (ties: expected value over a
    random tie order); *random* is the expectation over random orders (the flat mean for the
    usual definition); *oracle* refers the lowest scores first. Each AUC is the trapezoid area
    over ``f`` divided by the range of ``f`` (a mean height; the random AUC equals the mean
    score). A useful uncertainty gives ``auc_random < auc_model <= auc_oracle``.

    Args:
        uncertainty: One uncertainty per image (higher = less trustworthy).
        scores: One quality score per image (e.g. DSB score), same order.
        fractions: Referred fractions in [0, 1); default ``k / n`` for ``k = 0..n-1``.
        referred_score: None, or the score credited to each referred image.

    Returns:
        A :class:`RetentionCurve`.

    Raises:
        ValueError: If the sizes differ, there is no image, a value is not finite or a fraction
            is outside [0, 1).
    """
    u = np.asarray(uncertainty, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if u.size != s.size:
        raise ValueError(f"uncertainty and scores differ in size: {u.size} vs {s.size}")
    n = u.size
    if n == 0:
        raise ValueError("retention_curve needs at least one image")
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(s))):
        raise ValueError("uncertainty and scores must be finite")
    f = np.arange(n) / n if fractions is None else np.asarray(fractions, np.float64).reshape(-1)
    if f.size == 0 or np.any(f < 0) or np.any(f >= 1):
        raise ValueError("fractions must be a non-empty sequence of values in [0, 1)")
    f = np.sort(f)
    n_ref = np.minimum(np.floor(f * n + 1e-9).astype(np.int64), n - 1)
    n_keep = n - n_ref

    def curve(kept_sum: np.ndarray) -> np.ndarray:
        if referred_score is None:
            return kept_sum / n_keep
        return (kept_sum + n_ref * float(referred_score)) / n

    model = curve(_expected_kept_sums(u, s)[n_keep])  # keep the least uncertain
    oracle = curve(_expected_kept_sums(-s, s)[n_keep])  # keep the best scores
    random = curve(n_keep * s.mean())
    return RetentionCurve(
        fractions=f,
        model=model,
        random=random,
        oracle=oracle,
        auc_model=_auc_over(f, model),
        auc_random=_auc_over(f, random),
        auc_oracle=_auc_over(f, oracle),
        n_images=n,
        referred_score=None if referred_score is None else float(referred_score),
    )
