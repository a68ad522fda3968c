"""Per-pixel uncertainty maps from the moments of T stochastic foreground probabilities.

Only quantities that are *linear* in the samples are accumulated (and stitched across tiles):
the mean foreground probability ``E[p]``, the second moment ``E[p^2]``, the expected entropy
``E[H(p)]`` and the mean contour probability. The non-linear maps are computed afterwards:

* predictive entropy (total uncertainty) ``H(E[p])``,
* aleatoric uncertainty = expected entropy ``E[H(p)]``,
* epistemic uncertainty = mutual information ``H(E[p]) - E[H(p)]`` (clipped at 0),
* variance ``E[p^2] - E[p]^2`` (population variance over the samples, ddof=0, clipped at 0).

Entropies are binary entropies in **bits** (log base 2), so every map lies in [0, 1]
(the variance in [0, 0.25]). Gaussian tile blending is a convex combination of per-tile moments,
so the stitched maps are the moments of a mixture and keep ``0 <= MI <= H`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import xlogy

_LN2 = float(np.log(2.0))
TIE_WEIGHT = 1e-3
"""Weight of the mean entropy that breaks ties of the image uncertainty (see
:func:`tie_broken_uncertainty`)."""
TIE_FLOOR = 1e-6
"""Smallest image uncertainty of an image with at least one nucleus."""


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Binary entropy in bits, ``-(p log2 p + (1-p) log2(1-p))``, with ``0 log 0 = 0``.

    Args:
        p: Probabilities in [0, 1] (any shape). Values outside are clipped.

    Returns:
        float32 array of the same shape, in [0, 1].
    """
    q = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    h = -(xlogy(q, q) + xlogy(1.0 - q, 1.0 - q)) / _LN2
    return np.clip(h, 0.0, 1.0).astype(np.float32)


def binary_entropy_tensor(p: torch.Tensor) -> torch.Tensor:
    """:func:`binary_entropy` of a tensor, on its device (computed in float64 like the numpy
    version, returned as float32)."""
    q = p.to(torch.float64).clamp(0.0, 1.0)
    h = -(torch.special.xlogy(q, q) + torch.special.xlogy(1.0 - q, 1.0 - q)) / _LN2
    return h.clamp(0.0, 1.0).to(torch.float32)


@dataclass(frozen=True)
class SampleMoments:
    """Linear moments over samples; every field is an (H, W) float32 array.

    Attributes:
        probability: Mean foreground probability ``E[p]``.
        second_moment: ``E[p^2]``.
        expected_entropy: ``E[H(p)]`` in bits.
        contour: Mean contour probability.
    """

    probability: np.ndarray
    second_moment: np.ndarray
    expected_entropy: np.ndarray
    contour: np.ndarray


@dataclass(frozen=True)
class UncertaintyMaps:
    """Per-pixel maps, each (H, W) float32.

    Attributes:
        probability: Mean foreground probability.
        entropy: Predictive entropy ``H(E[p])`` (total uncertainty), bits, [0, 1].
        aleatoric: Expected entropy ``E[H(p)]``, bits, [0, 1].
        epistemic: Mutual information ``H(E[p]) - E[H(p)]``, bits, [0, 1].
        variance: Population variance of ``p`` over the samples, [0, 0.25].
        contour: Mean contour probability.
    """

    probability: np.ndarray
    entropy: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    variance: np.ndarray
    contour: np.ndarray


def sample_moments(foreground: np.ndarray, contour: np.ndarray) -> SampleMoments:
    """Moments over the first axis of per-sample probability maps.

    Args:
        foreground: (T, H, W) foreground probabilities of T samples.
        contour: (T, H, W) contour probabilities of the same samples.

    Returns:
        The samples' moments.
    """
    if foreground.ndim != 3 or foreground.shape != contour.shape:
        raise ValueError(
            f"expected two (T, H, W) arrays of equal shape, got {foreground.shape}, {contour.shape}"
        )
    fg = foreground.astype(np.float32, copy=False)
    return SampleMoments(
        probability=fg.mean(axis=0),
        second_moment=np.square(fg).mean(axis=0),
        expected_entropy=binary_entropy(fg).mean(axis=0),
        contour=contour.astype(np.float32, copy=False).mean(axis=0),
    )


def uncertainty_maps(moments: SampleMoments) -> UncertaintyMaps:
    """Entropy, mutual information and variance from (possibly stitched) moments.

    Args:
        moments: Mean probability, second moment, expected entropy and mean contour.

    Returns:
        The uncertainty maps (see the module docstring for the definitions).
    """
    p = np.clip(moments.probability, 0.0, 1.0).astype(np.float32)
    entropy = binary_entropy(p)
    aleatoric = np.clip(moments.expected_entropy, 0.0, 1.0).astype(np.float32)
    epistemic = np.clip(entropy - aleatoric, 0.0, 1.0).astype(np.float32)
    variance = np.clip(moments.second_moment - np.square(p), 0.0, 0.25).astype(np.float32)
    return UncertaintyMaps(
        probability=p,
        entropy=entropy,
        aleatoric=aleatoric,
        epistemic=epistemic,
        variance=variance,
        contour=np.clip(moments.contour, 0.0, 1.0).astype(np.float32),
    )


class MomentStitcher:
    """Accumulates Gaussian-weighted tile moments into full-image moments.

    Args:
        shape: Full image (height, width).
    """

    _FIELDS = ("probability", "second_moment", "expected_entropy", "contour")

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self._sums = {name: np.zeros(shape, np.float32) for name in self._FIELDS}
        self._weight = np.zeros(shape, np.float32)

    def add(self, where: tuple[slice, slice], moments: SampleMoments, weight: np.ndarray) -> None:
        """Add one tile's moments with its blending weight.

        Args:
            where: (row, column) slices of the tile in the full image.
            moments: The tile's moments, each of the tile's shape.
            weight: (tile height, tile width) positive blending weights.
        """
        for name in self._FIELDS:
            self._sums[name][where] += weight * getattr(moments, name)
        self._weight[where] += weight

    def result(self) -> SampleMoments:
        """The blended moments; raises if some pixel was never covered by a tile."""
        if not np.all(self._weight > 0):
            raise RuntimeError("some pixels were not covered by any tile")
        return SampleMoments(**{n: self._sums[n] / self._weight for n in self._FIELDS})


def tie_broken_uncertainty(disagreement: float, mean_entropy: float, n_nuclei: int) -> float:
    """Image uncertainty from sample disagreement, with ties broken by the mean entropy.

    With few samples (3 ensemble members) many images get a disagreement ``1 - predicted
    quality`` of exactly 0. ``(1 - w) d + w h`` with ``w`` = :data:`TIE_WEIGHT` orders those
    by their mean predictive entropy ``h`` over the foreground while moving any value by at most
    ``w``; with at least one nucleus the result is never below :data:`TIE_FLOOR`.

    Args:
        disagreement: ``1 - predicted quality``, in [0, 1].
        mean_entropy: Mean predictive entropy (bits) over the predicted foreground, in [0, 1].
        n_nuclei: Nuclei in the final segmentation.

    Returns:
        The image uncertainty in [0, 1].
    """
    u = (1.0 - TIE_WEIGHT) * float(disagreement) + TIE_WEIGHT * float(mean_entropy)
    return max(u, TIE_FLOOR) if n_nuclei > 0 else u
