"""Per-image intensity normalisation so that nuclei are bright on a dark background.

Choice for the two imaging types found in nucleus data:

- **Fluorescence** (grey, bright nuclei on a dark background): percentile scaling,
  ``(x - p_low) / (p_high - p_low)`` clipped to [0, 1].
- **Brightfield / H&E** (dark, usually coloured nuclei on a bright background): the same
  percentile scaling, then inverted (``1 - x``), so that nuclei are bright here too and one
  model sees the same contrast polarity for both.

The percentiles are computed over all channels together, so colour ratios are kept. ``mode="auto"``
decides per image with :func:`~bayescellseg.io.imaging.imaging_type`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from bayescellseg.io.imaging import ImagingType, imaging_type, is_colour

__all__ = [
    "ImagingType",
    "Mode",
    "apply_normalization",
    "imaging_type",
    "is_colour",
    "normalization_params",
    "normalize",
]  # imaging_type and is_colour live in io.imaging (io.check needs them); re-exported

Mode = Literal["auto", "fluorescence", "brightfield"]


def normalization_params(
    image: np.ndarray, mode: Mode = "auto", low: float = 1.0, high: float = 99.8
) -> tuple[float, float, ImagingType]:
    """The ``(p_low, p_high, imaging type)`` that :func:`normalize` uses for ``image``.

    Computing them once on a whole image and applying them to crops with :func:`apply_normalization`
    makes training crops look exactly like the same region at inference.
    """
    if mode not in ("auto", "fluorescence", "brightfield"):
        raise ValueError(f"normalize: unknown mode {mode!r}")
    a = np.asarray(image, dtype=np.float32)
    kind: ImagingType = imaging_type(a) if mode == "auto" else mode
    p_lo, p_hi = np.percentile(a, [low, high])
    return float(p_lo), float(p_hi), kind


def apply_normalization(
    image: np.ndarray, p_low: float, p_high: float, kind: ImagingType
) -> np.ndarray:
    """Scale ``(x - p_low) / (p_high - p_low)``, clip to [0, 1], invert for brightfield (new array)."""
    a = np.asarray(image, dtype=np.float32)
    scale = p_high - p_low
    if scale < 1e-8:
        return np.zeros_like(a)  # nothing to see (and no nuclei to make bright), in either mode
    out = np.clip((a - p_low) / scale, 0.0, 1.0)
    if kind == "brightfield":
        out = 1.0 - out
    return out.astype(np.float32, copy=False)


def normalize(
    image: np.ndarray, mode: Mode = "auto", low: float = 1.0, high: float = 99.8
) -> np.ndarray:
    """Percentile-normalise an image so nuclei are bright.

    Args:
        image: (H, W, 3) array (any float or integer range).
        mode: ``"auto"`` (decide with :func:`imaging_type`), ``"fluorescence"`` or ``"brightfield"``.
        low: Lower percentile mapped to 0.
        high: Upper percentile mapped to 1.

    Returns:
        A new (H, W, 3) float32 array in [0, 1]. A constant image becomes all zeros (in every mode).
    """
    return apply_normalization(image, *normalization_params(image, mode, low, high))
