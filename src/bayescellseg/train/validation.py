"""Validation during training: the prediction path of ``predict``, sampling off, per source.

Every validation image goes through :meth:`Segmenter.predict_maps` and
:meth:`Segmenter.segment`, exactly as ``bayescellseg predict`` runs it (tiles, precision),
with sampling switched off (one pass per member, probabilities averaged over the members), no
calibration and the default watershed settings.

The model chosen as "best" is the one with the highest *macro* DSB score: the mean over the
sources of each source's mean DSB score, so a 10-image source counts as much as a 134-image one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from bayescellseg.inference.result import Result
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.io.dsb import Sample
from bayescellseg.metrics.matching import average_precision, dsb_score
from bayescellseg.metrics.segmentation import pixel_dice
from bayescellseg.model.build import Ensemble
from bayescellseg.model.config import ModelConfig

__all__ = ["PRECISION_OF_DTYPE", "validate", "validate_sources", "validation_segmenter"]

_NAN = float("nan")

#: The inference precision that matches a training autocast dtype (None: float32).
PRECISION_OF_DTYPE = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def validation_segmenter(
    nets: Sequence[nn.Module], config: ModelConfig, amp_dtype: torch.dtype | None = None
) -> Segmenter:
    """A :class:`Segmenter` of eval-mode copies of ``nets`` (the training networks are left as
    they are: mode, memory layout, weights).

    Args:
        nets: One network, or the members of an ensemble.
        config: Their model configuration.
        amp_dtype: The training autocast dtype (None: float32); validation predicts in the
            matching precision.
    """
    copies = [copy.deepcopy(net).eval() for net in nets]
    model = copies[0] if len(copies) == 1 else Ensemble(nn.ModuleList(copies))
    return Segmenter(model, config, precision=PRECISION_OF_DTYPE[amp_dtype])


def _predict(segmenter: Segmenter, image: np.ndarray) -> Result:
    """One validation image through the prediction path, sampling off, no stability."""
    maps = segmenter.predict_maps(image, PredictSettings(n_samples=0, diameter=None))
    return segmenter.segment(maps, stability=False)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else _NAN


def validate(
    nets: Sequence[nn.Module],
    samples: Sequence[Sample],
    config: ModelConfig,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Pixel Dice (foreground > 0.5), DSB2018 score and AP50 (default watershed).

    Args:
        nets: One network, or the members of an ensemble (any mode; not changed).
        samples: Validation images with their labels.
        config: The networks' model configuration.
        amp_dtype: The training autocast dtype (None: float32).

    Returns:
        ``{"dice", "dsb", "ap50", "n_images"}``; scores are means over images (NaN without
        images).
    """
    segmenter = validation_segmenter(nets, config, amp_dtype)
    dice, dsb, ap50 = [], [], []
    for sample in samples:
        result = _predict(segmenter, sample.image)
        pred = result.labels
        dice.append(pixel_dice(sample.labels > 0, result.probability > 0.5))
        dsb.append(dsb_score(sample.labels, pred))
        ap50.append(average_precision(sample.labels, pred, 0.5))
    return {"dice": _mean(dice), "dsb": _mean(dsb), "ap50": _mean(ap50), "n_images": len(samples)}


def validate_sources(
    nets: Sequence[nn.Module],
    val: Mapping[str, Sequence[Sample]],
    config: ModelConfig,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """:func:`validate` per source, and their macro means.

    Returns:
        ``{"dice", "dsb", "ap50", "n_images", "per_source": {name: validate(...)}}``: the top
        level scores are means over the sources that have validation images (NaN if none).
    """
    per_source = {
        name: validate(nets, samples, config, amp_dtype) for name, samples in val.items() if samples
    }
    scored = list(per_source.values())
    out: dict[str, Any] = {
        k: _mean([s[k] for s in scored if not math.isnan(s[k])]) for k in ("dice", "dsb", "ap50")
    }
    out["n_images"] = sum(s["n_images"] for s in scored)
    out["per_source"] = per_source
    return out
