"""Calibration of a binary (foreground) probability: ECE, reliability bins, Brier, NLL
and a streaming accumulator for evaluating many images (the temperature fit is
:mod:`bayescellseg.evaluation.temperature`).

All functions take a probability map ``prob`` in [0, 1], a binary ``target`` of the same
shape (bool or 0/1) and an optional boolean ``mask`` selecting the pixels to score.

Reliability bins use the *positive-frequency* form suited to a binary foreground
probability: pixels are put in ``n_bins`` equal-width bins of the predicted probability
``p`` on [0, 1] (bin ``b`` holds ``b / n_bins <= p < (b + 1) / n_bins``; ``p = 1`` goes into
the last bin), and in each bin the mean predicted probability is compared with the fraction
of pixels that really are foreground. (The multi-class "confidence vs accuracy" form would
fold ``p`` and ``1 - p`` together and hide which side is miscalibrated.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries


@dataclass(frozen=True)
class ReliabilityBins:
    """Reliability diagram data (positive frequency vs mean predicted probability).

    Attributes:
        edges: Bin edges, shape (n_bins + 1,), ``linspace(0, 1, n_bins + 1)``.
        mean_prob: Mean predicted probability in each bin (nan for empty bins).
        frequency: Fraction of foreground (positive) pixels in each bin (nan for empty bins).
        counts: Number of pixels in each bin.
    """

    edges: np.ndarray
    mean_prob: np.ndarray
    frequency: np.ndarray
    counts: np.ndarray

    @property
    def n(self) -> int:
        """Total number of pixels."""
        return int(self.counts.sum())

    @property
    def ece(self) -> float:
        """``sum_b (n_b / N) |mean_prob_b - frequency_b|`` over non-empty bins (nan if N = 0)."""
        n = self.n
        if n == 0:
            return float("nan")
        full = self.counts > 0
        gaps = np.abs(self.mean_prob[full] - self.frequency[full])
        return float(np.sum(self.counts[full] * gaps) / n)


@dataclass(frozen=True)
class CalibrationResult:
    """Calibration scores of all pixels seen by a :class:`CalibrationAccumulator`.

    Attributes:
        ece: Expected calibration error (see :func:`ece`).
        brier: Mean squared error of the probability (see :func:`brier`).
        nll: Mean binary negative log-likelihood in nats (see :func:`nll`).
        bins: The reliability bins.
        n: Number of pixels.
    """

    ece: float
    brier: float
    nll: float
    bins: ReliabilityBins
    n: int

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict (bins as lists, nan for empty bins kept as None)."""

        def clean(a: np.ndarray) -> list:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "ece": self.ece,
            "brier": self.brier,
            "nll": self.nll,
            "n": self.n,
            "bins": {
                "edges": [float(e) for e in self.bins.edges],
                "mean_prob": clean(self.bins.mean_prob),
                "frequency": clean(self.bins.frequency),
                "counts": [int(c) for c in self.bins.counts],
            },
        }


