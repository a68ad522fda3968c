"""The trust signals of scored images, and how well they hold against truth (``metrics.json``).

A prediction carries an :class:`ImageTrust` when the model folder has a ``trust.json`` (with
``evaluate --model``: the signals are computed in memory, as ``predict`` does) or when a
``predict`` folder's ``name_summary.json`` holds the trust fields (``predicted_score``, ...)
and its ``name_nuclei.csv`` a ``p_correct`` column. :func:`trust_block` gathers the scored
images into a :class:`~bayescellseg.trust.measures.TrustBatch` and measures it with
:func:`~bayescellseg.trust.measures.trust_measures`; without any signal it says why they are
absent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayescellseg.trust.measures import TrustBatch, trust_measures
from bayescellseg.trust.model import TrustModel
from bayescellseg.trust.signals import TrustSignals, review_batch

TRUST_COLUMNS = (
    "predicted_score", "predicted_score_low", "predicted_score_high", "ood_score",
    "ood_bottleneck_score", "ood_level", "ood",
)  # fmt: skip
"""The ``per_image.csv`` columns added when the images carry trust signals."""


@dataclass(frozen=True)
class ImageTrust:
    """The trust signals of one predicted image.

    Attributes:
        predicted_score: Predicted DSB score.
        predicted_score_low: Lower end of its interval.
        predicted_score_high: Upper end of its interval.
        ood_score: Distance of the image's features to the fitting images'.
        ood: Whether the image was flagged as unlike the fitting images.
        p_correct: Nucleus label -> probability that it matches a true nucleus at IoU > 0.5.
        ood_bottleneck_score: Distance of the network's bottleneck statistic (NaN: none).
        ood_level: The larger of the distances over their thresholds (1: the flag line; NaN:
            unknown, e.g. a ``predict`` folder written before it existed).
    """

    predicted_score: float
    predicted_score_low: float
    predicted_score_high: float
    ood_score: float
    ood: bool
    p_correct: Mapping[int, float] = field(default_factory=dict)
    ood_bottleneck_score: float = math.nan
    ood_level: float = math.nan

    def row(self) -> dict[str, Any]:
        """The :data:`TRUST_COLUMNS` values of ``per_image.csv``."""
        return {name: getattr(self, name) for name in TRUST_COLUMNS}


def trust_from_signals(signals: TrustSignals, labels: Sequence[int]) -> ImageTrust:
    """The :class:`ImageTrust` of signals computed in memory.

    Args:
        signals: :func:`~bayescellseg.trust.signals.trust_signals` of the image.
        labels: The label of each nucleus, in the order of ``signals.p_correct``.
    """
    p = dict(zip((int(i) for i in labels), (float(v) for v in signals.p_correct), strict=True))
    return ImageTrust(
        predicted_score=signals.predicted_score,
        predicted_score_low=signals.predicted_score_low,
        predicted_score_high=signals.predicted_score_high,
        ood_score=signals.ood_score,
        ood=bool(signals.ood),
        p_correct=p,
        ood_bottleneck_score=signals.ood_bottleneck_score,
        ood_level=signals.ood_level,
    )


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def trust_from_summary(
    summary: Mapping[str, Any], p_correct: Mapping[int, float]
) -> ImageTrust | None:
    """The :class:`ImageTrust` of a ``name_summary.json`` (None: it holds no predicted score).

    Args:
        summary: The image's summary (``predicted_score``, ``predicted_score_low``,
            ``predicted_score_high``, ``ood_score``, ``ood_bottleneck_score``, ``ood_level``,
            ``ood``; a missing bound or OOD score is NaN).
        p_correct: The ``p_correct`` column of its nucleus table (label -> value).
    """
    score = _number(summary.get("predicted_score"))
    if not math.isfinite(score):
        return None
    return ImageTrust(
        predicted_score=score,
        predicted_score_low=_number(summary.get("predicted_score_low")),
        predicted_score_high=_number(summary.get("predicted_score_high")),
        ood_score=_number(summary.get("ood_score")),
        ood=summary.get("ood") is True,
        p_correct=dict(p_correct),
        ood_bottleneck_score=_number(summary.get("ood_bottleneck_score")),
        ood_level=_number(summary.get("ood_level")),
    )


@dataclass(frozen=True)
class TrustRequest:
    """What ``evaluate`` measures of the trust signals.

    Attributes:
        model: The trust models the predictions were made with (the review rule, the stated
            coverage and the OOD threshold need them), None when unknown.
        min_quality: ``--min-quality`` of the review rule to check (None: no rule).
        alpha: The rule's allowed share of unflagged images below ``min_quality``.
        review_fraction: Review budget whose oracle-gain share is measured.
    """

    model: TrustModel | None = None
    min_quality: float | None = None
    alpha: float = 0.1
    review_fraction: float = 0.2


@dataclass(frozen=True)
class ScoredTrust:
    """One scored image's trust signals beside its truth.

    Attributes:
        dataset: Dataset name.
        trust: Its signals.
        dsb: True DSB score.
        nucleus_p_correct: ``p_correct`` of each predicted nucleus (NaN where unknown).
        nucleus_has_match: Whether each has a true match at IoU > 0.5.
    """

    dataset: str
    trust: ImageTrust
    dsb: float
    nucleus_p_correct: np.ndarray
    nucleus_has_match: np.ndarray


def trust_batch(scored: Sequence[ScoredTrust], flagged: np.ndarray | None = None) -> TrustBatch:
    """The :class:`TrustBatch` of scored images (nuclei without ``p_correct`` left out)."""
    p = np.concatenate([s.nucleus_p_correct for s in scored]) if scored else np.zeros(0)
    y = np.concatenate([s.nucleus_has_match for s in scored]) if scored else np.zeros(0, bool)
    nuc_ds = [np.full(s.nucleus_p_correct.size, s.dataset, dtype=object) for s in scored]
    nuc_ds = np.concatenate(nuc_ds) if scored else np.zeros(0, object)
    known = np.isfinite(p)

    def column(name: str) -> np.ndarray:
        return np.array([getattr(s.trust, name) for s in scored], np.float64)

    return TrustBatch(
        datasets=np.array([s.dataset for s in scored], dtype=object),
        predicted=column("predicted_score"),
        low=column("predicted_score_low"),
        high=column("predicted_score_high"),
        true=np.array([s.dsb for s in scored], np.float64),
        ood_score=column("ood_score"),
        ood=np.array([s.trust.ood for s in scored], bool),
        nucleus_dataset=nuc_ds[known],
        p_correct=p[known],
        correct=np.asarray(y, bool)[known],
        flagged=flagged,
        ood_level=column("ood_level"),
    )


def _review(predicted: np.ndarray, request: TrustRequest) -> tuple[np.ndarray | None, str | None]:
    """The ``--min-quality`` rule's flags over the batch (as ``predict`` flags its batch) and its
    statement; (None, None) without a rule, (None, why) when it cannot be applied."""
    if request.min_quality is None:
        return None, None
    if request.model is None:
        return None, "not measured: the trust model the predictions were made with is unknown"
    review = review_batch(predicted, request.model, min_quality=request.min_quality,
                          alpha=request.alpha)  # fmt: skip
    return review.flagged, review.statement


def _stated(model: TrustModel | None) -> dict[str, Any]:
    if model is None:
        return {"stated_coverage": None, "ood_threshold": None, "ood_bottleneck_threshold": None}
    second = model.ood_bottleneck
    return {"stated_coverage": 1.0 - model.scores["dsb"].alpha,
            "ood_threshold": model.ood.threshold,
            "ood_bottleneck_threshold": None if second is None else second.threshold}  # fmt: skip


def trust_block(scored: Sequence[ScoredTrust], n_images: int, request: TrustRequest) -> dict:
    """The ``metrics.json["trust"]`` block.

    Args:
        scored: The scored images that carry trust signals.
        n_images: Number of scored images in all (with or without signals).
        request: The trust models, review rule and budget to measure.

    Returns:
        ``{"available": False, "reason"}`` without signals; else ``available``, the counts, the
        rule (``min_quality``, ``alpha``, ``review_statement``; without a trust model or
        ``min_quality`` no ``review`` entry is measured), ``review_fraction``,
        ``stated_coverage``, ``ood_threshold`` and ``ood_bottleneck_threshold`` (None when the
        trust model is unknown or has no bottleneck OOD model), and
        :func:`~bayescellseg.trust.measures.trust_measures`'s ``overall`` and ``datasets``.
    """
    if not scored:
        return {"available": False, "reason": "no image carries trust signals (the model "
                "folder has no trust.json, or the predictions were made without one)"}  # fmt: skip
    predicted = np.array([s.trust.predicted_score for s in scored], np.float64)
    flagged, statement = _review(predicted, request)
    min_quality = request.min_quality if flagged is not None else None
    batch = trust_batch(scored, flagged)
    measured = trust_measures(batch, min_quality, request.alpha, request.review_fraction)
    return {
        "available": True,
        "n_images": len(scored),
        "n_images_without": n_images - len(scored),
        "min_quality": request.min_quality,
        "alpha": request.alpha,
        "review_statement": statement,
        "review_fraction": request.review_fraction,
        **_stated(request.model),
        **measured,
    }
