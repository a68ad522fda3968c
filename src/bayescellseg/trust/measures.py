"""How well the trust signals hold against truth: the measures ``evaluate`` reports.

:func:`trust_measures` is the one call the evaluation makes, on a :class:`TrustBatch` collected
while it scores images. Per dataset and overall it reports:

* predicted vs true DSB score: MAE, bias, Pearson and Spearman correlation, interval coverage and
  mean width;
* the ``--min-quality`` rule's realised rate (share of unflagged images with a true score at
  least the stated quality) beside the stated ``1 - alpha``;
* the ``--review-fraction`` budget's share of the oracle's gain in the mean DSB of kept images;
* ``p_correct``: ECE (15 bins), reliability bins, AUROC of ``1 - p_correct`` for the errors;
* OOD: share flagged, and the AUROC of the OOD score of each dataset against all the others
  (the combined ``ood_level`` when every image has it, else the image-feature ``ood_score``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bayescellseg.metrics.calibration import ece, reliability_bins
from bayescellseg.metrics.uncertainty import auroc, spearman
from bayescellseg.trust.conformal import flag_lowest


@dataclass(frozen=True)
class TrustBatch:
    """Trust signals and truth of scored images and their nuclei.

    Attributes:
        datasets: (n,) dataset of each image.
        predicted: (n,) predicted DSB score.
        low: (n,) lower end of its interval.
        high: (n,) upper end.
        true: (n,) true DSB score.
        ood_score: (n,) OOD distance.
        ood: (n,) OOD flag.
        nucleus_dataset: (m,) dataset of each predicted nucleus.
        p_correct: (m,) its ``p_correct``.
        correct: (m,) whether it matches a true nucleus at IoU > 0.5.
        flagged: (n,) the ``--min-quality`` rule's review flags (None: no rule was used).
        ood_level: (n,) the combined OOD score (larger distance over its threshold; NaN where
            unknown), or None.
    """

    datasets: np.ndarray
    predicted: np.ndarray
    low: np.ndarray
    high: np.ndarray
    true: np.ndarray
    ood_score: np.ndarray
    ood: np.ndarray
    nucleus_dataset: np.ndarray
    p_correct: np.ndarray
    correct: np.ndarray
    flagged: np.ndarray | None = None
    ood_level: np.ndarray | None = None

    def ood_ranking(self) -> np.ndarray:
        """The OOD score the AUROC ranks by: ``ood_level`` when known for every image (it
        ranks as ``ood_score`` without a bottleneck model), else ``ood_score``."""
        level = self.ood_level
        if level is not None and level.size and np.all(np.isfinite(level)):
            return level
        return self.ood_score


def score_measures(
    predicted: np.ndarray, low: np.ndarray, high: np.ndarray, true: np.ndarray
) -> dict[str, float]:
    """MAE, bias, correlations, interval coverage and width of predicted scores."""
    p, lo, hi, t = (np.asarray(a, np.float64).reshape(-1) for a in (predicted, low, high, true))
    if p.size == 0:
        return {"n_images": 0}
    pearson = (
        float(stats.pearsonr(p, t).statistic) if p.size >= 3 and p.std() and t.std() else math.nan
    )
    return {
        "n_images": int(p.size),
        "mae": float(np.mean(np.abs(p - t))),
        "bias": float(np.mean(p - t)),
        "pearson": pearson,
        "spearman": spearman(p, t),
        "coverage": float(np.mean((t >= lo) & (t <= hi))),
        "mean_width": float(np.mean(hi - lo)),
    }


def review_measures(
    flags: np.ndarray, true: np.ndarray, min_quality: float, alpha: float
) -> dict[str, float]:
    """Realised share of unflagged images scoring ``>= min_quality``, beside the stated one.

    Args:
        flags: (n,) bool, True = flagged for review by the rule.
        true: (n,) true scores.
        min_quality: The rule's ``q``.
        alpha: The rule's allowed share below ``q`` (stated rate ``1 - alpha``).
    """
    f = np.asarray(flags, bool).reshape(-1)
    t = np.asarray(true, np.float64).reshape(-1)
    kept = t[~f]
    return {
        "min_quality": float(min_quality),
        "stated_rate": 1.0 - float(alpha),
        "n_flagged": int(f.sum()),
        "n_unflagged": int(kept.size),
        "realised_rate": float(np.mean(kept >= min_quality)) if kept.size else math.nan,
    }


def budget_measures(predicted: np.ndarray, true: np.ndarray, fraction: float) -> dict[str, float]:
    """Mean true score of the images kept when ``fraction`` is reviewed, against the oracle's."""
    t = np.asarray(true, np.float64).reshape(-1)
    if t.size == 0:
        return {"fraction": fraction}
    model_kept = t[~flag_lowest(predicted, fraction)]
    oracle_kept = t[~flag_lowest(t, fraction)]
    gain, best = model_kept.mean() - t.mean(), oracle_kept.mean() - t.mean()
    return {
        "fraction": fraction,
        "mean_all": float(t.mean()),
        "mean_kept": float(model_kept.mean()),
        "mean_kept_oracle": float(oracle_kept.mean()),
        "oracle_gain_share": float(gain / best) if best > 0 else math.nan,
    }


