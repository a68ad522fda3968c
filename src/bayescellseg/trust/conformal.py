"""Split-conformal intervals and review rules with a stated guarantee.

* :func:`conformal_quantile`: the ``ceil((n + 1)(1 - alpha))``-th smallest of n calibration
  scores. For a new exchangeable score ``s``, ``P(s <= q) >= 1 - alpha``.
* :func:`review_threshold`: the lowest threshold ``tau`` on the predicted score such that the
  calibration images with ``predicted >= tau`` (the ones *not* flagged) score at least
  ``min_quality`` with rate ``>= 1 - alpha``, certified by Learn-then-Test (Angelopoulos et al.
  2021): for each candidate ``tau``, from the highest down, the binomial test of
  ``H0: P(score < q | kept) > alpha`` on the kept calibration images; the walk stops at the first
  ``tau`` it cannot reject at level ``delta`` (fixed-sequence testing, so the whole family is at
  level ``delta``). The walk starts at the first ``tau`` that keeps enough images for the test
  to reject at all (:func:`min_testable`: 22 for ``alpha = delta = 0.1``); this order depends on
  the predicted scores only, not on the true ones, so the tests stay valid. With probability ``>= 1 - delta`` over the calibration set, the rate holds on
  new images exchangeable with it.
* :func:`flag_lowest`: a review budget, the given fraction of a batch with the lowest predicted
  scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """Split-conformal quantile of calibration scores.

    Args:
        scores: (n,) finite calibration non-conformity scores (e.g. absolute residuals).
        alpha: Miscoverage level in (0, 1).

    Returns:
        The ``ceil((n + 1)(1 - alpha))``-th smallest score; ``inf`` when that rank exceeds n
        (too few calibration scores for the level).
    """
    s = np.sort(np.asarray(scores, np.float64).reshape(-1))
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    k = math.ceil((s.size + 1) * (1.0 - alpha))
    return math.inf if k > s.size else float(s[k - 1])


@dataclass(frozen=True)
class ReviewRule:
    """Images with ``predicted_score < threshold`` are flagged for review.

    Attributes:
        threshold: The predicted-score threshold (``inf``: every image is flagged).
        min_quality: The score the unflagged images should reach.
        alpha: Allowed rate of unflagged images below ``min_quality``.
        delta: Probability that the calibration set was unlucky (the rate fails).
        n_calibration: Calibration images.
        n_kept_calibration: Calibration images the rule keeps.
        calibration_rate: Share of those that score at least ``min_quality``.
    """

    threshold: float
    min_quality: float
    alpha: float
    delta: float
    n_calibration: int
    n_kept_calibration: int
    calibration_rate: float

    def flags(self, predicted: np.ndarray) -> np.ndarray:
        """Bool per image: flagged for review."""
        return ~(np.asarray(predicted, np.float64) >= self.threshold)

    def statement(self, what: str = "DSB score", data: str = "the calibration data") -> str:
        """The guarantee in words."""
        if not math.isfinite(self.threshold):
            return (f"no image can be left unreviewed: on {data} no predicted-score threshold "
                    f"keeps {1 - self.alpha:.0%} of images at {what} >= {self.min_quality:g}")  # fmt: skip
        return (
            f"of the images not flagged, at least {1 - self.alpha:.0%} have {what} >= "
            f"{self.min_quality:g} (confidence {1 - self.delta:.0%}, on data like {data}; "
            f"flagged: predicted score < {self.threshold:.3f})"
        )


def min_testable(alpha: float, delta: float) -> int:
    """Fewest kept images whose test can reject at all: ``(1 - alpha)^n <= delta``."""
    return max(1, math.ceil(math.log(delta) / math.log(1.0 - alpha) - 1e-12))


def review_threshold(
    predicted: np.ndarray,
    true: np.ndarray,
    min_quality: float,
    alpha: float = 0.1,
    delta: float = 0.1,
) -> ReviewRule:
    """Learn-then-Test threshold on the predicted score for "unflagged images score >= q".

    Args:
        predicted: (n,) predicted scores of the calibration images (from models not fitted on
            them).
        true: (n,) their true scores.
        min_quality: The quality ``q`` the unflagged images must reach.
        alpha: Allowed rate of unflagged images with a true score below ``q``.
        delta: Level of the test (the guarantee holds with probability ``1 - delta``).

    Returns:
        The rule (threshold ``inf`` when even the highest candidate cannot be certified).
    """
    p = np.asarray(predicted, np.float64).reshape(-1)
    t = np.asarray(true, np.float64).reshape(-1)
    if p.shape != t.shape or not (np.all(np.isfinite(p)) and np.all(np.isfinite(t))):
        raise ValueError("predicted and true must be finite and of equal size")
    if not (0 < alpha < 1 and 0 < delta < 1):
        raise ValueError("alpha and delta must be in (0, 1)")
    bad = t < min_quality
    threshold, kept, good_rate = math.inf, 0, math.nan
    n_min = min_testable(alpha, delta)
    for tau in np.unique(p)[::-1]:
        keep = p >= tau
        n_keep, n_bad = int(keep.sum()), int(bad[keep].sum())
        if n_keep < n_min:
            continue  # too few kept images to reject even with none below q: not tested
        if stats.binom.cdf(n_bad, n_keep, alpha) > delta:
            break
        threshold, kept, good_rate = float(tau), n_keep, 1.0 - n_bad / n_keep
    return ReviewRule(
        threshold=threshold,
        min_quality=float(min_quality),
        alpha=float(alpha),
        delta=float(delta),
        n_calibration=int(p.size),
        n_kept_calibration=kept,
        calibration_rate=good_rate,
    )


def flag_lowest(predicted: np.ndarray, fraction: float) -> np.ndarray:
    """Flag ``ceil(fraction * n)`` images with the lowest predicted scores (ties: first seen).

    Args:
        predicted: (n,) predicted scores of a batch.
        fraction: Review budget in [0, 1].

    Returns:
        (n,) bool, True = flagged.
    """
    p = np.asarray(predicted, np.float64).reshape(-1)
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    k = math.ceil(fraction * p.size - 1e-9)
    flags = np.zeros(p.size, bool)
    flags[np.argsort(p, kind="stable")[:k]] = True
    return flags


def conformal_pvalues(
    predicted: np.ndarray, cal_predicted: np.ndarray, cal_true: np.ndarray, min_quality: float
) -> np.ndarray:
    """Conformal p-values of ``H0_j: score_j < min_quality`` (Jin & Candes 2023, clipped score).

    ``p_j = (1 + #{calibration i: true_i < q and predicted_i >= predicted_j}) / (n + 1)``: small
    when few calibration images predicted at least as high as image ``j`` fell below ``q``.

    Args:
        predicted: (m,) predicted scores of the new images.
        cal_predicted: (n,) predicted scores of the calibration images.
        cal_true: (n,) their true scores.
        min_quality: ``q``.

    Returns:
        (m,) p-values in (0, 1].
    """
    p = np.asarray(predicted, np.float64).reshape(-1)
    cp = np.asarray(cal_predicted, np.float64).reshape(-1)
    ct = np.asarray(cal_true, np.float64).reshape(-1)
    if cp.shape != ct.shape:
        raise ValueError("cal_predicted and cal_true differ in size")
    bad = np.sort(cp[ct < min_quality])
    at_or_above = bad.size - np.searchsorted(bad, p, side="left")
    return (1.0 + at_or_above) / (cp.size + 1.0)


def conformal_selection(
    predicted: np.ndarray,
    cal_predicted: np.ndarray,
    cal_true: np.ndarray,
    min_quality: float,
    alpha: float = 0.1,
) -> np.ndarray:
    """Which images of a batch can be left unreviewed: Benjamini-Hochberg on conformal p-values.

    Conformal selection (Jin & Candes 2023): with calibration and new images exchangeable, the
    expected share of unflagged images with a true score below ``min_quality`` is at most
    ``alpha`` (the false discovery rate of the selection).

    Args:
        predicted: (m,) predicted scores of the batch.
        cal_predicted: (n,) predicted scores of the calibration images (out-of-fold).
        cal_true: (n,) their true scores.
        min_quality: ``q``.
        alpha: Allowed expected share of unflagged images below ``q``.

    Returns:
        (m,) bool, True = flagged for review (not selected).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    pv = conformal_pvalues(predicted, cal_predicted, cal_true, min_quality)
    m = pv.size
    if m == 0:
        return np.zeros(0, bool)
    ranked = np.sort(pv)
    passing = np.flatnonzero(ranked <= alpha * np.arange(1, m + 1) / m)
    if passing.size == 0:
        return np.ones(m, bool)
    cutoff = alpha * (passing[-1] + 1) / m
    return ~(pv <= cutoff)
