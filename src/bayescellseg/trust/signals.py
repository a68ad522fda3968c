"""The trust signals of one prediction: what ``predict`` adds per image and per nucleus.

:func:`trust_signals` is the one call the predict pipeline makes per image. It returns the
predicted DSB score with its interval (and the same for AP50), the out-of-distribution score and
flag, and per nucleus ``p_correct`` and its review flag. The image's review decision for a
``--min-quality`` rule is made here too; a ``--review-fraction`` budget needs the whole batch
(:func:`~bayescellseg.trust.conformal.flag_lowest` on the batch's predicted scores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayescellseg.trust.conformal import ReviewRule
from bayescellseg.trust.features import ResultLike, image_features, nucleus_features
from bayescellseg.trust.model import TrustModel, finite_or_none

SUMMARY_COLUMNS = (
    "predicted_score", "predicted_score_low", "predicted_score_high", "predicted_ap50",
    "predicted_ap50_low", "predicted_ap50_high", "ood_score", "ood",
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
        ood: Whether ``ood_score`` exceeds the model's threshold.
        p_correct: (N,) probability that each nucleus matches a true one at IoU > 0.5.
        nucleus_needs_review: (N,) ``p_correct`` below the model's ``review_below``.
        reasons: Why the image needs review on these signals (empty: no reason).
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

    def summary(self) -> dict[str, Any]:
        """The per-image values keyed by :data:`SUMMARY_COLUMNS` (JSON-ready)."""
        out: dict[str, Any] = {k: finite_or_none(getattr(self, k)) for k in SUMMARY_COLUMNS[:-1]}
        out["ood"] = bool(self.ood)
        return out


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
        The signals; ``reasons`` names the OOD flag and a predicted score below the rule's
        threshold.
    """
    x = image_features(result, fg_threshold)
    row = x[None, :]
    dsb, dsb_low, dsb_high = (float(v[0]) for v in trust.scores["dsb"].predict(row))
    ap50, ap50_low, ap50_high = (float(v[0]) for v in trust.scores["ap50"].predict(row))
    distance = float(trust.ood.distance(row)[0])
    ood = distance > trust.ood.threshold
    nuclei = nucleus_features(result, x)
    p_correct = trust.nucleus.predict_proba(nuclei) if len(nuclei) else np.zeros(0)
    reasons = []
    if ood:
        reasons.append(
            f"unlike the images the trust model was fitted on (distance {distance:.1f} > "
            f"{trust.ood.threshold:.1f}): the predicted score may be wrong"
        )
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
        ood_score=distance,
        ood=bool(ood),
        p_correct=p_correct,
        nucleus_needs_review=p_correct < trust.nucleus_review_below,
        reasons=tuple(reasons),
    )
