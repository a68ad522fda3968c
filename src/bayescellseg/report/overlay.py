"""Display images: segmentation overlays coloured by nucleus uncertainty, and coloured maps.

Pure numpy + matplotlib colormaps (no figures), so they are cheap enough for every image of a
batch. Outputs are (H, W, 3) uint8 RGB, ready for ``write_png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Set

import numpy as np
from matplotlib import colormaps
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

__all__ = ["FLAG_COLOR", "colorize", "display_image", "make_overlay", "uncertainty_vmax"]

FLAG_COLOR = (255, 0, 255)
"""Magenta ring drawn around flagged nuclei (absent from the default green-yellow-red ``RdYlGn_r`` colormap)."""
_UNKNOWN_COLOR = (255, 255, 255)


def display_image(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Image stretched for display: percentiles ``low``..``high`` mapped to 0..1.

    One pair of percentiles is used for all channels, so colours (e.g. H&E stains) keep their
    balance. Grey (H, W) or (H, W, 1) images are replicated to RGB; alpha is dropped.

    Args:
        image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of any real dtype.
        low: Lower percentile, mapped to 0.
        high: Upper percentile, mapped to 1.

    Returns:
        (H, W, 3) float32 in [0, 1] (a new array).

    Raises:
        ValueError: Unsupported shape.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[2] in (1, 3, 4):
        img = img[..., :3] if img.shape[2] != 1 else img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a (H, W) or (H, W, 1/3/4) image, got shape {image.shape}")
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return np.zeros(img.shape, np.float32)
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        hi = lo + 1.0 if finite.max() <= lo else float(finite.max())
    out = (np.nan_to_num(img, nan=lo) - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def colorize(
    values: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "magma",
) -> np.ndarray:
    """Map a 2-D array of scalars to RGB through a matplotlib colormap.

    Args:
        values: (H, W) real array (e.g. an entropy or mutual-information map).
        vmin: Value shown at the bottom of the colormap; default the smallest finite value.
        vmax: Value shown at the top; default the largest finite value.
        cmap: Matplotlib colormap name.

    Returns:
        (H, W, 3) uint8. NaN / infinite values are black.

    Raises:
        ValueError: ``values`` is not 2-D or the colormap is unknown.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"colorize expects a 2-D map, got shape {arr.shape}")
    if cmap not in colormaps:
        raise ValueError(f"unknown colormap {cmap!r}")
    finite = np.isfinite(arr)
    lo = vmin if vmin is not None else (float(arr[finite].min()) if finite.any() else 0.0)
    hi = vmax if vmax is not None else (float(arr[finite].max()) if finite.any() else 1.0)
    scaled = (np.where(finite, arr, lo) - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    rgb = colormaps[cmap](np.clip(scaled, 0.0, 1.0), bytes=True)[..., :3]
    rgb[~finite] = 0
    return rgb


def uncertainty_vmax(review_threshold: float) -> float:
    """Top of the overlay colour scale for a nucleus review threshold.

    The scale runs green (0), yellow (the threshold, where flagging starts), red (twice the
    threshold and above). Without a usable threshold (nan, inf or <= 0) it runs 0-1.
    """
    t = float(review_threshold)
    return 2.0 * t if math.isfinite(t) and t > 0 else 1.0


def make_overlay(
    image: np.ndarray,
    labels: np.ndarray,
    nucleus_uncertainty: Mapping[int, float],
    flagged: Set[int] = frozenset(),
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "RdYlGn_r",
    flag_width: int = 2,
) -> np.ndarray:
    """Image with each nucleus outlined in the colour of its uncertainty; flagged ones ringed.

    Each nucleus's inner boundary pixels take ``cmap((u - vmin) / (vmax - vmin))`` of its
    uncertainty ``u`` (green = certain, yellow, red = uncertain with ``RdYlGn_r``, visible on dark fluorescence and bright brightfield backgrounds alike); nuclei missing
    from ``nucleus_uncertainty`` are outlined in white. Nuclei in ``flagged`` also get a
    ``flag_width``-pixel magenta ring just outside their outline.

    Args:
        image: (H, W) or (H, W, 3) image; stretched for display with :func:`display_image`.
        labels: (H, W) instance labels, 0 = background.
        nucleus_uncertainty: Label -> uncertainty score.
        flagged: Labels of nuclei flagged for review.
        vmin: Uncertainty shown at the bottom of the colormap.
        vmax: Uncertainty shown at the top.
        cmap: Matplotlib colormap name.
        flag_width: Width in pixels of the ring around flagged nuclei.

    Returns:
        (H, W, 3) uint8 RGB overlay.

    Raises:
        ValueError: Shapes differ, labels are not integers, or the colormap is unknown.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape != np.shape(image)[:2]:
        raise ValueError(f"labels {labels.shape} do not match the image {np.shape(image)}")
    if labels.dtype.kind not in "ui":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if cmap not in colormaps:
        raise ValueError(f"unknown colormap {cmap!r}")
    out = (display_image(image) * 255.0 + 0.5).astype(np.uint8)
    if not labels.any():
        return out

    ids = np.unique(labels)
    ids = ids[ids > 0]
    scores = np.array([nucleus_uncertainty.get(int(i), np.nan) for i in ids], dtype=np.float64)
    known = np.isfinite(scores)
    scaled = np.clip((scores - vmin) / (vmax - vmin), 0.0, 1.0) if vmax > vmin else 0 * scores
    colours = colormaps[cmap](np.where(known, scaled, 0.0), bytes=True)[:, :3]
    colours[~known] = _UNKNOWN_COLOR

    if flagged:
        flag_mask = np.isin(labels, np.fromiter(flagged, dtype=np.int64, count=len(flagged)))
        if flag_mask.any():
            grown = ndi.binary_dilation(flag_mask, iterations=max(flag_width, 1))
            out[grown & ~flag_mask] = FLAG_COLOR

    edges = find_boundaries(labels, mode="inner")
    index = np.searchsorted(ids, labels[edges])
    out[edges] = colours[index]
    return out