def nucleus_measures(p_correct: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict:
    """ECE and reliability bins of ``p_correct``, and AUROC of ``1 - p_correct`` for errors."""
    p = np.asarray(p_correct, np.float64).reshape(-1)
    y = np.asarray(correct, bool).reshape(-1)
    if p.size == 0:
        return {"n_nuclei": 0}
    bins = reliability_bins(p, y, n_bins)
    return {
        "n_nuclei": int(p.size),
        "ece": ece(p, y, n_bins),
        "mean_p_correct": float(p.mean()),
        "accuracy": float(y.mean()),
        "error_auroc": auroc(1.0 - p, ~y),
        "reliability": {
            "mean_p_correct": bins.mean_prob.tolist(),
            "fraction_correct": bins.frequency.tolist(),
            "count": bins.counts.tolist(),
        },  # fmt: skip
    }


def _group(
    batch: TrustBatch,
    keep: np.ndarray,
    nuc: np.ndarray,
    rule: tuple[float, float] | None,
    fraction: float,
) -> dict:
    out = {
        "score": score_measures(batch.predicted[keep], batch.low[keep], batch.high[keep],
                                batch.true[keep]),
        "budget": budget_measures(batch.predicted[keep], batch.true[keep], fraction),
        "nucleus": nucleus_measures(batch.p_correct[nuc], batch.correct[nuc]),
        "ood_flagged": float(np.mean(batch.ood[keep])) if keep.any() else math.nan,
    }  # fmt: skip
    if rule is not None and batch.flagged is not None:
        out["review"] = review_measures(batch.flagged[keep], batch.true[keep], *rule)
    return out


def trust_measures(
    batch: TrustBatch,
    min_quality: float | None = None,
    alpha: float = 0.1,
    review_fraction: float = 0.2,
) -> dict:
    """Every trust measure, overall and per dataset.

    Args:
        batch: The scored images and nuclei (with ``flagged`` for the review-rule measure).
        min_quality: The ``--min-quality`` of the rule that set ``batch.flagged`` (None: none).
        alpha: Its allowed share below ``min_quality``.
        review_fraction: The review budget to measure.

    Returns:
        ``{"overall": {...}, "datasets": {name: {..., "ood_auroc_vs_others"}}}``.
    """
    names = list(dict.fromkeys(batch.datasets.tolist()))
    rule = None if min_quality is None else (min_quality, alpha)
    out = {"overall": _group(batch, np.ones(batch.datasets.size, bool),
                             np.ones(batch.p_correct.size, bool), rule, review_fraction),
           "datasets": {}}  # fmt: skip
    for name in names:
        keep = batch.datasets == name
        group = _group(batch, keep, batch.nucleus_dataset == name, rule, review_fraction)
        group["ood_auroc_vs_others"] = (
            auroc(batch.ood_ranking(), keep) if 0 < keep.sum() < keep.size else math.nan
        )
        out["datasets"][name] = group
    return out
