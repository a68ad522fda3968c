"""Validation during training: whole images, sampling off, scored per source.

The model chosen as "best" is the one with the highest *macro* DSB score: the mean over the
sources of each source's mean DSB score, so a 10-image source counts as much as a 134-image one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from bayescellseg.data.normalize import normalize
from bayescellseg.io.dsb import Sample
from bayescellseg.metrics.matching import average_precision, dsb_score
from bayescellseg.metrics.segmentation import pixel_dice
from bayescellseg.model.layers import sampling
from bayescellseg.postprocess.watershed import instances_from_maps

__all__ = ["predict_maps", "validate", "validate_sources"]

_NAN = float("nan")


@torch.no_grad()
def predict_maps(
    nets: Sequence[nn.Module],
    image: np.ndarray,
    normalization: str,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and contour probabilities of a whole image, sampling off.

    Ensembles average the members' probabilities. The U-Net pads the image internally.

    Args:
        nets: One network, or the members of an ensemble.
        image: (H, W, 3) float32 image as read from disk (normalised here).
        normalization: Mode for ``data.normalize.normalize``.
        device: Where the networks are (default: CPU).
        amp_dtype: Autocast dtype (None = float32).

    Returns:
        ``(foreground, contour)``, two (H, W) float32 arrays in [0, 1].
    """
    device = device or torch.device("cpu")
    x = torch.from_numpy(np.ascontiguousarray(normalize(image, mode=normalization)))
    x = x.permute(2, 0, 1)[None].to(device)
    probs = torch.zeros((2, *image.shape[:2]), dtype=torch.float32, device=device)
    for net in nets:
        was_training = net.training
        net.eval()
        dtype = amp_dtype or torch.bfloat16
        with (
            sampling(net, False),
            torch.autocast(device.type, dtype, enabled=amp_dtype is not None),
        ):
            probs += torch.sigmoid(net(x)[0].float())
        net.train(was_training)
    probs = (probs / len(nets)).cpu().numpy()
    return probs[0], probs[1]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else _NAN


def validate(
    nets: Sequence[nn.Module],
    samples: Sequence[Sample],
    normalization: str,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Pixel Dice (foreground > 0.5), DSB2018 score and AP50 (default watershed), whole images.

    Returns:
        ``{"dice", "dsb", "ap50", "n_images"}``; scores are means over images (NaN without
        images).
    """
    dice, dsb, ap50 = [], [], []
    for sample in samples:
        fg, contour = predict_maps(nets, sample.image, normalization, device, amp_dtype)
        pred = instances_from_maps(fg, contour)
        dice.append(pixel_dice(sample.labels > 0, fg > 0.5))
        dsb.append(dsb_score(sample.labels, pred))
        ap50.append(average_precision(sample.labels, pred, 0.5))
    return {"dice": _mean(dice), "dsb": _mean(dsb), "ap50": _mean(ap50), "n_images": len(samples)}


def validate_sources(
    nets: Sequence[nn.Module],
    val: Mapping[str, Sequence[Sample]],
    normalization: str,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """:func:`validate` per source, and their macro means.

    Returns:
        ``{"dice", "dsb", "ap50", "n_images", "per_source": {name: validate(...)}}``: the top
        level scores are means over the sources that have validation images (NaN if none).
    """
    per_source = {
        name: validate(nets, samples, normalization, device, amp_dtype)
        for name, samples in val.items()
        if samples
    }
    scored = list(per_source.values())
    out: dict[str, Any] = {
        k: _mean([s[k] for s in scored if not math.isnan(s[k])]) for k in ("dice", "dsb", "ap50")
    }
    out["n_images"] = sum(s["n_images"] for s in scored)
    out["per_source"] = per_source
    return out
