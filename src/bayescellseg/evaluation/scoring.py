"""Per-image scoring and the streaming aggregation of segmentation, calibration and uncertainty.

Memory stays bounded however many images are scored: calibration is streamed through
:class:`~bayescellseg.metrics.calibration.CalibrationAccumulator` (per-bin sums), and each image
keeps only a fixed-size random subsample of its pixels (the same pixels for every uncertainty
map, drawn with a seed derived from ``seed`` and the image name, so results do not depend on the
order of the images) for the pooled pixel-level AUROC / AUPR / UEO. QU-BraTS scores are computed
on all pixels of each image and averaged over images, as in the challenge; each map is min-max
normalised per image first (the metric's default), so the score does not depend on the map's
scale (mutual information is typically far below its 1-bit maximum). UEO uses the maps' natural
[0, 1] bit scale with thresholds at the quantiles of the pooled values.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayescellseg.evaluation.sources import UNCERTAINTY_MAPS, EvalItem
from bayescellseg.evaluation.trusted import TRUST_COLUMNS, ImageTrust
from bayescellseg.metrics.calibration import CalibrationAccumulator, boundary_band, ece
from bayescellseg.metrics.matching import match
from bayescellseg.metrics.segmentation import segmentation_summary
from bayescellseg.metrics.uncertainty import (
    aupr,
    auroc,
    best_ueo,
    nucleus_error_auroc,
    qubrats_scores,
    retention_curve,
    spearman,
)

SEGMENTATION_KEYS = ("dsb", "ap50", "ap75", "f1", "dice", "iou", "count_error", "abs_count_error")
PER_IMAGE_COLUMNS = (
    "dataset", "image", "n_true", "n_pred", "dsb", "ap50", "ap75", "f1", "dice", "iou",
    "count_error", "abs_count_error", "ece", "n_unmatched_pred", "image_uncertainty",
    "predicted_quality",
)  # fmt: skip
"""The ``per_image.csv`` columns of every evaluation (plus :data:`TRUST_COLUMNS` with trust)."""
UNCERTAINTY_VALUE_RANGE = (0.0, 1.0)
"""Entropy, expected entropy and mutual information of a binary prediction in bits lie in [0, 1]."""


@dataclass(frozen=True)
class ImageRecord:
    """What is kept of one scored image.

    Attributes:
        dataset: Dataset name.
        id: Image name.
        row: The ``per_image.csv`` row (keys :data:`PER_IMAGE_COLUMNS`, and
            :data:`~bayescellseg.evaluation.trusted.TRUST_COLUMNS` when ``trust`` is set).
        nucleus_ids: Label of each predicted nucleus (sorted).
        nucleus_uncertainty: Uncertainty of each predicted nucleus (nan where unknown).
        nucleus_has_match: Whether each predicted nucleus has a true match at IoU > 0.5.
        pixel_uncertainty: Map name -> uncertainty of the subsampled pixels.
        pixel_error: Whether each subsampled pixel is wrong (foreground vs background).
        qubrats: Map name -> ``{"score", "auc_dice", "auc_ftp", "auc_ftn"}`` of this image.
        trust: The image's trust signals (None: none came with the prediction).
        nucleus_p_correct: ``p_correct`` of each predicted nucleus (NaN where unknown).
    """

    dataset: str
    id: str
    row: dict[str, Any]
    nucleus_ids: np.ndarray
    nucleus_uncertainty: np.ndarray
    nucleus_has_match: np.ndarray
    pixel_uncertainty: dict[str, np.ndarray] = field(default_factory=dict)
    pixel_error: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    qubrats: dict[str, dict[str, float]] = field(default_factory=dict)
    trust: ImageTrust | None = None
    nucleus_p_correct: np.ndarray = field(default_factory=lambda: np.zeros(0))


def per_image_columns(records: Sequence[ImageRecord]) -> tuple[str, ...]:
    """:data:`PER_IMAGE_COLUMNS`, plus :data:`TRUST_COLUMNS` when any image has trust signals."""
    trusted = any(r.trust is not None for r in records)
    return PER_IMAGE_COLUMNS + (TRUST_COLUMNS if trusted else ())


def pixel_subsample(n_pixels: int, max_pixels: int, key: str, seed: int) -> np.ndarray:
    """Sorted flat indices of at most ``max_pixels`` pixels, seeded by ``seed`` and ``key``."""
    if n_pixels <= max_pixels:
        return np.arange(n_pixels)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    return np.sort(rng.choice(n_pixels, size=max_pixels, replace=False))


def _nucleus_arrays(item: EvalItem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    result = match(item.truth, item.prediction.labels, thresholds=(0.5,))
    table = item.prediction.nucleus_uncertainty
    u = np.array([table.get(int(i), math.nan) for i in result.ids_pred], dtype=np.float64)
    ids = np.asarray(result.ids_pred).copy()
    return ids, u, np.asarray(result.pred_has_match, bool).copy()


def _p_correct(trust: ImageTrust | None, ids: np.ndarray) -> np.ndarray:
    """``p_correct`` of each nucleus id (NaN where unknown, all NaN without trust)."""
    table = trust.p_correct if trust is not None else {}
    return np.array([table.get(int(i), math.nan) for i in ids], dtype=np.float64)


def score_image(item: EvalItem, max_pixels: int = 10_000, seed: int = 0) -> ImageRecord:
    """Score one image: segmentation, per-image ECE, nucleus errors, pixel subsample, QU-BraTS.

    Args:
        item: Truth and prediction.
        max_pixels: Pixels kept for the pooled pixel-level uncertainty metrics.
        seed: Seed of the pixel subsample.

    Returns:
        The image's record.
    """
    pred = item.prediction
    scores = segmentation_summary(item.truth, pred.labels)
    true_fg = item.truth > 0
    nucleus_ids, nucleus_u, has_match = _nucleus_arrays(item)
    row: dict[str, Any] = {"dataset": item.dataset, "image": item.id, **scores.to_dict()}
    prob = pred.maps.get("probability")
    row["ece"] = ece(prob, true_fg) if prob is not None else math.nan
    row["n_unmatched_pred"] = int(np.count_nonzero(~has_match))
    row["image_uncertainty"] = pred.image_uncertainty
    row["predicted_quality"] = pred.predicted_quality
    columns = PER_IMAGE_COLUMNS + (TRUST_COLUMNS if pred.trust is not None else ())
    if pred.trust is not None:
        row.update(pred.trust.row())
    error = (pred.labels > 0) != true_fg
    pick = pixel_subsample(error.size, max_pixels, f"{item.dataset}/{item.id}", seed)
    pixel_u, qubrats = {}, {}
    for key in UNCERTAINTY_MAPS:
        if key not in pred.maps:
            continue
        pixel_u[key] = pred.maps[key].reshape(-1)[pick].astype(np.float32)
        q = qubrats_scores(pred.maps[key], pred.labels > 0, true_fg)
        qubrats[key] = {"score": q.score, "auc_dice": q.auc_dice, "auc_ftp": q.auc_ftp,
                        "auc_ftn": q.auc_ftn}  # fmt: skip
    return ImageRecord(
        dataset=item.dataset,
        id=item.id,
        row={k: row.get(k) for k in columns},
        nucleus_ids=nucleus_ids,
        nucleus_uncertainty=nucleus_u,
        nucleus_has_match=has_match,
        pixel_uncertainty=pixel_u,
        pixel_error=error.reshape(-1)[pick].copy(),
        qubrats=qubrats,
        trust=pred.trust,
        nucleus_p_correct=_p_correct(pred.trust, nucleus_ids),
    )


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def segmentation_metrics(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """Means over images of the segmentation scores (plus the median DSB score and totals)."""
    out: dict[str, Any] = {k: _nanmean([r.row[k] for r in records]) for k in SEGMENTATION_KEYS}
    out["dsb_median"] = float(np.median([r.row["dsb"] for r in records])) if records else math.nan
    out["n_true"] = int(sum(r.row["n_true"] for r in records))
    out["n_pred"] = int(sum(r.row["n_pred"] for r in records))
    return out


def ueo_thresholds(u: np.ndarray, n: int = 201) -> np.ndarray:
    """Data-adaptive UEO thresholds: the distinct quantiles of ``u`` (plus 0 and 1)."""
    qs = np.quantile(u, np.linspace(0.0, 1.0, n)) if u.size else np.empty(0)
    return np.unique(np.r_[0.0, qs, 1.0])


def pixel_uncertainty_metrics(records: Sequence[ImageRecord]) -> dict[str, dict[str, Any]]:
    """Per uncertainty map: pooled AUROC, AUPR, best UEO and the mean QU-BraTS scores."""
    out: dict[str, dict[str, Any]] = {}
    for key in UNCERTAINTY_MAPS:
        have = [r for r in records if key in r.pixel_uncertainty]
        if not have:
            continue
        u = np.concatenate([r.pixel_uncertainty[key] for r in have]).astype(np.float64)
        err = np.concatenate([r.pixel_error for r in have])
        ueo, threshold = best_ueo(u, err, ueo_thresholds(u), value_range=UNCERTAINTY_VALUE_RANGE)
        out[key] = {
            "auroc": auroc(u, err),
            "aupr": aupr(u, err),
            "error_rate": float(err.mean()) if err.size else math.nan,
            "ueo": ueo,
            "ueo_threshold": threshold,
            "n_pixels": int(u.size),
            "n_images": len(have),
            "qubrats": {
                name: _nanmean([r.qubrats[key][name] for r in have])
                for name in ("score", "auc_dice", "auc_ftp", "auc_ftn")
            },
        }
    return out


def nucleus_arrays(records: Sequence[ImageRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled ``(uncertainty, has_match)`` of the predicted nuclei that have an uncertainty."""
    if not records:
        return np.empty(0), np.empty(0, bool)
    u = np.concatenate([r.nucleus_uncertainty for r in records])
    m = np.concatenate([r.nucleus_has_match for r in records])
    ok = np.isfinite(u)
    return u[ok], m[ok]


