"""The trust signals of one prediction: what ``predict`` adds per image and per nucleus.

:func:`trust_signals` is the one call the predict pipeline makes per image. It returns the
predicted DSB score with its interval (and the same for AP50), the out-of-distribution scores and
flag (:func:`ood_decision`: the image features' distance and, when ``trust.json`` has it, the
network bottleneck's; flagged when either is above its threshold), and per nucleus ``p_correct`` and its review flag. The image's review decision for a
``--min-quality`` rule is made here too; a ``--review-fraction`` budget needs the whole batch
(:func:`~bayescellseg.trust.conformal.flag_lowest` on the batch's predicted scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayescellseg.errors import InputError
from bayescellseg.trust.conformal import ReviewRule, conformal_selection, flag_lowest
from bayescellseg.trust.features import ResultLike, image_features, nucleus_features
from bayescellseg.trust.model import TRUST_FILE, TrustModel, finite_or_none

SUMMARY_COLUMNS = (
    "predicted_score", "predicted_score_low", "predicted_score_high", "predicted_ap50",
    "predicted_ap50_low", "predicted_ap50_high", "ood_score", "ood_bottleneck_score", "ood_level",
    "ood",
)  # fmt: skip
"""Keys :meth:`TrustSignals.summary` adds to an image summary (``summary.csv`` columns)."""


@dataclass(frozen=True)
class TrustSignals:
    """Trust signals of one image.

    Attributes:
        predicted_score: Predicted DSB score in [0, 1].
        predicted_score_low: Lower end of its interval.
        predicted_score_high: Upper end of its interval.
        predicted_ap50: Predicted AP at IoU 0.5.
        predicted_ap50_low: Lower end of its interval.
        predicted_ap50_high: Upper end of its interval.
        ood_score: Mahalanobis distance of the image features to the fitting images'.
        ood: Whether ``ood_score`` or ``ood_bottleneck_score`` exceeds its threshold.
        p_correct: (N,) probability that each nucleus matches a true one at IoU > 0.5.
        nucleus_needs_review: (N,) ``p_correct`` below the model's ``review_below``.
        reasons: Why the image needs review on these signals (empty: no reason).
        ood_bottleneck_score: Mahalanobis distance of the network's bottleneck statistic to the
            fitting images' (NaN: ``trust.json`` or the prediction has none).
        ood_level: The larger of the two distances, each divided by its threshold (above 1:
            flagged; with the image features alone ``ood_score / threshold``).
    """

    predicted_score: float
    predicted_score_low: float
    predicted_score_high: float
    predicted_ap50: float
    predicted_ap50_low: float
    predicted_ap50_high: float
    ood_score: float
    ood: bool
    p_correct: np.ndarray
    nucleus_needs_review: np.ndarray
    reasons: tuple[str, ...] = field(default_factory=tuple)
    ood_bottleneck_score: float = math.nan
    ood_level: float = math.nan

    def summary(self) -> dict[str, Any]:
        """The per-image values keyed by :data:`SUMMARY_COLUMNS` (JSON-ready)."""
        out: dict[str, Any] = {k: finite_or_none(getattr(self, k)) for k in SUMMARY_COLUMNS[:-1]}
        out["ood"] = bool(self.ood)
        return out


@dataclass(frozen=True)
class OODDecision:
    """The out-of-distribution decision of one image.

    Attributes:
        score: Distance of the image features.
        bottleneck_score: Distance of the bottleneck statistic (NaN: not measured).
        level: The larger distance-to-threshold ratio.
        ood: Whether either distance is above its threshold.
        reason: The ``needs_review`` reason ("" when not flagged).
    """

    score: float
    bottleneck_score: float
    level: float
    ood: bool
    reason: str


def ood_decision(
    features: np.ndarray, bottleneck: np.ndarray | None, trust: TrustModel
) -> OODDecision:
    """Combine the image-feature and bottleneck OOD distances (see :class:`OODDecision`).

    Args:
        features: (k,) image features.
        bottleneck: (2C,) bottleneck statistic of the prediction, or None.
        trust: The trust models (``trust.ood_bottleneck`` may be None).

    Raises:
        InputError: A bottleneck statistic of another length than the trust model was fitted
            on (a ``trust.json`` of another network).
    """
    distance = float(trust.ood.distance(features[None, :])[0])
    measured = [("image features", distance, trust.ood.threshold)]
    b_distance, second = math.nan, trust.ood_bottleneck
    if second is not None and bottleneck is not None:
        vector = np.asarray(bottleneck, np.float64).reshape(1, -1)
        if vector.shape[1] != second.n_features:
            raise InputError(TRUST_FILE, f"bottleneck statistic of {vector.shape[1]} values, but "
                             f"its bottleneck OOD model was fitted on {second.n_features}")  # fmt: skip
        b_distance = float(second.distance(vector)[0])
        measured.append(("network bottleneck", b_distance, second.threshold))
    level = max(_ratio(d, t) for _, d, t in measured)
    fired = [(name, d, t) for name, d, t in measured if d > t]
    if second is None:  # the text of files without a bottleneck model, unchanged
        reason = "; ".join(f"distance {d:.1f} > {t:.1f}" for _, d, t in fired)
    else:
        reason = "; ".join(f"{name}: distance {d:.1f} > {t:.1f}" for name, d, t in fired)
    if reason:
        reason = (f"unlike the images the trust model was fitted on ({reason}): the predicted "
                  "score may be wrong")  # fmt: skip
    return OODDecision(distance, b_distance, level, bool(fired), reason)


def _ratio(distance: float, threshold: float) -> float:
    """``distance / threshold`` (infinite above a zero threshold, 0 at it)."""
    if threshold > 0:
        return distance / threshold
    return math.inf if distance > threshold else 0.0


def trust_signals(
    result: ResultLike,
    trust: TrustModel,
    fg_threshold: float = 0.5,
    rule: ReviewRule | None = None,
) -> TrustSignals:
    """Predicted score and interval, OOD flag, ``p_correct`` and review reasons of one image.

    Args:
        result: The prediction (a :class:`~bayescellseg.inference.segmenter.Result`).
        trust: The model folder's fitted trust models.
        fg_threshold: The model's foreground threshold (its ``postprocess.fg_threshold``).
        rule: A ``--min-quality`` review rule (from ``trust.scores["dsb"].review_rule``), or
            None for no score-based review.

    Returns:
        The signals (the bottleneck OOD distance from ``result.bottleneck`` when the result and
        ``trust`` both have one); ``reasons`` names the OOD flag and a predicted score below the rule's
        threshold.
    """
    x = image_features(result, fg_threshold)
    row = x[None, :]
    dsb, dsb_low, dsb_high = (float(v[0]) for v in trust.scores["dsb"].predict(row))
    ap50, ap50_low, ap50_high = (float(v[0]) for v in trust.scores["ap50"].predict(row))
    ood = ood_decision(x, getattr(result, "bottleneck", None), trust)
    nuclei = nucleus_features(result, x)
    p_correct = trust.nucleus.predict_proba(nuclei) if len(nuclei) else np.zeros(0)
    reasons = [ood.reason] if ood.ood else []
    if rule is not None and bool(rule.flags(np.array([dsb]))[0]):
        reasons.append(
            f"predicted DSB score {dsb:.2f} below the {rule.threshold:.2f} that guarantees "
            f"{1 - rule.alpha:.0%} of unflagged images >= {rule.min_quality:g}"
        )
    return TrustSignals(
        predicted_score=dsb,
        predicted_score_low=dsb_low,
        predicted_score_high=dsb_high,
        predicted_ap50=ap50,
        predicted_ap50_low=ap50_low,
        predicted_ap50_high=ap50_high,
        ood_score=ood.score,
        ood=ood.ood,
        p_correct=p_correct,
        nucleus_needs_review=p_correct < trust.nucleus_review_below,
        reasons=tuple(reasons),
        ood_bottleneck_score=ood.bottleneck_score,
        ood_level=ood.level,
    )


@dataclass(frozen=True)
class BatchReview:
    """The review decision over a batch of images.

    Attributes:
        flagged: (n,) bool, True = the image needs review.
        reasons: (n,) the reason of each flagged image ("" when not flagged).
        statement: The guarantee (or budget) in words, to print and store.
    """

    flagged: np.ndarray
    reasons: tuple[str, ...]
    statement: str


def review_batch(
    predicted: np.ndarray,
    trust: TrustModel,
    min_quality: float | None = None,
    review_fraction: float | None = None,
    alpha: float = 0.1,
) -> BatchReview:
    """Which images of a predicted batch to review: ``--min-quality`` or ``--review-fraction``.

    ``min_quality``: conformal selection (Benjamini-Hochberg on conformal p-values against the
    trust model's calibration pairs): of the unflagged images, in expectation at least
    ``1 - alpha`` have a DSB score >= ``min_quality``, on images like the calibration images.
    ``review_fraction``: the share of the batch with the lowest predicted scores.

    Args:
        predicted: (n,) predicted DSB scores of the batch (:attr:`TrustSignals.predicted_score`).
        trust: The model folder's trust models.
        min_quality: Needed quality (exclusive with ``review_fraction``).
        review_fraction: Review budget in [0, 1].
        alpha: Allowed expected share of unflagged images below ``min_quality``.

    Raises:
        ValueError: Neither or both of ``min_quality`` and ``review_fraction``.
    """
    if (min_quality is None) == (review_fraction is None):
        raise ValueError("give exactly one of min_quality and review_fraction")
    p = np.asarray(predicted, np.float64).reshape(-1)
    sources = ", ".join(f"{k} {v}" for k, v in trust.provenance.get("sources", {}).items())
    if min_quality is not None:
        cal = trust.scores["dsb"]
        flags = conformal_selection(p, cal.calibration_predicted, cal.calibration_true,
                                    min_quality, alpha)  # fmt: skip
        reason = f"not certified to reach DSB score {min_quality:g} (predicted {{:.2f}})"
        statement = (
            f"{int((~flags).sum())} of {p.size} images not flagged: in expectation at least "
            f"{1 - alpha:.0%} of the images not flagged have a DSB score >= {min_quality:g}, "
            f"on data like the calibration data ({sources or 'see trust.json'})"
        )
    else:
        flags = flag_lowest(p, float(review_fraction))
        reason = "among the lowest predicted scores of the batch (predicted {:.2f})"
        statement = (
            f"review budget {review_fraction:.0%}: the {int(flags.sum())} of {p.size} images "
            "with the lowest predicted DSB score are flagged"
        )
    reasons = tuple(reason.format(v) if f else "" for v, f in zip(p, flags, strict=True))
    return BatchReview(flagged=flags, reasons=reasons, statement=statement)
