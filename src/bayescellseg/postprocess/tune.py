"""Tune post-processing on validation images: watershed settings and review thresholds.

* :func:`tune_watershed` grid-searches :class:`WatershedParams` for the highest mean DSB2018
  score of the resulting instances against the true labels.
* :func:`tune_review_thresholds` picks the uncertainty threshold above which items (nuclei or
  images) are flagged, so that the flags find the real errors. The default criterion is the F1
  score of "flagged" as a detector of "is an error": it balances the share of errors caught
  (recall) against the share of flagged items that really are errors (precision, i.e. the
  reviewer's wasted effort). Youden's J (TPR - FPR) is available but ignores how rare errors
  are, so it tends to flag too much when most nuclei are correct.
* :func:`nucleus_errors` gives the error label of each predicted nucleus (no true nucleus at
  IoU > 0.5, as the DSB score counts it) and :func:`review_thresholds_from_validation` turns
  validation results into the :class:`ReviewThresholds` stored with a model.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bayescellseg.metrics.matching import dsb_score, match
from bayescellseg.postprocess.review import ReviewThresholds
from bayescellseg.postprocess.watershed import WatershedParams, instances_from_maps

__all__ = [
    "DEFAULT_WATERSHED_GRID",
    "ThresholdChoice",
    "nucleus_errors",
    "review_thresholds_from_validation",
    "tune_review_thresholds",
    "tune_watershed",
]

DEFAULT_WATERSHED_GRID: dict[str, tuple[float, ...]] = {
    "fg_threshold": (0.4, 0.5, 0.6),
    "marker_threshold": (0.3, 0.5, 0.7),
    "contour_weight": (0.5, 1.0),
}
"""18 combinations around the defaults; other settings keep the ``base`` values."""

Criterion = Literal["f1", "youden"]


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen flagging threshold and how well it separates errors (flag = score > threshold).

    Attributes:
        threshold: Items with uncertainty above this are flagged.
        criterion: ``"f1"`` or ``"youden"``.
        value: The criterion's value at the threshold.
        precision: Fraction of flagged items that are errors (1 when nothing is flagged).
        recall: Fraction of errors that are flagged (1 when there are no errors).
        false_positive_rate: Fraction of correct items that are flagged.
        flagged_fraction: Fraction of all items flagged.
        n_items: Number of items.
        n_errors: Number of errors among them.
    """

    threshold: float
    criterion: str
    value: float
    precision: float
    recall: float
    false_positive_rate: float
    flagged_fraction: float
    n_items: int
    n_errors: int


def tune_watershed(
    prob_maps: Sequence[np.ndarray],
    contour_maps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    grid: Mapping[str, Sequence[float | int | bool]] | None = None,
    base: WatershedParams | None = None,
) -> tuple[WatershedParams, float]:
    """Grid search of watershed settings maximising the mean DSB2018 score.

    Args:
        prob_maps: Foreground probability maps, one (H, W) per validation image.
        contour_maps: Contour probability maps, same shapes.
        truths: True instance labels, same shapes.
        grid: Setting name -> values to try (the Cartesian product is searched). Default:
            :data:`DEFAULT_WATERSHED_GRID`.
        base: Values of the settings not in ``grid``; defaults to ``WatershedParams()``.

    Returns:
        (best settings, their mean DSB score). Ties keep the combination tried first.

    Raises:
        ValueError: No images, inconsistent lengths or shapes, an unknown setting name, or an
            empty grid.
    """
    if not (len(prob_maps) == len(contour_maps) == len(truths)):
        raise ValueError(
            f"got {len(prob_maps)} probability maps, {len(contour_maps)} contour maps and "
            f"{len(truths)} truths; they must match"
        )
    if len(prob_maps) == 0:
        raise ValueError("tune_watershed needs at least one validation image")
    for i, (p, c, t) in enumerate(zip(prob_maps, contour_maps, truths, strict=True)):
        if not (p.shape == c.shape == t.shape):
            raise ValueError(f"image {i}: shapes differ: {p.shape}, {c.shape}, {t.shape}")
    grid = dict(DEFAULT_WATERSHED_GRID if grid is None else grid)
    base = base or WatershedParams()
    known = {f.name for f in dataclasses.fields(WatershedParams)}
    unknown = sorted(set(grid) - known)
    if unknown:
        raise ValueError(f"unknown watershed setting(s) {unknown}; known: {sorted(known)}")
    if any(len(v) == 0 for v in grid.values()):
        raise ValueError("every grid entry needs at least one value")

    best: tuple[WatershedParams, float] | None = None
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        params = dataclasses.replace(base, **dict(zip(names, values, strict=True)))
        score = float(
            np.mean(
                [
                    dsb_score(truth, instances_from_maps(p, c, params))
                    for p, c, truth in zip(prob_maps, contour_maps, truths, strict=True)
                ]
            )
        )
        if best is None or score > best[1]:
            best = (params, score)
    assert best is not None  # the grid is non-empty
    return best


def _rates(tp: np.ndarray, fp: np.ndarray, n_err: int, n_ok: int) -> tuple[np.ndarray, ...]:
    flagged = tp + fp
    precision = np.where(flagged > 0, tp / np.maximum(flagged, 1), 1.0)
    recall = tp / n_err if n_err else np.ones_like(tp, dtype=np.float64)
    fpr = fp / n_ok if n_ok else np.zeros_like(fp, dtype=np.float64)
    return precision, recall, fpr


