"""Fit the trust models on held-out images (images the network was not trained on).

The score intervals, the review rules and the OOD threshold need scores of images that the
fitted model has not seen, so every fitting image gets an *out-of-fold* prediction and distance
from models fitted on the other folds; the shipped models are then refitted on all fitting
images. The score models' feature set and ridge penalty are chosen by leave-one-source-out error over
the fitting sources (:func:`select_score_model`), which favours models that carry to a new
source; their interval and review rules are calibrated on random folds (drawn per source with
a recorded seed), as are the OOD distances (of the image features and, when the data carry
it, of the network's bottleneck statistic: :func:`fit_bottleneck_ood`). Each source gets the total weight
``sqrt(n_source)`` (weights ``1 / sqrt(n_source)`` per image), so that a large source does not
drown the small ones and a tiny one does not dominate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bayescellseg.trust.conformal import conformal_quantile
from bayescellseg.trust.features import IMAGE_FEATURES
from bayescellseg.trust.linear import LogisticModel, RidgeModel, Standardizer
from bayescellseg.trust.model import SCORES, OODModel, ScoreModel, TrustModel
from bayescellseg.trust.ood import (
    LowRankMahalanobis,
    Mahalanobis,
    ood_threshold,
    out_of_fold_distances,
)

SCORE_FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "all": IMAGE_FEATURES,
    "agreement": (
        "predicted_quality", "mean_stability", "area_weighted_stability", "fraction_unstable",
    ),
    "agreement+entropy": (
        "predicted_quality", "mean_stability", "area_weighted_stability", "fraction_unstable",
        "mean_entropy_fg", "uncertain_fg_fraction", "mean_probability_fg",
    ),
    "predicted_quality": ("predicted_quality",),
}  # fmt: skip
"""Candidate feature sets of the score models; :func:`select_score_model` picks one."""

RIDGE_ALPHAS: tuple[float, ...] = (0.1, 1.0, 10.0)
"""Candidate ridge penalties of the score models."""


@dataclass(frozen=True)
class TrustData:
    """Features and truth of a set of images and of their predicted nuclei.

    Attributes:
        image_ids: (n,) ``source/id`` names.
        sources: (n,) source of each image.
        image_x: (n, k) image features.
        scores: ``dsb`` / ``ap50`` -> (n,) true scores.
        nucleus_x: (m, j) nucleus features.
        nucleus_image: (m,) index of each nucleus's image.
        nucleus_correct: (m,) whether each nucleus matches a true nucleus at IoU > 0.5.
        bottleneck: (n, 2C) bottleneck statistic of each image
            (:attr:`~bayescellseg.inference.result.Result.bottleneck`), or None.
    """

    image_ids: np.ndarray
    sources: np.ndarray
    image_x: np.ndarray
    scores: dict[str, np.ndarray]
    nucleus_x: np.ndarray
    nucleus_image: np.ndarray
    nucleus_correct: np.ndarray
    bottleneck: np.ndarray | None = None

    def subset(self, keep: np.ndarray) -> TrustData:
        """The images where ``keep`` (bool, (n,)) is True, with their nuclei."""
        keep = np.asarray(keep, bool)
        new_index = np.cumsum(keep) - 1
        nuc = keep[self.nucleus_image]
        return TrustData(
            image_ids=self.image_ids[keep],
            sources=self.sources[keep],
            image_x=self.image_x[keep],
            scores={k: v[keep] for k, v in self.scores.items()},
            nucleus_x=self.nucleus_x[nuc],
            nucleus_image=new_index[self.nucleus_image[nuc]],
            nucleus_correct=self.nucleus_correct[nuc],
            bottleneck=None if self.bottleneck is None else self.bottleneck[keep],
        )


@dataclass(frozen=True)
class FitOptions:
    """Settings of :func:`fit_trust`.

    Attributes:
        alpha: Miscoverage of the score intervals (0.1: 90 % intervals).
        ood_alpha: Share of in-distribution images the OOD threshold may flag.
        n_folds: Folds of the out-of-fold predictions.
        seed: Seed of the fold assignment.
        ridge_alpha: Ridge penalty of the score models.
        logistic_alpha: L2 penalty of the ``p_correct`` model.
        shrinkage: Covariance shrinkage of the OOD distance.
        bottleneck_shrinkage: Covariance shrinkage of the bottleneck OOD distance (the study's
            0.5; ``docs/study.md``, "Trust signals").
        nucleus_review_below: Flag a nucleus when ``p_correct`` is below this.
        calibration: Where the calibration predictions (interval half-width, review rules) of
            each image come from: ``"fold"`` (default), models fitted on the other random folds,
            so that they are exchangeable with new images of the same sources (what the
            guarantees need); ``"source"``, models fitted on the other sources only (wider
            intervals that carry a new source's error, but review rules calibrated on them
            failed on held-out images of the same sources: ``docs/study.md``).
    """

    alpha: float = 0.1
    ood_alpha: float = 0.05
    n_folds: int = 5
    seed: int = 0
    ridge_alpha: float = 1.0
    logistic_alpha: float = 1.0
    shrinkage: float = 0.1
    bottleneck_shrinkage: float = 0.5
    nucleus_review_below: float = 0.5
    calibration: str = "fold"


def source_weights(sources: np.ndarray) -> np.ndarray:
    """``1 / sqrt(n_source)`` per image."""
    names, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    return 1.0 / np.sqrt(counts[inverse].astype(np.float64))


def assign_folds(sources: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold of each image: a seeded permutation of each source dealt round-robin."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(sources), np.int64)
    offset = 0
    for name in np.unique(sources):
        idx = np.flatnonzero(sources == name)
        folds[rng.permutation(idx)] = (offset + np.arange(idx.size)) % n_folds
        offset += idx.size
    return folds


def feature_columns(names: tuple[str, ...]) -> np.ndarray:
    """Column indices of ``names`` in :data:`IMAGE_FEATURES`."""
    return np.array([IMAGE_FEATURES.index(n) for n in names], dtype=np.int64)


def out_of_fold_scores(
    data: TrustData,
    score: str,
    folds: np.ndarray,
    ridge_alpha: float,
    features: tuple[str, ...] = IMAGE_FEATURES,
) -> np.ndarray:
    """Prediction of each image's score by a ridge model fitted on the other folds only."""
    weights = source_weights(data.sources)
    x = data.image_x[:, feature_columns(features)]
    y = data.scores[score]
    out = np.empty(y.size)
    for fold in np.unique(folds):
        held = folds == fold
        model = RidgeModel.fit(x[~held], y[~held], ridge_alpha, weights[~held])
        out[held] = model.predict(x[held])
    return out


