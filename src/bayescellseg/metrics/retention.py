"""Retention (referral) curves: image quality after referring the most uncertain images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bayescellseg.metrics.ranking import mean_height

__all__ = ["RetentionCurve", "retention_curve"]


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
        auc_model=mean_height(f, model),
        auc_random=mean_height(f, random),
        auc_oracle=mean_height(f, oracle),
        n_images=n,
        referred_score=None if referred_score is None else float(referred_score),
    )
