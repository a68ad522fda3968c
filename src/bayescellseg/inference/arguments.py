"""The arguments of a prediction: :class:`PredictSettings` and the checks of user values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayescellseg.errors import InputError
from bayescellseg.io.images import to_rgb_float

__all__ = [
    "DEFAULT_DIAMETER",
    "PredictSettings",
    "as_float_rgb",
    "checked_number",
    "diameter_argument",
]

#: What ``diameter`` is when none is given: each image's nuclei are measured and the image is
#: resized only when they lie outside the size range the model handles (see
#: :data:`~bayescellseg.inference.rescale.AUTO_RANGE`). On 40 validation images resized by 0.5,
#: 1, 2 and 4 this scored 0.478 / 0.543 / 0.512 / 0.493, against 0.453 / 0.536 /
#: 0.441 / 0.259 without resizing (``experiments/diameter_study.py``).
DEFAULT_DIAMETER = "auto"


@dataclass(frozen=True)
class PredictSettings:
    """How :meth:`~bayescellseg.inference.segmenter.Segmenter.predict_maps` runs the network
    (see :meth:`~bayescellseg.inference.segmenter.Segmenter.predict`).

    Attributes:
        n_samples: Stochastic samples T (None: the model's default; 0: one deterministic pass).
        tta: Cross every sample with the 8 flips / 90-degree rotations.
        seed: Seed of the samples.
        tile_size: Images larger than this are processed in overlapping tiles.
        diameter: Nucleus diameter in pixels, ``"auto"`` (the default: measured per image) or
            None (no resizing).
        precision: Precision of the forward pass (None: the Segmenter's default).
        keep_logits: Also keep each sample's raw foreground logit (float16; e.g. to fit a
            temperature). Not available together with a resize.
    """

    n_samples: int | None = None
    tta: bool = False
    seed: int = 0
    tile_size: int = 512
    diameter: float | str | None = DEFAULT_DIAMETER
    precision: str | None = None
    keep_logits: bool = False


def as_float_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Raw image to (H, W, 3) float32 (integers scaled to [0, 1] by their dtype's range).

    Float arrays of any range are accepted: the model's normalisation rescales them anyway.

    Args:
        image: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16, bool or float.
        name: How to name the image in errors.

    Raises:
        InputError: Unsupported shape or dtype, an empty image, or non-finite values.
    """
    return to_rgb_float(image, name, any_float_range=True)


def checked_number(
    extras: dict[str, Any], key: str, default: float, where: str, positive: bool
) -> float:
    """A number of a model folder's extras (None or absent: ``default``), checked.

    Raises:
        InputError: Not a finite number, or not positive when ``positive``; names ``where``.
    """
    value = extras.get(key, default)
    if value is None:
        value = default
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if positive and not (ok and value > 0):
        raise InputError(where, f"{key} must be a positive number, got {value!r}")
    if not ok:
        raise InputError(where, f"{key} must be a finite number, got {value!r}")
    return float(value)


def diameter_argument(diameter: float | str) -> float | str | None:
    """Validate a ``diameter`` argument: ``"auto"``, ``"none"`` (None: no resizing) or a
    positive number of pixels.

    Raises:
        InputError: Anything else (named ``diameter``).
    """
    if isinstance(diameter, str):
        if diameter == "auto":
            return diameter
        if diameter == "none":
            return None
        try:
            diameter = float(diameter)
        except ValueError:
            raise InputError(
                "diameter", f"expected 'auto', 'none' or pixels, got {diameter!r}"
            ) from None
    if isinstance(diameter, bool) or not isinstance(diameter, int | float):
        raise InputError("diameter", f"expected 'auto', 'none' or pixels, got {diameter!r}")
    if not (math.isfinite(diameter) and diameter > 0):
        raise InputError("diameter", f"must be a positive number of pixels, got {diameter}")
    return float(diameter)