def source_folds(sources: np.ndarray) -> np.ndarray:
    """One fold per source (leave-one-source-out)."""
    return np.unique(sources, return_inverse=True)[1].astype(np.int64)


def selection_folds(sources: np.ndarray, options: FitOptions) -> np.ndarray:
    """Leave-one-source-out folds with two or more sources, else the random folds."""
    if np.unique(sources).size >= 2:
        return source_folds(sources)
    return assign_folds(sources, options.n_folds, options.seed)


def select_score_model(
    data: TrustData, score: str, options: FitOptions
) -> tuple[str, float, dict[str, float]]:
    """Feature set and ridge penalty with the lowest mean per-source out-of-fold MAE.

    The folds leave one fitting source out at a time (random folds with one source), so the
    choice is made on the fitting images only and favours models that carry to a new source.

    Returns:
        (feature set name, ridge alpha, ``"name alpha" -> mean MAE`` of every candidate).
    """
    folds = selection_folds(data.sources, options)
    y = data.scores[score]
    table = {}
    for name, features in SCORE_FEATURE_SETS.items():
        for alpha in RIDGE_ALPHAS:
            pred = np.clip(out_of_fold_scores(data, score, folds, alpha, features), 0.0, 1.0)
            per_fold = [np.mean(np.abs(pred - y)[folds == f]) for f in np.unique(folds)]
            table[f"{name} {alpha:g}"] = float(np.mean(per_fold))
    best = min(table, key=table.get)
    name, alpha = best.rsplit(" ", 1)
    return name, float(alpha), table


def _nucleus_weights(data: TrustData) -> np.ndarray:
    per_image = source_weights(data.sources)
    counts = np.bincount(data.nucleus_image, minlength=data.sources.size).astype(np.float64)
    return per_image[data.nucleus_image] / np.maximum(counts[data.nucleus_image], 1.0)


def fit_nucleus_model(data: TrustData, alpha: float) -> LogisticModel:
    """``p_correct`` logistic model; each image's nuclei share its image weight."""
    return LogisticModel.fit(
        data.nucleus_x, data.nucleus_correct, alpha, _nucleus_weights(data) + 1e-12
    )


