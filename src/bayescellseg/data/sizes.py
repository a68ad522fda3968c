"""Nucleus sizes of label images: the scale a model was trained at, and the scale of an image.

The size of a nucleus is its equivalent-circle diameter ``sqrt(4 A / pi)`` in pixels (``A`` its
area), as Cellpose's ``diameter`` and scikit-image's ``equivalent_diameter_area``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["equivalent_diameters", "median_diameter"]


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent-circle diameter of each nucleus of a label image.

    Args:
        labels: (H, W) non-negative integer instance labels, 0 = background.

    Returns:
        (N,) float64 diameters in pixels, one per label present, in label order.

    Raises:
        ValueError: ``labels`` is not a 2-D array of non-negative integers.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "ui":
        raise ValueError(f"expected (H, W) integer labels, got {labels.shape} {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative")
    areas = np.bincount(labels.ravel().astype(np.int64))[1:]
    areas = areas[areas > 0]
    return np.sqrt(4.0 * areas / math.pi)


def median_diameter(label_images: Iterable[np.ndarray], min_count: int = 1) -> float:
    """Median equivalent diameter over all nuclei of some label images (pooled).

    Args:
        label_images: Label images.
        min_count: Fewer nuclei than this in all gives nan (too few to say).

    Returns:
        The median diameter in pixels, or nan.
    """
    diameters = [equivalent_diameters(labels) for labels in label_images]
    pooled = np.concatenate(diameters) if diameters else np.zeros(0)
    if pooled.size < max(min_count, 1):
        return math.nan
    return float(np.median(pooled))