def tune_review_thresholds(
    nucleus_uncertainties: np.ndarray,
    nucleus_is_error: np.ndarray,
    criterion: Criterion = "f1",
) -> ThresholdChoice:
    """Choose the uncertainty threshold that best flags the errors (flag = uncertainty > t).

    Candidate thresholds are the midpoints between consecutive distinct uncertainty values,
    plus one below the smallest value (flag everything) and the largest value (flag nothing),
    so every distinct flagging is tried once. Works for nuclei or images alike.

    Criteria (errors are the positive class): ``"f1"`` = ``2 TP / (2 TP + FP + FN)``;
    ``"youden"`` = ``TP / (TP + FN) - FP / (FP + TN)``. Ties keep the higher threshold
    (fewer flags).

    Args:
        nucleus_uncertainties: (N,) uncertainty score per item.
        nucleus_is_error: (N,) bool, True where the item is wrong.
        criterion: ``"f1"`` (default) or ``"youden"``.

    Returns:
        The chosen threshold and its statistics.

    Raises:
        ValueError: Empty or mismatched inputs, NaN scores, or an unknown criterion.
    """
    u = np.asarray(nucleus_uncertainties, dtype=np.float64).ravel()
    err = np.asarray(nucleus_is_error, dtype=bool).ravel()
    if u.size == 0 or u.size != err.size:
        raise ValueError(f"need equal, non-empty inputs; got {u.size} scores, {err.size} labels")
    if not np.isfinite(u).all():
        raise ValueError("uncertainties must be finite (no NaN)")
    if criterion not in ("f1", "youden"):
        raise ValueError(f"criterion must be 'f1' or 'youden', got {criterion!r}")

    values = np.unique(u)
    below = values[0] - max(1e-6, 0.5 * (values[-1] - values[0]) / max(values.size, 1))
    candidates = np.concatenate([[max(below, 0.0)], (values[1:] + values[:-1]) / 2, values[-1:]])
    if values[0] <= 0:  # 0 cannot be flagged with a threshold >= 0: drop "flag everything"
        candidates = candidates[1:]
    u_err = np.sort(u[err])
    u_ok = np.sort(u[~err])
    tp = u_err.size - np.searchsorted(u_err, candidates, side="right")
    fp = u_ok.size - np.searchsorted(u_ok, candidates, side="right")
    n_err, n_ok = int(u_err.size), int(u_ok.size)
    precision, recall, fpr = _rates(tp, fp, n_err, n_ok)
    if criterion == "f1":
        denom = 2 * tp + fp + (n_err - tp)
        value = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)
    else:
        value = recall - fpr
    # Highest value; among ties the last (= highest threshold, fewest flags).
    k = int(value.size - 1 - np.argmax(value[::-1]))
    return ThresholdChoice(
        threshold=float(candidates[k]),
        criterion=criterion,
        value=float(value[k]),
        precision=float(precision[k]),
        recall=float(recall[k]),
        false_positive_rate=float(fpr[k]),
        flagged_fraction=float((tp[k] + fp[k]) / u.size),
        n_items=int(u.size),
        n_errors=n_err,
    )


def nucleus_errors(true_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """Error label of each predicted nucleus: True when no true nucleus matches it at IoU > 0.5.

    Args:
        true_labels: (H, W) true instance labels.
        pred_labels: (H, W) predicted instance labels.

    Returns:
        (N_pred,) bool, in ascending order of predicted label (the order of ``nucleus_table``).
    """
    return ~np.asarray(match(true_labels, pred_labels, 0.5).pred_has_match)


def review_thresholds_from_validation(
    nucleus_uncertainties: np.ndarray,
    nucleus_is_error: np.ndarray,
    image_uncertainties: np.ndarray,
    image_scores: np.ndarray,
    quality_target: float = 0.7,
    criterion: Criterion = "f1",
    base: ReviewThresholds | None = None,
) -> tuple[ReviewThresholds, dict[str, ThresholdChoice]]:
    """Review thresholds for a model, tuned on validation images.

    The nucleus threshold flags nuclei without a true match (:func:`nucleus_errors`); the image
    threshold flags images whose true DSB score is below ``quality_target``.
    ``max_flagged_fraction`` keeps the ``base`` value.

    Args:
        nucleus_uncertainties: Uncertainty of every predicted nucleus of the validation images.
        nucleus_is_error: Whether each of those nuclei is an error.
        image_uncertainties: Image uncertainty score per validation image.
        image_scores: True DSB score per validation image.
        quality_target: Images scoring below this count as needing review.
        criterion: ``"f1"`` or ``"youden"``.
        base: Thresholds whose other values are kept; defaults to ``ReviewThresholds()``.

    Returns:
        (thresholds, {"nucleus": choice, "image": choice}) with the statistics of each choice.
    """
    base = base or ReviewThresholds()
    nucleus = tune_review_thresholds(nucleus_uncertainties, nucleus_is_error, criterion)
    bad_images = np.asarray(image_scores, dtype=np.float64) < quality_target
    image = tune_review_thresholds(image_uncertainties, bad_images, criterion)
    thresholds = dataclasses.replace(
        base, nucleus_uncertainty=nucleus.threshold, image_uncertainty=image.threshold
    )
    return thresholds, {"nucleus": nucleus, "image": image}
