"""Small linear models stored as plain numbers: standardised ridge and logistic regression.

Both standardise their inputs with the fitting set's (weighted) mean and standard deviation
and keep everything they need in :meth:`to_dict`, so a model folder can carry them as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from scipy import optimize
from scipy.special import expit


def _weights(n: int, weights: np.ndarray | None) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != (n,) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError("weights must be n non-negative numbers with a positive sum")
    return w / w.sum()


def _matrix(x: np.ndarray, n_features: int | None = None) -> np.ndarray:
    arr = np.asarray(x, np.float64)
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"features must be a finite 2-D array, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"expected {n_features} features, got {arr.shape[1]}")
    return arr


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / scale`` per column (scale 1 where a column is constant).

    Attributes:
        mean: (k,) column means.
        scale: (k,) column standard deviations.
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, weights: np.ndarray | None = None) -> Standardizer:
        """Weighted column means and standard deviations of ``x`` (n, k)."""
        arr = _matrix(x)
        w = _weights(arr.shape[0], weights)
        mean = w @ arr
        std = np.sqrt(w @ np.square(arr - mean))
        return cls(mean=mean, scale=np.where(std > 1e-12, std, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The standardised copy of ``x`` (n, k)."""
        return (_matrix(x, self.mean.size) - self.mean) / self.scale

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready dict."""
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardizer:
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["scale"], np.float64))


@dataclass(frozen=True)
class _LinearModel:
    """``intercept + z @ coef`` on standardised features ``z``, stored as plain JSON."""

    standardizer: Standardizer
    coef: np.ndarray
    intercept: float

    def linear(self, x: np.ndarray) -> np.ndarray:
        """(n,) linear predictor for (n, k) features."""
        return self.intercept + self.standardizer(x) @ self.coef

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"standardizer": self.standardizer.to_dict(), "coef": self.coef.tolist(),
                "intercept": self.intercept}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`."""
        return cls(Standardizer.from_dict(data["standardizer"]),
                   np.asarray(data["coef"], np.float64), float(data["intercept"]))  # fmt: skip


@dataclass(frozen=True)
class RidgeModel(_LinearModel):
    """``y = intercept + z @ coef`` on standardised features ``z``.

    Attributes:
        standardizer: Input standardisation.
        coef: (k,) coefficients.
        intercept: Intercept.
    """

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, alpha: float = 1.0, weights: np.ndarray | None = None
    ) -> RidgeModel:
        """Weighted ridge regression: minimise ``sum w (y - yhat)^2 + alpha/n |coef|^2``.

        Args:
            x: (n, k) features.
            y: (n,) targets.
            alpha: L2 penalty on the standardised coefficients (scaled by 1/n; not the
                intercept).
            weights: (n,) sample weights (None: equal).
        """
        arr = _matrix(x)
        target = np.asarray(y, np.float64).reshape(-1)
        if target.shape != (arr.shape[0],) or not np.all(np.isfinite(target)):
            raise ValueError("y must be n finite numbers")
        w = _weights(arr.shape[0], weights)
        std = Standardizer.fit(arr, w)
        z = std(arr)
        z_mean, y_mean = w @ z, float(w @ target)
        zc, yc = z - z_mean, target - y_mean
        gram = zc.T @ (w[:, None] * zc) + (alpha / arr.shape[0]) * np.eye(arr.shape[1])
        coef = np.linalg.solve(gram, zc.T @ (w * yc))
        return cls(standardizer=std, coef=coef, intercept=float(y_mean - z_mean @ coef))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n,) predictions for (n, k) features."""
        return self.linear(x)


@dataclass(frozen=True)
class LogisticModel(_LinearModel):
    """``P(y = 1) = sigmoid(intercept + z @ coef)`` on standardised features ``z``.

    Attributes:
        standardizer: Input standardisation.
        coef: (k,) coefficients.
        intercept: Intercept.
    """

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, alpha: float = 1.0, weights: np.ndarray | None = None
    ) -> LogisticModel:
        """Weighted L2-penalised logistic regression (L-BFGS on the exact gradient).

        Minimises ``-sum w log p(y) + alpha / (2 n) |coef|^2`` (weights normalised to sum 1).

        Args:
            x: (n, k) features.
            y: (n,) binary labels.
            alpha: L2 penalty on the standardised coefficients (not the intercept).
            weights: (n,) sample weights (None: equal).
        """
        arr = _matrix(x)
        target = np.asarray(y).reshape(-1).astype(np.float64)
        if target.shape != (arr.shape[0],) or not np.all((target == 0) | (target == 1)):
            raise ValueError("y must be n binary labels")
        w = _weights(arr.shape[0], weights)
        std = Standardizer.fit(arr, w)
        z = np.column_stack([np.ones(arr.shape[0]), std(arr)])
        penalty = np.r_[0.0, np.full(arr.shape[1], alpha / arr.shape[0])]

        def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
            eta = z @ beta
            nll = float(w @ (np.logaddexp(0.0, eta) - target * eta))
            grad = z.T @ (w * (expit(eta) - target)) + penalty * beta
            return nll + 0.5 * float(penalty @ np.square(beta)), grad

        res = optimize.minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B")
        return cls(standardizer=std, coef=res.x[1:].copy(), intercept=float(res.x[0]))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n,) probabilities of the positive class."""
        return expit(self.linear(x))