def _flatten(
    prob: np.ndarray, target: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 probabilities and 0/1 targets of the selected pixels (1-D copies)."""
    p = np.asarray(prob)
    y = np.asarray(target)
    if p.shape != y.shape:
        raise ValueError(f"prob and target differ in shape: {p.shape} vs {y.shape}")
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != p.shape:
            raise ValueError(f"mask shape {m.shape} differs from prob shape {p.shape}")
        if m.dtype != bool:
            raise ValueError(f"mask must be a boolean array, got dtype {m.dtype}")
        p, y = p[m], y[m]
    p = p.astype(np.float64).reshape(-1)
    y = y.astype(np.float64).reshape(-1)
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("prob must hold finite probabilities in [0, 1]")
    if y.size and not np.all((y == 0.0) | (y == 1.0)):
        raise ValueError("target must be binary (bool or 0/1)")
    return p, y


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each probability; ``p = 1`` goes into the last bin."""
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


def _check_bins(n_bins: int) -> int:
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    return int(n_bins)


class CalibrationAccumulator:
    """Streams calibration statistics over many images with bounded memory.

    Keeps per-bin counts, per-bin sums of probability and target, the sum of squared errors
    and the sum of log-losses, so :meth:`result` equals the one-shot functions applied to
    all pixels at once (up to floating-point summation order, ~1e-15 relative).

    Args:
        n_bins: Number of equal-width probability bins.
        eps: Probabilities are clipped to ``[eps, 1 - eps]`` for the NLL.
    """

    def __init__(self, n_bins: int = 15, eps: float = 1e-7) -> None:
        self.n_bins = _check_bins(n_bins)
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
        self.eps = float(eps)
        self._counts = np.zeros(self.n_bins, np.int64)
        self._sum_prob = np.zeros(self.n_bins, np.float64)
        self._sum_target = np.zeros(self.n_bins, np.float64)
        self._sum_sq = 0.0
        self._sum_nll = 0.0

    def add(self, prob: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add the (masked) pixels of one image.

        Args:
            prob: Foreground probability in [0, 1].
            target: Binary truth of the same shape.
            mask: Optional boolean mask of the pixels to include.

        Raises:
            ValueError: On shape mismatch, probabilities outside [0, 1] or non-binary targets.
        """
        p, y = _flatten(prob, target, mask)
        if p.size == 0:
            return
        idx = _bin_index(p, self.n_bins)
        self._counts += np.bincount(idx, minlength=self.n_bins)
        self._sum_prob += np.bincount(idx, weights=p, minlength=self.n_bins)
        self._sum_target += np.bincount(idx, weights=y, minlength=self.n_bins)
        self._sum_sq += float(np.sum((p - y) ** 2))
        pc = np.clip(p, self.eps, 1.0 - self.eps)
        self._sum_nll += float(-np.sum(np.where(y > 0.5, np.log(pc), np.log1p(-pc))))

    @property
    def n(self) -> int:
        """Number of pixels added so far."""
        return int(self._counts.sum())

    def bins(self) -> ReliabilityBins:
        """Reliability bins of all pixels added so far."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_prob = np.where(self._counts > 0, self._sum_prob / self._counts, np.nan)
            freq = np.where(self._counts > 0, self._sum_target / self._counts, np.nan)
        return ReliabilityBins(
            edges=np.linspace(0.0, 1.0, self.n_bins + 1),
            mean_prob=mean_prob,
            frequency=freq,
            counts=self._counts.copy(),
        )

    def result(self) -> CalibrationResult:
        """ECE, Brier, NLL and bins of all pixels so far (nan scores when nothing was added)."""
        n = self.n
        bins = self.bins()
        if n == 0:
            nan = float("nan")
            return CalibrationResult(ece=nan, brier=nan, nll=nan, bins=bins, n=0)
        ece_value = float(np.sum(np.abs(self._sum_prob - self._sum_target)) / n)
        return CalibrationResult(
            ece=ece_value, brier=self._sum_sq / n, nll=self._sum_nll / n, bins=bins, n=n
        )


def _one_shot(
    prob: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None,
    n_bins: int = 15,
    eps: float = 1e-7,
) -> CalibrationResult:
    acc = CalibrationAccumulator(n_bins=n_bins, eps=eps)
    acc.add(prob, target, mask)
    return acc.result()


def ece(
    prob: np.ndarray, target: np.ndarray, n_bins: int = 15, mask: np.ndarray | None = None
) -> float:
    """Expected calibration error of a binary probability (positive-frequency form).

    ``ECE = sum_b (n_b / N) * |mean(p_i, i in b) - mean(y_i, i in b)|
    = (1 / N) * sum_b |sum_{i in b} (p_i - y_i)|`` with ``n_bins`` equal-width bins on [0, 1]
    (``p = 1`` in the last bin).

    Args:
        prob: Foreground probability in [0, 1].
        target: Binary truth of the same shape.
        n_bins: Number of bins.
        mask: Optional boolean mask of the pixels to score.

    Returns:
        ECE in [0, 1]; nan when no pixel is selected.
    """
    return _one_shot(prob, target, mask, n_bins).ece


def reliability_bins(
    prob: np.ndarray, target: np.ndarray, n_bins: int = 15, mask: np.ndarray | None = None
) -> ReliabilityBins:
    """Per-bin mean predicted probability, positive frequency and count (reliability diagram).

    Args:
        prob: Foreground probability in [0, 1].
        target: Binary truth of the same shape.
        n_bins: Number of equal-width bins on [0, 1].
        mask: Optional boolean mask of the pixels to include.

    Returns:
        A :class:`ReliabilityBins` (empty bins hold nan means and a zero count).
    """
    return _one_shot(prob, target, mask, n_bins).bins


def brier(prob: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Brier score ``mean((p_i - y_i)^2)``.

    Args:
        prob: Foreground probability in [0, 1].
        target: Binary truth of the same shape.
        mask: Optional boolean mask of the pixels to score.

    Returns:
        The score in [0, 1]; nan when no pixel is selected.
    """
    return _one_shot(prob, target, mask).brier


def nll(
    prob: np.ndarray, target: np.ndarray, eps: float = 1e-7, mask: np.ndarray | None = None
) -> float:
    """Mean binary negative log-likelihood (nats).

    ``NLL = -mean(y_i log p_i + (1 - y_i) log(1 - p_i))`` with ``p`` clipped to
    ``[eps, 1 - eps]`` so a confident mistake costs at most ``-log(eps)``.

    Args:
        prob: Foreground probability in [0, 1].
        target: Binary truth of the same shape.
        eps: Clipping of the probabilities.
        mask: Optional boolean mask of the pixels to score.

    Returns:
        The NLL (>= 0); nan when no pixel is selected.
    """
    return _one_shot(prob, target, mask, eps=eps).nll


def boundary_band(labels_or_fg: np.ndarray, width: int = 3) -> np.ndarray:
    """Pixels within ``width`` pixels of a nucleus boundary, inside or outside.

    The boundary is the "thick" boundary of :func:`skimage.segmentation.find_boundaries`:
    every pixel with a 4/8-neighbour of a different label (nucleus/background and
    nucleus/nucleus contacts, one pixel on each side). The band is the set of pixels whose
    Euclidean distance to the boundary is ``< width``, i.e. ``width`` pixels on each side of a
    straight edge. With a plain foreground mask, contacts between touching nuclei are not seen.

    Args:
        labels_or_fg: 2-D instance labels (integers) or a boolean foreground mask.
        width: Half-width of the band in pixels (>= 1).

    Returns:
        Boolean mask of the band, same shape as the input.

    Raises:
        ValueError: If ``width < 1`` or the input is not 2-D.
    """
    labels = np.asarray(labels_or_fg)
    if labels.ndim != 2:
        raise ValueError(f"boundary_band expects a 2-D array, got shape {labels.shape}")
    if int(width) != width or width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    boundary = find_boundaries(labels, mode="thick")
    if not boundary.any():
        return np.zeros(labels.shape, bool)
    return ndimage.distance_transform_edt(~boundary) < width
