"""Maps of another calibration, recomputed from the raw logits a prediction kept.

``calibrate`` runs the network once per image with ``keep_logits`` and then needs the maps that
other temperatures, biases and watershed settings would give. :func:`recalibrated` recomputes
them from the kept per-sample logits: every sample's probability ``sigmoid(z / T + b)``, the
moments over the samples and the maps from them, as
:meth:`~bayescellseg.inference.segmenter.Segmenter.predict_maps` computes them. For an image
predicted in one piece the result equals a new prediction with that calibration up to the
float16 storage of the logits; in the overlaps of a tiled image the per-sample logits come
from the nearest tile instead of the Gaussian blend of the tiles (the blend is of the
probabilities, which a new temperature changes non-linearly).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.special import expit

from bayescellseg.inference.result import PredictedMaps
from bayescellseg.inference.sampling import ImageSamples, dequantize, quantize
from bayescellseg.inference.uncertainty import sample_moments, uncertainty_maps


def tempered(logits: np.ndarray, temperature: float, bias: float) -> np.ndarray:
    """(T, H, W) float32 per-sample probabilities ``sigmoid(z / temperature + bias)``."""
    z = np.asarray(logits, np.float32)
    return expit(z / np.float32(temperature) + np.float32(bias))


def recalibrated(maps: PredictedMaps, temperature: float, bias: float) -> PredictedMaps:
    """The maps with the foreground recalibrated to ``sigmoid(z / temperature + bias)``.

    Args:
        maps: A prediction made with ``keep_logits`` (any calibration).
        temperature: The new temperature (> 0).
        bias: The new logit bias.

    Returns:
        New maps; the contour maps (which calibration does not touch) are kept.

    Raises:
        ValueError: The maps kept no logits.
    """
    logits = maps.samples.foreground_logits
    if logits is None:
        raise ValueError("recalibrating needs the raw logits (predict with keep_logits)")
    fg = tempered(logits, temperature, bias)
    contour = maps.samples.contour
    pixel = uncertainty_maps(sample_moments(fg, dequantize(contour)))
    pixel = replace(pixel, contour=maps.maps.contour)
    samples = ImageSamples(pixel, quantize(fg), contour, logits, maps.samples.bottleneck)
    return replace(maps, samples=samples)
