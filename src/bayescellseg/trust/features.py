"""Feature vectors of one prediction, for the trust models (predicted score, OOD, ``p_correct``).

Everything is computed from a :class:`~bayescellseg.inference.result.Result` alone (its maps,
labels, nucleus records and summary), so the same features come out of ``predict`` and of the
experiments that fit the models. Without stochastic samples (a single deterministic network)
the stability-based features fall back to ``1 - mean entropy``, as the nucleus uncertainty does.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from bayescellseg.postprocess.nuclei import ImageSummary, NucleusRecord

IMAGE_FEATURES: tuple[str, ...] = (
    "predicted_quality",
    "mean_stability",
    "area_weighted_stability",
    "fraction_unstable",
    "mean_entropy_fg",
    "mean_mi_fg",
    "mean_probability_fg",
    "uncertain_fg_fraction",
    "mean_entropy_all",
    "foreground_fraction",
    "unassigned_fg_fraction",
    "log_n_nuclei",
    "log_median_area",
    "area_cv",
)
"""Names of :func:`image_features`, in order."""

NUCLEUS_FEATURES: tuple[str, ...] = (
    "stability",
    "instability_squared",
    "mean_probability",
    "mean_entropy",
    "mean_mi",
    "log_area",
    "log_relative_area",
    "image_predicted_quality",
    "image_mean_entropy_fg",
    "image_log_median_area",
)
"""Names of the columns of :func:`nucleus_features`, in order."""

UNSTABLE_BELOW = 0.7
"""A nucleus counts as unstable in ``fraction_unstable`` when its stability is below this."""

UNCERTAIN_ENTROPY = 0.5
"""A foreground pixel counts as uncertain in ``uncertain_fg_fraction`` above this entropy (bits)."""


class ResultLike(Protocol):
    """What the features read of a Result."""

    probability: np.ndarray
    entropy: np.ndarray
    epistemic: np.ndarray
    labels: np.ndarray
    nuclei: list[NucleusRecord]
    summary: ImageSummary


def _stability(result: ResultLike) -> np.ndarray:
    """Per-nucleus stability, or ``1 - mean entropy`` where it is unknown (no samples)."""
    stab = np.array([r.stability for r in result.nuclei], dtype=np.float64)
    ent = np.array([r.mean_entropy for r in result.nuclei], dtype=np.float64)
    return np.where(np.isfinite(stab), stab, 1.0 - ent)


def _log_median_area(areas: np.ndarray) -> float:
    return float(np.log(np.median(areas))) if areas.size else 0.0


def _quality(result: ResultLike, stability: np.ndarray) -> float:
    q = float(result.summary.predicted_quality)
    if math.isfinite(q):
        return q
    return float(stability.mean()) if stability.size else 0.0


def image_features(result: ResultLike, fg_threshold: float = 0.5) -> np.ndarray:
    """The image's feature vector (:data:`IMAGE_FEATURES`), float64, finite.

    Args:
        result: The prediction of one image.
        fg_threshold: Foreground probability threshold (the model's ``postprocess``).

    Returns:
        (len(IMAGE_FEATURES),) array.
    """
    prob = np.asarray(result.probability, np.float64)
    ent = np.asarray(result.entropy, np.float64)
    mi = np.asarray(result.epistemic, np.float64)
    fg = prob > fg_threshold
    n_fg = int(fg.sum())
    areas = np.array([r.area for r in result.nuclei], dtype=np.float64)
    stab = _stability(result)
    n = areas.size

    def fg_mean(values: np.ndarray) -> float:
        return float(values[fg].mean()) if n_fg else 0.0

    assigned = np.count_nonzero(fg & (np.asarray(result.labels) > 0))
    values = {
        "predicted_quality": _quality(result, stab),
        "mean_stability": float(stab.mean()) if n else 0.0,
        "area_weighted_stability": float(np.sum(stab * areas) / areas.sum()) if n else 0.0,
        "fraction_unstable": float(np.mean(stab < UNSTABLE_BELOW)) if n else 0.0,
        "mean_entropy_fg": fg_mean(ent),
        "mean_mi_fg": fg_mean(mi),
        "mean_probability_fg": fg_mean(prob),
        "uncertain_fg_fraction": fg_mean((ent > UNCERTAIN_ENTROPY).astype(np.float64)),
        "mean_entropy_all": float(ent.mean()) if ent.size else 0.0,
        "foreground_fraction": n_fg / fg.size if fg.size else 0.0,
        "unassigned_fg_fraction": 1.0 - assigned / n_fg if n_fg else 0.0,
        "log_n_nuclei": math.log1p(n),
        "log_median_area": _log_median_area(areas),
        "area_cv": float(areas.std() / areas.mean()) if n else 0.0,
    }
    return np.array([values[name] for name in IMAGE_FEATURES], dtype=np.float64)


def nucleus_features(result: ResultLike, image: np.ndarray | None = None) -> np.ndarray:
    """Per-nucleus feature rows (:data:`NUCLEUS_FEATURES`), in the order of ``result.nuclei``.

    Args:
        result: The prediction of one image.
        image: Its :func:`image_features` (computed when None).

    Returns:
        (N, len(NUCLEUS_FEATURES)) float64 array (N = number of nuclei; (0, k) without any).
    """
    k = len(NUCLEUS_FEATURES)
    if not result.nuclei:
        return np.zeros((0, k))
    image = image_features(result) if image is None else np.asarray(image, np.float64)
    by_name = dict(zip(IMAGE_FEATURES, image, strict=True))
    stab = _stability(result)
    areas = np.array([r.area for r in result.nuclei], dtype=np.float64)
    log_area = np.log(np.maximum(areas, 1.0))
    columns = {
        "stability": stab,
        "instability_squared": np.square(1.0 - stab),
        "mean_probability": np.array([r.mean_probability for r in result.nuclei], np.float64),
        "mean_entropy": np.array([r.mean_entropy for r in result.nuclei], np.float64),
        "mean_mi": np.array([r.mean_mutual_information for r in result.nuclei], np.float64),
        "log_area": log_area,
        "log_relative_area": log_area - _log_median_area(areas),
        "image_predicted_quality": np.full(areas.size, by_name["predicted_quality"]),
        "image_mean_entropy_fg": np.full(areas.size, by_name["mean_entropy_fg"]),
        "image_log_median_area": np.full(areas.size, by_name["log_median_area"]),
    }
    return np.column_stack([columns[name] for name in NUCLEUS_FEATURES])
