"""Temperature and logit-bias fit of a Monte-Carlo averaged prediction (pure numpy / scipy).

Prediction maps every stochastic sample's foreground logit to ``z / T + b`` before the sigmoid
and averages the sample probabilities, so ``(T, b)`` minimise the NLL of the *MC-averaged*
probability ``p = mean_t sigmoid(z_t / T + b)`` (:func:`fit_mc_calibration`; with
``bias=False`` only ``T``, :func:`fit_mc_temperature`). For a deterministic model (one sample)
this is Platt / temperature scaling. Used by ``bayescellseg calibrate``
(:mod:`bayescellseg.pipelines.calibrate`).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

__all__ = [
    "BIAS_BOUNDS",
    "TEMPERATURE_BOUNDS",
    "fit_mc_calibration",
    "fit_mc_temperature",
    "mc_nll",
]

TEMPERATURE_BOUNDS = (0.05, 20.0)
BIAS_BOUNDS = (-10.0, 10.0)
_CHUNK = 2**17  # pixels per chunk of the NLL evaluation (bounded temporaries)


def _check_fit_inputs(
    logits: np.ndarray, targets: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = np.asarray(logits)
    if z.ndim == 1:
        z = z[None]
    y = np.asarray(targets).reshape(-1)
    if z.ndim != 2 or z.shape[1] != y.size or z.shape[0] < 1:
        raise ValueError(f"expected (T, N) logits and (N,) targets, got {z.shape} and {y.shape}")
    if y.size == 0:
        raise ValueError("no pixels to fit the temperature on")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("targets must be binary (bool or 0/1)")
    w = np.ones(y.size) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.size != y.size or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise ValueError("weights must be finite, >= 0, not all 0, one per pixel")
    return z, y.astype(bool), w


def _nll_sum(
    z: np.ndarray, y: np.ndarray, w: np.ndarray, temperature: float, bias: float = 0.0
) -> float:
    """Weighted sum of ``-log`` of the MC-averaged likelihood, chunked over pixels.

    float32 inside a chunk (per-pixel error ~1e-7, twice as fast), float64 across pixels.
    """
    n_samples = z.shape[0]
    scale = np.float32(1.0 / temperature)
    total = 0.0
    for start in range(0, y.size, _CHUNK):
        zc = z[:, start : start + _CHUNK].astype(np.float32) * scale + np.float32(bias)
        # log sigmoid(+-z) of the true class: log sigmoid(x) = -softplus(-x)
        log_p = -np.logaddexp(np.float32(0.0), np.where(y[start : start + _CHUNK], -zc, zc))
        top = log_p.max(axis=0)
        log_mean = np.log(np.exp(log_p - top).sum(axis=0)) + top - np.float32(np.log(n_samples))
        total -= float(np.dot(w[start : start + _CHUNK], log_mean.astype(np.float64)))
    return total


def mc_nll(
    logits: np.ndarray,
    targets: np.ndarray,
    temperature: float = 1.0,
    weights: np.ndarray | None = None,
    bias: float = 0.0,
) -> float:
    """Mean NLL (nats) of the MC-averaged probability ``mean_t sigmoid(z_t / T + bias)``.

    Args:
        logits: (T, N) foreground logits of T samples at N pixels ((N,) = one sample).
        targets: (N,) binary truth.
        temperature: ``T > 0``.
        weights: Optional (N,) pixel weights (e.g. inverse sampling rates); the result is the
            weighted mean.
        bias: Added to the tempered logits.

    Returns:
        The (weighted) mean negative log-likelihood (no clipping; float32 per pixel).

    Raises:
        ValueError: Bad shapes, non-finite logits, non-binary targets or bad weights.
    """
    z, y, w = _check_fit_inputs(logits, targets, weights)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not np.isfinite(bias):
        raise ValueError(f"bias must be finite, got {bias}")
    return _nll_sum(z, y, w, float(temperature), float(bias)) / float(w.sum())


def fit_mc_temperature(
    logits: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> float:
    """The temperature minimising :func:`mc_nll` (prediction's tempered MC average).

    A 13-point grid over ``log T`` finds the basin (the NLL of an average of tempered sigmoids
    need not be convex in ``1 / T``), then a bounded Brent search refines it to ``|d log T| <
    1e-4``. With one sample it equals ordinary temperature scaling.

    Args:
        logits: (T, N) raw foreground logits of T samples at N pixels ((N,) = one sample).
        targets: (N,) binary truth.
        weights: Optional (N,) pixel weights.
        bounds: Search interval of ``T``.

    Returns:
        The fitted temperature (a bound when the optimum lies outside).

    Raises:
        ValueError: Bad inputs or bounds.
    """
    z, y, w = _check_fit_inputs(logits, targets, weights)
    lo, hi = float(bounds[0]), float(bounds[1])
    if not 0.0 < lo < hi:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    grid = np.linspace(np.log(lo), np.log(hi), 13)
    values = [_nll_sum(z, y, w, float(np.exp(g))) for g in grid]
    k = int(np.argmin(values))
    res = optimize.minimize_scalar(
        lambda g: _nll_sum(z, y, w, float(np.exp(g))),
        bounds=(grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]),
        method="bounded",
        options={"xatol": 1e-4},
    )
    best = float(res.x) if res.fun <= values[k] else float(grid[k])
    return float(np.clip(np.exp(best), lo, hi))


def fit_mc_calibration(
    logits: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    bias: bool = True,
) -> tuple[float, float]:
    """The temperature and logit bias minimising :func:`mc_nll`.

    Starts from :func:`fit_mc_temperature` (bias 0), then refines ``(log T, b)`` jointly
    (Nelder-Mead). The joint optimum is kept only if it lowers the NLL and lies inside
    ``TEMPERATURE_BOUNDS`` x ``BIAS_BOUNDS``. With one sample this is Platt scaling of the logit.

    Args:
        logits: (T, N) raw foreground logits of T samples at N pixels ((N,) = one sample).
        targets: (N,) binary truth.
        weights: Optional (N,) pixel weights.
        bias: Fit the bias too (False: temperature only, bias 0).

    Returns:
        ``(temperature, bias)``.

    Raises:
        ValueError: Bad inputs.
    """
    z, y, w = _check_fit_inputs(logits, targets, weights)
    temperature = fit_mc_temperature(z, y, w)
    if not bias:
        return temperature, 0.0

    def objective(x: np.ndarray) -> float:
        t, b = float(np.exp(x[0])), float(x[1])
        inside = TEMPERATURE_BOUNDS[0] <= t <= TEMPERATURE_BOUNDS[1]
        inside = inside and BIAS_BOUNDS[0] <= b <= BIAS_BOUNDS[1]
        return _nll_sum(z, y, w, t, b) if inside else np.inf

    start = np.array([np.log(temperature), 0.0])
    simplex = np.array([start, start + [0.2, 0.0], start + [0.0, 0.5]])
    res = optimize.minimize(
        objective,
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-4, "fatol": 1e-9 * float(w.sum()), "initial_simplex": simplex},
    )
    if not (np.isfinite(res.fun) and res.fun < objective(start)):
        return temperature, 0.0
    return float(np.exp(res.x[0])), float(res.x[1])
