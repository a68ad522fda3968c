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
  :func:`~bayescellseg.inference.uncertainty.tie_broken_uncertainty`); without samples, the
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
from scipy import sparse

from bayescellseg.inference.uncertainty import tie_broken_uncertainty
from bayescellseg.metrics.matching import DSB_THRESHOLDS
from bayescellseg.settings import from_user_dict

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
]

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
class ReviewThresholds:
    """When a nucleus or an image is flagged for review.

    Attributes:
        nucleus_uncertainty: A nucleus is flagged when its uncertainty is above this. The default
            0.3 flags nuclei whose mean IoU with the samples' nuclei is below 0.7.
        image_uncertainty: An image is flagged when its uncertainty is above this. The default
            0.3 flags images whose expected DSB score from sample agreement is below 0.7.
        max_flagged_fraction: An image is flagged when more than this fraction of its nuclei
            are flagged.
    """

    nucleus_uncertainty: float = 0.3
    image_uncertainty: float = 0.3
    max_flagged_fraction: float = 0.25

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "review") -> ReviewThresholds:
        """Build from a dict as written by :meth:`to_dict`; missing keys keep their defaults.

        Raises:
            InputError: Unknown keys or invalid values.
        """
        return from_user_dict(cls, data, source, "review threshold")


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
        return {name: _clean(getattr(self, name)) for name in NUCLEUS_COLUMNS}


@dataclass(frozen=True)
class SampleAgreement:
    """How the stochastic samples' segmentations agree with the final segmentation.

    Attributes:
        labels: The final labels' ids, ascending (the order of ``stability``).
        stability: (N,) mean best-match IoU of each final nucleus over the samples.
        sample_scores: (T,) DSB2018 score of each sample segmentation against the final one.
    """

    labels: np.ndarray
    stability: np.ndarray
    sample_scores: np.ndarray

    @property
    def predicted_quality(self) -> float:
        """Mean sample DSB score (the expected DSB score from sample agreement)."""
        return float(self.sample_scores.mean())


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
        out = {f.name: _clean(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["reasons"] = list(self.reasons)
        return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _pair_overlaps(
    a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Nonzero overlaps between two sequentially labelled images (labels 1..Na and 1..Nb).

    Returns:
        (rows, cols, iou, n_a, n_b): for every overlapping pair, the 0-based nucleus index in
        ``a`` and ``b`` and their IoU; and the number of nuclei in each image.
    """
    a_flat = a.ravel()
    b_flat = b.ravel()
    n_a = int(a_flat.max(initial=0))
    n_b = int(b_flat.max(initial=0))
    area_a = np.bincount(a_flat, minlength=n_a + 1)
    area_b = np.bincount(b_flat, minlength=n_b + 1)
    both = (a_flat > 0) & (b_flat > 0)
    ra = a_flat[both].astype(np.int64)
    cb = b_flat[both].astype(np.int64)
    inter = (
        sparse.coo_matrix((np.ones(ra.size, np.int64), (ra, cb)), shape=(n_a + 1, n_b + 1))
        .tocsr()
        .tocoo()
    )  # tocsr sums duplicate pairs
    rows, cols, counts = inter.row, inter.col, inter.data.astype(np.float64)
    iou = counts / (area_a[rows] + area_b[cols] - counts)
    return rows - 1, cols - 1, iou, n_a, n_b


def _sequential(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 1..N (int64, a new array) and the original ids in ascending order.

    Raises:
        ValueError: The labels are not integers or are negative.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "ui":
        raise ValueError(f"instance labels must be integers, got dtype {labels.dtype}")
    if labels.dtype == np.uint64:
        labels = labels.astype(np.int64)  # bincount / indexing need a signed type
    flat = labels.ravel()
    if flat.size == 0 or int(flat.max()) == 0:
        if flat.size and int(flat.min()) < 0:
            raise ValueError("instance labels must not be negative")
        return np.zeros(labels.shape, np.int64), np.zeros(0, np.int64)
    if int(flat.min()) < 0:
        raise ValueError("instance labels must not be negative")
    top = int(flat.max())
    if top <= 4 * flat.size:
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present)
    else:  # huge, sparse label values: avoid a bincount of size max(label)
        ids = np.unique(flat)
        ids = ids[ids > 0]
        seq = np.searchsorted(ids, labels) + 1
        return np.where(labels > 0, seq, 0).astype(np.int64), ids.astype(np.int64)
    lut = np.zeros(top + 1, np.int64)
    lut[ids] = np.arange(1, ids.size + 1)
    return lut[labels], ids.astype(np.int64)


def best_match_iou(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each nucleus of ``labels`` (ascending id), its best IoU with any nucleus of ``other``.

    Args:
        labels: (H, W) instance labels.
        other: (H, W) instance labels of another segmentation.

    Returns:
        (N,) float64 best IoU per nucleus of ``labels`` (0 when it overlaps nothing).
    """
    if labels.shape != other.shape:
        raise ValueError(f"label images differ in shape: {labels.shape} vs {other.shape}")
    seq, _ = _sequential(labels)
    other_seq, _ = _sequential(other)
    rows, _, iou, n_a, _ = _pair_overlaps(seq, other_seq)
    best = np.zeros(n_a)
    np.maximum.at(best, rows, iou)
    return best


def _dsb_from_ious(iou: np.ndarray, n_true: int, n_pred: int) -> float:
    """DSB2018 score from the IoUs of overlapping pairs (matches at IoU > t are one-to-one)."""
    if n_true == 0 and n_pred == 0:
        return 1.0
    scores = []
    for t in DSB_THRESHOLDS:
        tp = int((iou > t).sum())
        scores.append(tp / (n_true + n_pred - tp))
    return float(np.mean(scores))


def sample_agreement(labels: np.ndarray, sample_labels: Sequence[np.ndarray]) -> SampleAgreement:
    """Stability of every nucleus and DSB score of every sample against the final segmentation.

    Args:
        labels: (H, W) final instance labels.
        sample_labels: T >= 1 (H, W) instance segmentations, one per stochastic sample.

    Returns:
        The per-nucleus stability and per-sample DSB scores.

    Raises:
        ValueError: No samples, or a sample differs in shape from ``labels``.
    """
    if len(sample_labels) == 0:
        raise ValueError("sample_agreement needs at least one sample segmentation")
    seq, ids = _sequential(labels)
    n = ids.size
    iou_sum = np.zeros(n)
    scores = np.empty(len(sample_labels))
    for t, sample in enumerate(sample_labels):
        if sample.shape != labels.shape:
            raise ValueError(f"sample {t} has shape {sample.shape}, labels have {labels.shape}")
        sample_seq, _ = _sequential(sample)
        rows, _, iou, n_a, n_b = _pair_overlaps(seq, sample_seq)
        best = np.zeros(n)
        np.maximum.at(best, rows, iou)
        iou_sum += best
        scores[t] = _dsb_from_ious(iou, n_a, n_b)
    return SampleAgreement(labels=ids, stability=iou_sum / len(sample_labels), sample_scores=scores)


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
    seq, ids = _sequential(labels)
    n = ids.size
    if n == 0:
        return []
    flat = seq.ravel()
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
