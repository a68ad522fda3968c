"""Out-of-distribution score: Mahalanobis distance to the fitting images' feature vectors.

The covariance is shrunk towards its diagonal, ``S_l = (1 - l) S + l diag(S)``, so it stays
invertible with few images and many features. The distance of ``x`` is
``sqrt((x - m)^T S_l^-1 (x - m))``. The threshold is the split-conformal ``1 - alpha`` quantile
of distances of images that were not used to fit the mean and covariance (out-of-fold), so about
a fraction ``alpha`` of new in-distribution images is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bayescellseg.trust.conformal import conformal_quantile


@dataclass(frozen=True)
class Mahalanobis:
    """Mean and inverse shrunk covariance of a set of feature vectors.

    Attributes:
        mean: (k,) mean.
        precision: (k, k) inverse of the shrunk covariance.
    """

    mean: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, shrinkage: float = 0.1) -> Mahalanobis:
        """Fit on (n, k) feature vectors.

        Args:
            x: (n, k) finite features, n >= 2.
            shrinkage: ``l`` in [0, 1] (0: the sample covariance, 1: its diagonal).
        """
        arr = np.asarray(x, np.float64)
        if arr.ndim != 2 or arr.shape[0] < 2 or not np.all(np.isfinite(arr)):
            raise ValueError(f"need a finite (n >= 2, k) array, got shape {arr.shape}")
        if not 0 <= shrinkage <= 1:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
        mean = arr.mean(axis=0)
        cov = np.atleast_2d(np.cov(arr, rowvar=False))
        diag = np.diag(np.maximum(np.diag(cov), 1e-12))
        shrunk = (1.0 - shrinkage) * cov + shrinkage * diag
        return cls(mean=mean, precision=np.linalg.pinv(shrunk, hermitian=True))

    def distance(self, x: np.ndarray) -> np.ndarray:
        """(n,) Mahalanobis distances of (n, k) feature vectors."""
        d = np.atleast_2d(np.asarray(x, np.float64)) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"mean": self.mean.tolist(), "precision": self.precision.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mahalanobis:
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["precision"], np.float64))


def out_of_fold_distances(x: np.ndarray, folds: np.ndarray, shrinkage: float = 0.1) -> np.ndarray:
    """Distance of every row to a :class:`Mahalanobis` fitted on the other folds' rows.

    Args:
        x: (n, k) features.
        folds: (n,) fold index of each row (at least two folds).
        shrinkage: Covariance shrinkage.

    Returns:
        (n,) out-of-fold distances.
    """
    arr = np.asarray(x, np.float64)
    f = np.asarray(folds).reshape(-1)
    if f.shape != (arr.shape[0],) or np.unique(f).size < 2:
        raise ValueError("folds must give each row a fold, with at least two folds")
    out = np.empty(arr.shape[0])
    for fold in np.unique(f):
        held = f == fold
        out[held] = Mahalanobis.fit(arr[~held], shrinkage).distance(arr[held])
    return out


def ood_threshold(distances: np.ndarray, alpha: float = 0.05) -> float:
    """Conformal threshold on out-of-fold in-distribution distances (flag ``d > threshold``)."""
    return conformal_quantile(distances, alpha)
