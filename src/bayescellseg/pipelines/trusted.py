"""The trust signals in a ``predict`` run (when the model folder has a ``trust.json``).

Per image (:func:`apply_trust`): the predicted DSB score with its interval (and AP50's), the
out-of-distribution score and flag, and per nucleus ``p_correct``. The nucleus review flag
becomes ``p_correct < 0.5`` (the trust file's ``review_below``), and the image's own flags on
image uncertainty and on the flagged fraction, which flag nearly every image, are dropped: an
image is flagged for being unlike the fitting images (OOD) or for foreground without any
nucleus, and at the end of the batch by the review rule (:func:`batch_review`:
``--min-quality`` or ``--review-fraction`` over the batch's predicted scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bayescellseg.inference.result import Result
from bayescellseg.trust.model import TrustModel
from bayescellseg.trust.signals import TrustSignals, review_batch, trust_signals

#: The image reason kept from the model's own review (a segmentation failure, not a score).
NO_NUCLEUS = "foreground predicted but no nucleus found"


@dataclass(frozen=True)
class ReviewRequest:
    """The batch review rule asked for (``--min-quality`` or ``--review-fraction``).

    Attributes:
        min_quality: Needed DSB score of the unflagged images.
        review_fraction: Share of the batch to review (the lowest predicted scores).
        alpha: Allowed expected share of unflagged images below ``min_quality``.
    """

    min_quality: float | None = None
    review_fraction: float | None = None
    alpha: float = 0.1

    @property
    def active(self) -> bool:
        """Whether a rule was asked for."""
        return self.min_quality is not None or self.review_fraction is not None


def apply_trust(
    result: Result, trust: TrustModel, fg_threshold: float
) -> tuple[Result, TrustSignals]:
    """The result with the trust model's review flags, and its signals.

    Args:
        result: The segmentation (not modified).
        trust: The model folder's trust models.
        fg_threshold: The model's foreground threshold.

    Returns:
        (a new Result whose nuclei are flagged when ``p_correct`` is below the trust file's
        threshold and whose summary is flagged for the OOD reason or :data:`NO_NUCLEUS`, the
        signals).
    """
    signals = trust_signals(result, trust, fg_threshold)
    flags = [bool(f) for f in signals.nucleus_needs_review]
    nuclei = [replace(r, needs_review=f) for r, f in zip(result.nuclei, flags, strict=True)]
    summary = result.summary
    reasons = [NO_NUCLEUS] if summary.n_nuclei == 0 and summary.foreground_fraction > 0 else []
    reasons.extend(signals.reasons)
    n_flagged = sum(flags)
    new_summary = replace(
        summary,
        n_flagged=n_flagged,
        fraction_flagged=n_flagged / summary.n_nuclei if summary.n_nuclei else 0.0,
        needs_review=bool(reasons),
        reasons=tuple(reasons),
    )
    return replace(result, nuclei=nuclei, summary=new_summary), signals


def _score(row: dict[str, Any]) -> float | None:
    value = row.get("predicted_score")
    if row.get("status") != "ok" or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def batch_review(
    rows: list[dict[str, Any]], trust: TrustModel, request: ReviewRequest
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Apply the batch review rule to the ``summary.csv`` rows.

    Args:
        rows: The rows (those with ``status`` ok and a ``predicted_score`` take part).
        trust: The trust models.
        request: The rule (must be :attr:`ReviewRequest.active`).

    Returns:
        (new rows: the flagged ones with ``needs_review`` True and the rule's reason added to
        ``reasons``; the rule's record for ``run_config.json``, with its ``statement``).
    """
    scored = [i for i, row in enumerate(rows) if _score(row) is not None]
    record: dict[str, Any] = {
        "min_quality": request.min_quality,
        "review_fraction": request.review_fraction,
        "alpha": request.alpha,
        "n_images": len(scored),
        "n_flagged": 0,
        "statement": "no image with a predicted score: nothing to review",
    }
    if not scored:
        return [dict(row) for row in rows], record
    predicted = np.array([_score(rows[i]) for i in scored], np.float64)
    decision = review_batch(
        predicted, trust, request.min_quality, request.review_fraction, request.alpha
    )
    out = [dict(row) for row in rows]
    for i, flagged, reason in zip(scored, decision.flagged, decision.reasons, strict=True):
        if flagged:
            before = out[i].get("reasons") or ""
            out[i]["reasons"] = f"{before}; {reason}" if before else reason
            out[i]["needs_review"] = True
    record.update(n_flagged=int(np.sum(decision.flagged)), statement=decision.statement)
    return out, record
