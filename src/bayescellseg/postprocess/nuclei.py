"""Per-nucleus and per-image uncertainty, and the "needs review" flags.

Inputs are the final segmentation (instance labels from the mean maps), the per-pixel maps
(``probability`` = mean foreground probability, ``entropy`` = predictive entropy in bits,
``epistemic`` = mutual information in bits; all in [0, 1]) and, for stochastic models, the
instance segmentations of the individual stochastic samples.

Scores (all in [0, 1], higher = less trustworthy):

* **Stability** of a nucleus: the mean, over samples, of the IoU between the nucleus and its
  best-overlapping nucleus in that sample's own segmentation (0 when nothing overlaps). A nucleus
  that the samples split, merge, shrink or miss gets a low stability.
* **Nucleus uncertainty** = ``1 - stability`` when samples are available. It measures exactly the
  instance-level disagreement that becomes a DSB error (merge, split, missed or spurious nucleus),
  whereas the mean pixel entropy of a nucleus is dominated by its size (the uncertain rim is a
  larger fraction of a small nucleus). Without samples (a deterministic model) it falls back to
  the nucleus's mean predictive entropy.
* **Predicted quality** of an image: the mean, over samples, of the DSB2018 score of the sample
  segmentation against the final one (matches at IoU > 0.5, 0.55, ..., 0.95). It is the score the
  final segmentation would get if a typical sample were the truth, i.e. an expected DSB score
  from sample agreement, and also penalises nuclei that appear only in samples.
* **Image uncertainty** = ``1 - predicted quality`` with samples, with ties broken by the mean
  entropy over the foreground (weight 0.001; never exactly 0 for an image with nuclei: see
  :func:`~bayescellseg.postprocess.agreement.tie_broken_uncertainty`); without samples, the
  mean nucleus uncertainty (or the mean entropy over the predicted foreground when no nucleus
  was found).

Flags (:class:`ReviewThresholds`, stored in a model folder's extras ``review`` and tunable on
validation images with :mod:`bayescellseg.postprocess.tune`): a nucleus needs review when its
uncertainty exceeds ``nucleus_uncertainty``; an image when its uncertainty exceeds
``image_uncertainty``, when more than ``max_flagged_fraction`` of its nuclei are flagged, or when
foreground was predicted but no nucleus survived post-processing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayescellseg.io.tables import json_safe
from bayescellseg.metrics.overlaps import best_match_iou, label_index
from bayescellseg.postprocess.agreement import (
    SampleAgreement,
    sample_agreement,
    tie_broken_uncertainty,
)
from bayescellseg.postprocess.review import ReviewThresholds

__all__ = [
    "NUCLEUS_COLUMNS",
    "REQUIRED_MAPS",
    "ImageSummary",
    "NucleusRecord",
    "ReviewThresholds",
    "SampleAgreement",
    "analyse_segmentation",
    "best_match_iou",
    "image_summary",
    "nucleus_table",
    "records_to_rows",
    "sample_agreement",
]  # ReviewThresholds, SampleAgreement, sample_agreement and best_match_iou are re-exported


REQUIRED_MAPS = ("probability", "entropy", "epistemic")
NUCLEUS_COLUMNS = (
    "label",
    "centroid_y",
    "centroid_x",
    "area",
    "mean_probability",
    "mean_entropy",
    "mean_mutual_information",
    "stability",
    "uncertainty",
    "needs_review",
)


@dataclass(frozen=True)
class NucleusRecord:
    """One row of the per-nucleus table.

    ``stability`` is NaN when no stochastic samples were given.
    """

    label: int
    centroid_y: float
    centroid_x: float
    area: int
    mean_probability: float
    mean_entropy: float
    mean_mutual_information: float
    stability: float
    uncertainty: float
    needs_review: bool

    def to_dict(self) -> dict[str, Any]:
        """Dict in :data:`NUCLEUS_COLUMNS` order; NaN becomes None (empty CSV cell / JSON null)."""
        return {name: json_safe(getattr(self, name)) for name in NUCLEUS_COLUMNS}


@dataclass(frozen=True)
class ImageSummary:
    """Per-image uncertainty and review decision.

    Attributes:
        n_nuclei: Number of nuclei in the final segmentation.
        foreground_fraction: Fraction of pixels in the predicted foreground.
        mean_probability: Mean foreground probability over the predicted foreground.
        mean_entropy: Mean predictive entropy (bits) over the predicted foreground.
        mean_mutual_information: Mean mutual information (bits) over the predicted foreground.
        mean_stability: Mean nucleus stability (NaN without samples or nuclei).
        n_flagged: Number of nuclei flagged for review.
        fraction_flagged: ``n_flagged / n_nuclei`` (0 without nuclei).
        predicted_quality: Expected DSB score from sample agreement (NaN without samples).
        uncertainty: Image uncertainty score (see the module docstring).
        needs_review: Whether the image should be checked by a person.
        reasons: Why it was flagged (empty when not).
    """

    n_nuclei: int
    foreground_fraction: float
    mean_probability: float
    mean_entropy: float
    mean_mutual_information: float
    mean_stability: float
    n_flagged: int
    fraction_flagged: float
    predicted_quality: float
    uncertainty: float
    needs_review: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; NaN becomes None."""
        out = {f.name: json_safe(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["reasons"] = list(self.reasons)
        return out


def _check_inputs(labels: np.ndarray, maps: dict[str, np.ndarray]) -> None:
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    missing = [k for k in REQUIRED_MAPS if k not in maps]
    if missing:
        raise ValueError(f"maps is missing {missing}; required: {list(REQUIRED_MAPS)}")
    for key in REQUIRED_MAPS:
        if maps[key].shape != labels.shape:
            raise ValueError(f"map {key!r} has shape {maps[key].shape}, labels {labels.shape}")


def nucleus_table(
    labels: np.ndarray,
    maps: dict[str, np.ndarray],
    sample_labels: Sequence[np.ndarray] | SampleAgreement | None = None,
    thresholds: ReviewThresholds | None = None,
) -> list[NucleusRecord]:
    """Per-nucleus measurements, uncertainty and review flag.

    Args:
        labels: (H, W) final instance labels (0 = background).
        maps: ``probability``, ``entropy`` and ``epistemic`` (mutual information) maps, (H, W).
        sample_labels: The stochastic samples' instance segmentations, or a precomputed
            :class:`SampleAgreement` for these labels, or None (no samples: stability is NaN and
            the uncertainty is the mean entropy).
        thresholds: Review thresholds; defaults to ``ReviewThresholds()``.

    Returns:
        One record per nucleus, by ascending label.
    """
    labels = np.asarray(labels)
    _check_inputs(labels, maps)
    thresholds = thresholds or ReviewThresholds()
    index = label_index(labels)
    ids, flat, n = index.ids, index.index, index.n
    if n == 0:
        return []
    area = np.bincount(flat, minlength=n + 1)[1:]
    rows, cols = np.indices(labels.shape)

    def mean_of(values: np.ndarray) -> np.ndarray:
        sums = np.bincount(flat, weights=np.asarray(values, np.float64).ravel(), minlength=n + 1)
        return sums[1:] / area

    cy, cx = mean_of(rows), mean_of(cols)
    prob = mean_of(maps["probability"])
    ent = mean_of(maps["entropy"])
    mi = mean_of(maps["epistemic"])

    if sample_labels is None:
        stability = np.full(n, np.nan)
        uncertainty = ent
    else:
        agreement = (
            sample_labels
            if isinstance(sample_labels, SampleAgreement)
            else sample_agreement(labels, sample_labels)
        )
        if not np.array_equal(agreement.labels, ids):
            raise ValueError("the SampleAgreement was computed for different labels")
        stability = agreement.stability
        uncertainty = 1.0 - stability
    flagged = uncertainty > thresholds.nucleus_uncertainty

    return [
        NucleusRecord(
            label=int(ids[i]),
            centroid_y=float(cy[i]),
            centroid_x=float(cx[i]),
            area=int(area[i]),
            mean_probability=float(prob[i]),
            mean_entropy=float(ent[i]),
            mean_mutual_information=float(mi[i]),
            stability=float(stability[i]),
            uncertainty=float(uncertainty[i]),
            needs_review=bool(flagged[i]),
        )
        for i in range(n)
    ]


def image_summary(
    records: Sequence[NucleusRecord],
    maps: dict[str, np.ndarray],
    fg_mask: np.ndarray,
    agreement: SampleAgreement | None = None,
    thresholds: ReviewThresholds | None = None,
) -> ImageSummary:
    """Per-image uncertainty, predicted quality and review decision.

    Args:
        records: The image's nucleus records (from :func:`nucleus_table`).
        maps: ``probability``, ``entropy`` and ``epistemic`` maps, (H, W).
        fg_mask: (H, W) bool predicted foreground (e.g. ``probability > fg_threshold``).
        agreement: Sample agreement of the final segmentation (None without samples).
        thresholds: Review thresholds; defaults to ``ReviewThresholds()``.

    Returns:
        The summary (see the module docstring for the scores).
    """
    thresholds = thresholds or ReviewThresholds()
    fg_mask = np.asarray(fg_mask, dtype=bool)
    _check_inputs(fg_mask, maps)
    n = len(records)
    n_fg = int(fg_mask.sum())

    def fg_mean(key: str) -> float:
        return float(np.asarray(maps[key], np.float64)[fg_mask].mean()) if n_fg else 0.0

    mean_ent = fg_mean("entropy")
    stabilities = np.array([r.stability for r in records], dtype=np.float64)
    mean_stab = float(stabilities.mean()) if n and not np.isnan(stabilities).all() else math.nan
    n_flagged = sum(r.needs_review for r in records)
    fraction_flagged = n_flagged / n if n else 0.0

    if agreement is not None:
        quality = agreement.predicted_quality
        uncertainty = tie_broken_uncertainty(1.0 - quality, mean_ent, n)
    else:
        quality = math.nan
        uncertainty = float(np.mean([r.uncertainty for r in records])) if n else mean_ent

    reasons = []
    if uncertainty > thresholds.image_uncertainty:
        reasons.append(f"image uncertainty {uncertainty:.2f} > {thresholds.image_uncertainty:.2f}")
    if fraction_flagged > thresholds.max_flagged_fraction:
        reasons.append(
            f"{n_flagged} of {n} nuclei flagged "
            f"({fraction_flagged:.0%} > {thresholds.max_flagged_fraction:.0%})"
        )
    if n == 0 and n_fg > 0:
        reasons.append("foreground predicted but no nucleus found")

    return ImageSummary(
        n_nuclei=n,
        foreground_fraction=n_fg / fg_mask.size if fg_mask.size else 0.0,
        mean_probability=fg_mean("probability"),
        mean_entropy=mean_ent,
        mean_mutual_information=fg_mean("epistemic"),
        mean_stability=mean_stab,
        n_flagged=int(n_flagged),
        fraction_flagged=float(fraction_flagged),
        predicted_quality=float(quality),
        uncertainty=float(uncertainty),
        needs_review=bool(reasons),
        reasons=tuple(reasons),
    )


def analyse_segmentation(
    labels: np.ndarray,
    maps: dict[str, np.ndarray],
    fg_mask: np.ndarray,
    sample_labels: Sequence[np.ndarray] | None = None,
    thresholds: ReviewThresholds | None = None,
) -> tuple[list[NucleusRecord], ImageSummary]:
    """:func:`nucleus_table` and :func:`image_summary` sharing one sample-agreement computation.

    Args:
        labels: (H, W) final instance labels.
        maps: ``probability``, ``entropy`` and ``epistemic`` maps, (H, W).
        fg_mask: (H, W) bool predicted foreground.
        sample_labels: The stochastic samples' instance segmentations (None or empty: none).
        thresholds: Review thresholds; defaults to ``ReviewThresholds()``.

    Returns:
        (records, summary).
    """
    has_samples = sample_labels is not None and len(sample_labels) > 0
    agreement = sample_agreement(labels, sample_labels) if has_samples else None
    records = nucleus_table(labels, maps, agreement, thresholds)
    return records, image_summary(records, maps, fg_mask, agreement, thresholds)


def records_to_rows(records: Sequence[NucleusRecord]) -> list[dict[str, Any]]:
    """CSV rows (dicts with keys in :data:`NUCLEUS_COLUMNS` order) for ``csv.DictWriter``."""
    return [record.to_dict() for record in records]