def nucleus_metrics(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """AUROC of nucleus uncertainty for "no true match at IoU 0.5", with class means."""
    u, has_match = nucleus_arrays(records)
    return {
        "auroc": nucleus_error_auroc(u, has_match) if u.size else math.nan,
        "n_nuclei": int(u.size),
        "n_unmatched": int(np.count_nonzero(~has_match)),
        "mean_uncertainty_matched": _nanmean(u[has_match]),
        "mean_uncertainty_unmatched": _nanmean(u[~has_match]),
    }


def image_arrays(records: Sequence[ImageRecord]) -> tuple[np.ndarray, np.ndarray]:
    """``(image uncertainty, DSB score)`` of the images that have a finite uncertainty."""
    u = np.array([r.row["image_uncertainty"] for r in records], dtype=np.float64)
    s = np.array([r.row["dsb"] for r in records], dtype=np.float64)
    ok = np.isfinite(u) & np.isfinite(s)
    return u[ok], s[ok]


def retention(records: Sequence[ImageRecord]):
    """Retention curve of the DSB score under the image uncertainty (None without images)."""
    u, s = image_arrays(records)
    if u.size == 0:
        return None
    fractions = None if u.size <= 100 else np.arange(100) / 100
    return retention_curve(u, s, fractions=fractions)


def image_metrics(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """Image level: Spearman correlations with the DSB score, retention curve and its AUCs."""
    u, s = image_arrays(records)
    q = np.array([r.row["predicted_quality"] for r in records], dtype=np.float64)
    dsb = np.array([r.row["dsb"] for r in records], dtype=np.float64)
    curve = retention(records)
    return {
        "n_images": int(u.size),
        "mean_uncertainty": _nanmean(u),
        "spearman_uncertainty_dsb": spearman(u, s),
        "spearman_predicted_quality_dsb": spearman(q, dsb),
        "retention": curve.to_dict() if curve is not None else None,
    }


class Evaluator:
    """Scores images one at a time and aggregates them overall and per dataset.

    Args:
        seed: Seed of the per-image pixel subsamples.
        max_pixels_per_image: Pixels kept per image for the pooled pixel uncertainty metrics.
        n_bins: Reliability / ECE bins.
        band_width: Half-width in pixels of the band around the true nucleus boundaries.
    """

    def __init__(
        self,
        seed: int = 0,
        max_pixels_per_image: int = 10_000,
        n_bins: int = 15,
        band_width: int = 3,
    ) -> None:
        self.seed = seed
        self.max_pixels_per_image = max_pixels_per_image
        self.n_bins = n_bins
        self.band_width = band_width
        self.records: list[ImageRecord] = []
        self._calibration: dict[
            str | None, tuple[CalibrationAccumulator, CalibrationAccumulator]
        ] = {}

    def _accumulators(
        self, group: str | None
    ) -> tuple[CalibrationAccumulator, CalibrationAccumulator]:
        if group not in self._calibration:
            self._calibration[group] = (
                CalibrationAccumulator(self.n_bins),
                CalibrationAccumulator(self.n_bins),
            )
        return self._calibration[group]

    def add(self, item: EvalItem) -> ImageRecord:
        """Score ``item`` and add it to the overall and its dataset's aggregates."""
        record = score_image(item, self.max_pixels_per_image, self.seed)
        prob = item.prediction.maps.get("probability")
        if prob is not None:
            fg = item.truth > 0
            band = boundary_band(item.truth, self.band_width)
            for group in (None, item.dataset):
                acc_all, acc_band = self._accumulators(group)
                acc_all.add(prob, fg)
                acc_band.add(prob, fg, mask=band)
        self.records.append(record)
        return record

    @property
    def datasets(self) -> list[str]:
        """Dataset names in the order first seen."""
        return list(dict.fromkeys(r.dataset for r in self.records))

    def group(self, dataset: str | None) -> list[ImageRecord]:
        """Records of one dataset (None = all)."""
        return [r for r in self.records if dataset is None or r.dataset == dataset]

    def calibration(self, dataset: str | None):
        """``(all pixels, boundary band)`` calibration results, or None without probabilities."""
        if dataset not in self._calibration:
            return None
        acc_all, acc_band = self._calibration[dataset]
        return acc_all.result(), acc_band.result()

    def group_metrics(self, dataset: str | None) -> dict[str, Any]:
        """All metrics of one dataset (None = all images)."""
        records = self.group(dataset)
        cal = self.calibration(dataset)
        return {
            "n_images": len(records),
            "segmentation": segmentation_metrics(records),
            "calibration": None
            if cal is None
            else {
                "all_pixels": cal[0].to_dict(),
                "boundary_band": cal[1].to_dict(),
                "band_width": self.band_width,
            },  # fmt: skip
            "uncertainty": {
                "pixel": pixel_uncertainty_metrics(records),
                "nucleus": nucleus_metrics(records),
                "image": image_metrics(records),
            },
        }

    def metrics(self) -> dict[str, Any]:
        """Overall and per-dataset metrics, plus the per-dataset mean image uncertainty (OOD)."""
        datasets = {name: self.group_metrics(name) for name in self.datasets}
        ood = {
            name: {
                "mean_image_uncertainty": m["uncertainty"]["image"]["mean_uncertainty"],
                "mean_dsb": m["segmentation"]["dsb"],
                "n_images": m["n_images"],
            }
            for name, m in datasets.items()
        }
        return {"overall": self.group_metrics(None), "datasets": datasets, "ood": ood}