def out_of_fold_p_correct(data: TrustData, folds: np.ndarray, alpha: float) -> np.ndarray:
    """``p_correct`` of every nucleus from a model fitted on the other folds' images."""
    out = np.empty(data.nucleus_correct.size)
    nucleus_fold = folds[data.nucleus_image]
    for fold in np.unique(folds):
        model = fit_nucleus_model(data.subset(folds != fold), alpha)
        held = nucleus_fold == fold
        out[held] = model.predict_proba(data.nucleus_x[held])
    return out


def fit_ood(data: TrustData, folds: np.ndarray, options: FitOptions) -> tuple[OODModel, np.ndarray]:
    """OOD model and the out-of-fold distances of the fitting images."""
    std = Standardizer.fit(data.image_x)
    z = std(data.image_x)
    oof = out_of_fold_distances(z, folds, options.shrinkage)
    model = OODModel(
        standardizer=std,
        mahalanobis=Mahalanobis.fit(z, options.shrinkage),
        threshold=ood_threshold(oof, options.ood_alpha),
        alpha=options.ood_alpha,
    )
    return model, oof


def fit_bottleneck_ood(
    data: TrustData, folds: np.ndarray, options: FitOptions
) -> tuple[OODModel, np.ndarray]:
    """The bottleneck OOD model (standardised statistic, :class:`LowRankMahalanobis` with
    ``options.bottleneck_shrinkage``, threshold at ``options.ood_alpha`` on out-of-fold
    distances) and those distances.

    Raises:
        ValueError: ``data`` carries no bottleneck statistic.
    """
    if data.bottleneck is None:
        raise ValueError("the data carry no bottleneck statistic")
    std = Standardizer.fit(data.bottleneck)
    z = std(data.bottleneck)
    shrinkage = options.bottleneck_shrinkage
    oof = out_of_fold_distances(z, folds, shrinkage, low_rank=True)
    model = OODModel(
        standardizer=std,
        mahalanobis=LowRankMahalanobis.fit(z, shrinkage),
        threshold=ood_threshold(oof, options.ood_alpha),
        alpha=options.ood_alpha,
    )
    return model, oof


def fit_trust(
    data: TrustData, options: FitOptions | None = None, provenance: dict[str, Any] | None = None
) -> TrustModel:
    """Fit every trust model on ``data`` (held-out images only).

    Args:
        data: The fitting images and nuclei.
        options: Settings.
        provenance: Recorded in the model (sources, counts and seed are added).

    Returns:
        The fitted models.
    """
    options = options or FitOptions()
    folds = assign_folds(data.sources, options.n_folds, options.seed)
    calibration_folds = (
        selection_folds(data.sources, options) if options.calibration == "source" else folds
    )
    weights = source_weights(data.sources)
    scores, selection = {}, {}
    for name in SCORES:
        y = data.scores[name]
        set_name, alpha, table = select_score_model(data, name, options)
        features = SCORE_FEATURE_SETS[set_name]
        oof = out_of_fold_scores(data, name, calibration_folds, alpha, features)
        ridge = RidgeModel.fit(data.image_x[:, feature_columns(features)], y, alpha, weights)
        scores[name] = ScoreModel(
            ridge=ridge,
            features=features,
            half_width=conformal_quantile(np.abs(y - oof), options.alpha),
            alpha=options.alpha,
            calibration_predicted=np.clip(oof, 0.0, 1.0),
            calibration_true=y.copy(),
        )
        selection[name] = {"features": set_name, "ridge_alpha": alpha, "candidates_mae": table}
    ood, _ = fit_ood(data, folds, options)
    bottleneck = None if data.bottleneck is None else fit_bottleneck_ood(data, folds, options)[0]
    names, counts = np.unique(data.sources, return_counts=True)
    record = {
        **(provenance or {}),
        "sources": {str(n): int(c) for n, c in zip(names, counts, strict=True)},
        "n_images": int(data.sources.size),
        "n_nuclei": int(data.nucleus_correct.size),
        "seed": options.seed,
        "options": vars(options),
        "score_model_selection": selection,
    }
    return TrustModel(
        scores=scores,
        nucleus=fit_nucleus_model(data, options.logistic_alpha),
        nucleus_review_below=options.nucleus_review_below,
        ood=ood,
        provenance=record,
        ood_bottleneck=bottleneck,
    )
