"""What kind of image this is: colour or grey, fluorescence or brightfield.

Used by the normalisation (:mod:`bayescellseg.data.normalize`), by ``data check``
(:mod:`bayescellseg.io.check`) and by the training crop balance; it lives in ``io``, the lowest
layer, so that every layer above can ask it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["ImagingType", "imaging_type", "is_colour"]

ImagingType = Literal["fluorescence", "brightfield"]

_COLOUR_TOLERANCE = 2.0 / 255.0


def is_colour(image: np.ndarray) -> bool:
    """True when the R, G and B channels of an (H, W, 3) image differ noticeably."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] < 3:
        return False
    spread = np.abs(a[..., 0] - a[..., 1]) + np.abs(a[..., 1] - a[..., 2])
    return bool(np.mean(spread) > _COLOUR_TOLERANCE)


def imaging_type(image: np.ndarray) -> ImagingType:
    """Guess the imaging type of an (H, W, 3) [0, 1] image.

    A colour image, or one whose median intensity is above half the image's range (a bright
    background), is brightfield/H&E; anything else is fluorescence.
    """
    a = np.asarray(image, dtype=np.float32)
    if is_colour(a):
        return "brightfield"
    grey = a.mean(axis=2) if a.ndim == 3 else a
    lo, hi = float(grey.min()), float(grey.max())
    if hi - lo < 1e-6:
        return "fluorescence"
    return "brightfield" if (float(np.median(grey)) - lo) / (hi - lo) > 0.5 else "fluorescence"
