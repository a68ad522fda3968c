"""Out-of-distribution score: Mahalanobis distance to the fitting images' feature vectors.

The covariance is shrunk towards its diagonal, ``S_l = (1 - l) S + l diag(S)``, so it stays
invertible with few images and many features. The distance of ``x`` is
``sqrt((x - m)^T S_l^-1 (x - m))``. The threshold is the split-conformal ``1 - alpha`` quantile
of distances of images that were not used to fit the mean and covariance (out-of-fold), so about
a fraction ``alpha`` of new in-distribution images is flagged.

:class:`LowRankMahalanobis` is the same distance for many features and few images (the
network's bottleneck statistic: 512 numbers, a few hundred images): with shrinkage ``l > 0`` the
inverse is ``D^-1/2 (I / l - V diag(c) V^T) D^-1/2``, where ``V`` are the right singular vectors
of the centred, ``D^-1/2``-scaled fitting rows, so it stores ``n - 1`` directions instead of a
``k x k`` matrix.
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


@dataclass(frozen=True)
class LowRankMahalanobis:
    """:class:`Mahalanobis` with shrinkage ``l > 0``, stored by its low-rank part.

    Attributes:
        mean: (k,) mean.
        scale: (k,) square root of the covariance's diagonal.
        shrinkage: ``l`` in (0, 1].
        directions: (r, k) orthonormal directions ``V^T`` of the scaled, centred fitting rows.
        weights: (r,) ``1 / l - 1 / ((1 - l) s^2 + l)`` of their squared singular values ``s^2``.
    """

    mean: np.ndarray
    scale: np.ndarray
    shrinkage: float
    directions: np.ndarray
    weights: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, shrinkage: float = 0.5) -> LowRankMahalanobis:
        """Fit on (n, k) finite feature vectors, n >= 2, with ``0 < shrinkage <= 1``."""
        arr = np.asarray(x, np.float64)
        if arr.ndim != 2 or arr.shape[0] < 2 or not np.all(np.isfinite(arr)):
            raise ValueError(f"need a finite (n >= 2, k) array, got shape {arr.shape}")
        if not 0 < shrinkage <= 1:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
        mean = arr.mean(axis=0)
        scale = np.sqrt(np.maximum(arr.var(axis=0, ddof=1), 1e-12))
        scaled = (arr - mean) / scale / np.sqrt(arr.shape[0] - 1)
        _, s, vt = np.linalg.svd(scaled, full_matrices=False)
        keep = s > 1e-10 * max(float(s.max(initial=0.0)), 1e-300)
        eig = (1.0 - shrinkage) * s[keep] ** 2 + shrinkage
        weights = 1.0 / shrinkage - 1.0 / eig
        return cls(mean, scale, float(shrinkage), vt[keep], weights)

    def distance(self, x: np.ndarray) -> np.ndarray:
        """(n,) Mahalanobis distances of (n, k) feature vectors."""
        y = (np.atleast_2d(np.asarray(x, np.float64)) - self.mean) / self.scale
        proj = y @ self.directions.T
        sq = np.sum(y * y, axis=1) / self.shrinkage - np.square(proj) @ self.weights
        return np.sqrt(np.maximum(sq, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (7 significant digits: the file stays small)."""

        def short(a: np.ndarray) -> list:
            return np.vectorize(lambda v: float(f"{v:.7g}"), otypes=[float])(a).tolist()

        return {"kind": "low_rank", "mean": short(self.mean), "scale": short(self.scale),
                "shrinkage": self.shrinkage, "directions": short(self.directions),
                "weights": short(self.weights)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LowRankMahalanobis:
        """Inverse of :meth:`to_dict`."""
        k = len(data["mean"])
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["scale"], np.float64),
                   float(data["shrinkage"]),
                   np.asarray(data["directions"], np.float64).reshape(-1, k),
                   np.asarray(data["weights"], np.float64))  # fmt: skip


def distance_from_dict(data: dict[str, Any]) -> Mahalanobis | LowRankMahalanobis:
    """A :class:`Mahalanobis` or :class:`LowRankMahalanobis` from its ``to_dict``."""
    if data.get("kind") == "low_rank":
        return LowRankMahalanobis.from_dict(data)
    return Mahalanobis.from_dict(data)


def out_of_fold_distances(
    x: np.ndarray, folds: np.ndarray, shrinkage: float = 0.1, low_rank: bool = False
) -> np.ndarray:
    """Distance of every row to a :class:`Mahalanobis` fitted on the other folds' rows.

    Args:
        x: (n, k) features.
        folds: (n,) fold index of each row (at least two folds).
        shrinkage: Covariance shrinkage.
        low_rank: Fit :class:`LowRankMahalanobis` (the same distances; needs shrinkage > 0).

    Returns:
        (n,) out-of-fold distances.
    """
    arr = np.asarray(x, np.float64)
    f = np.asarray(folds).reshape(-1)
    if f.shape != (arr.shape[0],) or np.unique(f).size < 2:
        raise ValueError("folds must give each row a fold, with at least two folds")
    out = np.empty(arr.shape[0])
    model = LowRankMahalanobis if low_rank else Mahalanobis
    for fold in np.unique(f):
        held = f == fold
        out[held] = model.fit(arr[~held], shrinkage).distance(arr[held])
    return out


def ood_threshold(distances: np.ndarray, alpha: float = 0.05) -> float:
    """Conformal threshold on out-of-fold in-distribution distances (flag ``d > threshold``)."""
    return conformal_quantile(distances, alpha)
