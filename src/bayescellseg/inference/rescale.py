"""Run a model at the nucleus size it was trained at, and bring its outputs back.

A U-Net learns nuclei of the sizes in its training set. On an image whose nuclei are much larger
or smaller (another magnification, another camera), the image is resized by
``scale = model_diameter / image_diameter`` before the network runs (Cellpose's ``diameter``
does the same). The samples are then resized back to the image's own pixel grid, so every map
and label image lines up with the input:

* the *linear* moments (mean probability, second moment, expected entropy, mean contour) are
  interpolated and the non-linear maps recomputed from them, as tile stitching does;
* each per-sample map is interpolated on its own;
* resizing is bilinear at pixel centres, anti-aliased when it shrinks (``torch``'s
  ``interpolate``, on the host: about 10x faster than ``skimage.transform.resize`` here);
* the watershed's pixel-count settings are divided by ``scale ** 2`` (areas) or ``scale``
  (radii), because the post-processing runs on the original grid.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from bayescellseg.inference.sampling import ImageSamples, dequantize, quantize
from bayescellseg.inference.uncertainty import SampleMoments, uncertainty_maps
from bayescellseg.postprocess.watershed import WatershedParams

__all__ = [
    "AUTO_PROBES",
    "AUTO_RANGE",
    "PROBE_TOLERANCE",
    "auto_scale",
    "SCALE_LIMITS",
    "params_at_scale",
    "resize_image",
    "resize_samples",
    "scale_for",
    "trust_coarser_probe",
]

#: Scales are clipped to this range: beyond it the resized image is either too coarse to hold a
#: nucleus or needlessly large.
SCALE_LIMITS = (0.25, 4.0)

#: ``"auto"`` leaves an image unscaled when its estimated diameter lies within this factor of
#: the model's, and otherwise resizes it only as far as the nearer end of that range: the model
#: segments a range of sizes well (the validation images' median diameters span 9-51 px),
#: and resizing all the way to the median costs accuracy on images already in that range.
#: Chosen on the validation split (``experiments/diameter_study.py``, 40 images resized by 0.5,
#: 1 and 2): mean DSB 0.497 with 1.5, 0.495 with 2, 0.485 when resizing to the median.
AUTO_RANGE = 1.5

#: ``"auto"`` measures the nuclei on the image at these scales. Nuclei several times larger
#: than the model's are cut into pieces at full scale (their texture looks like many small
#: nuclei), so the full-scale estimate is too small; on the image shrunk by 2 or 4 they are
#: segmented whole. The coarser probes run first (4 times cheaper each), each only while the
#: one before was trusted; a trusted half-scale probe means the image will be shrunk, so the
#: full-scale pass is run only when it is not (and is then the prediction itself when the
#: image needs no resizing). The image is resized to the finest trusted probe's scale when its
#: nuclei measure within :data:`AUTO_RANGE` of the model's there (that probe is then the
#: prediction itself for a single-pass model, resized back), else as :func:`auto_scale` says.
AUTO_PROBES = (1.0, 0.5, 0.25)

#: A coarser probe is trusted while its nuclei measure at least the model's diameter divided by
#: this (see :func:`trust_coarser_probe`).
PROBE_TOLERANCE = 1.25


def auto_scale(diameter: float, model_diameter: float) -> float:
    """The resize factor ``"auto"`` uses for an estimated nucleus ``diameter``.

    Args:
        diameter: Estimated median nucleus diameter of the image, pixels.
        model_diameter: The model's training nucleus diameter, pixels.

    Returns:
        1.0 when ``diameter`` is within :data:`AUTO_RANGE` of ``model_diameter``; else the
        factor that brings it to the nearer end of that range (clipped to :data:`SCALE_LIMITS`).

    Raises:
        ValueError: A diameter is not a positive finite number.
    """
    low, high = model_diameter / AUTO_RANGE, model_diameter * AUTO_RANGE
    target = min(max(diameter, low), high)
    if target == diameter:
        scale_for(diameter, model_diameter)  # validates both
        return 1.0
    return scale_for(diameter, target)


def trust_coarser_probe(diameter_at_probe: float, model_diameter: float) -> bool:
    """Whether a coarser probe's measurement replaces the finer one's.

    It does when the nuclei, measured in the probe's own pixels, are still at least about the
    model's size (``model_diameter / PROBE_TOLERANCE``): then the network saw them whole there,
    while smaller ones may have merged into blobs.

    Args:
        diameter_at_probe: Median nucleus diameter measured on the shrunk image, in its pixels
            (nan when too few nuclei were found).
        model_diameter: The model's training nucleus diameter, pixels.
    """
    return math.isfinite(diameter_at_probe) and (
        diameter_at_probe >= model_diameter / PROBE_TOLERANCE
    )


def scale_for(diameter: float, model_diameter: float) -> float:
    """The resize factor that brings nuclei of ``diameter`` px to the model's ``model_diameter``.

    Args:
        diameter: Typical nucleus diameter in the image, pixels.
        model_diameter: Median nucleus diameter of the model's training data, pixels.

    Returns:
        ``model_diameter / diameter`` clipped to :data:`SCALE_LIMITS`.

    Raises:
        ValueError: A diameter is not a positive finite number.
    """
    for name, value in (("diameter", diameter), ("model_diameter", model_diameter)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
    low, high = SCALE_LIMITS
    return float(min(max(model_diameter / diameter, low), high))


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """``shape`` times ``scale``, rounded, at least 1 pixel per side."""
    return (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))


def _interpolate(planes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(C, h, w) float planes resized to ``shape``: bilinear at pixel centres
    (``align_corners=False``), anti-aliased along an axis that shrinks. Returns a new float32
    array."""
    x = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None]
    shrink = shape[0] < planes.shape[1] or shape[1] < planes.shape[2]
    with torch.inference_mode():
        out = F.interpolate(x, size=shape, mode="bilinear", align_corners=False, antialias=shrink)
    return out[0].numpy()


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an (H, W, C) float image by ``scale`` (bilinear; anti-aliased when it shrinks).
    Returns a new float32 array; the input is not modified."""
    shape = scaled_shape(image.shape[:2], scale)
    return np.ascontiguousarray(_interpolate(image.transpose(2, 0, 1), shape).transpose(1, 2, 0))


def resize_samples(samples: ImageSamples, shape: tuple[int, int]) -> ImageSamples:
    """Samples computed on a resized image, brought to the original image's ``shape``.

    Args:
        samples: The samples at the model's scale.
        shape: (H, W) of the original image.

    Returns:
        New samples of that shape (maps recomputed from the resized linear moments).

    Raises:
        ValueError: The samples carry raw logits (``keep_logits``), which are not resized.
    """
    if samples.foreground_logits is not None:
        raise ValueError("samples with raw logits cannot be resized")
    maps = samples.maps
    linear = [
        maps.probability,
        maps.variance + np.square(maps.probability),  # the second moment
        maps.aleatoric,  # the expected entropy
        maps.contour,
    ]
    moments = SampleMoments(*_interpolate(np.stack(linear), shape))
    per_sample = [  # one plane at a time: a large image's float planes would not fit at once
        np.stack([quantize(_interpolate(dequantize(q)[None], shape)[0]) for q in stack])
        for stack in (samples.foreground, samples.contour)
    ]
    return ImageSamples(uncertainty_maps(moments), *per_sample, bottleneck=samples.bottleneck)


def params_at_scale(params: WatershedParams, scale: float) -> WatershedParams:
    """Watershed settings for the original grid of an image the model saw resized by ``scale``.

    Area settings (``min_size``, ``min_marker_area``) are divided by ``scale ** 2`` and the
    erosion radius by ``scale`` (rounded; a nonzero setting stays at least 1).
    """

    def rescaled(value: int, power: int) -> int:
        return 0 if value == 0 else max(1, round(value / scale**power))

    return dataclasses.replace(
        params,
        min_size=rescaled(params.min_size, 2),
        min_marker_area=rescaled(params.min_marker_area, 2),
        marker_erosion=rescaled(params.marker_erosion, 1),
    )
