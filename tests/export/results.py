"""A real :class:`~bayescellseg.inference.segmenter.Result` built from synthetic maps (no model)."""

from __future__ import annotations

import numpy as np

from bayescellseg.inference.result import PredictionInfo, Result
from bayescellseg.postprocess.nuclei import ReviewThresholds, analyse_segmentation
from tests.synthetic import synthetic_labels


def synthetic_result(
    shape: tuple[int, int] = (96, 96), n: int = 6, seed: int = 3
) -> tuple[Result, np.ndarray]:
    """A Result whose nuclei are synthetic ellipses (one touching pair), and its uint16 image.

    The probability is 0.95 inside nuclei and 0.05 outside; the entropy is high (0.9) on the
    first nucleus only, so exactly that nucleus is flagged for review (the review threshold is
    on the nucleus's mean entropy when there are no samples).
    """
    labels = synthetic_labels(shape, n=n, seed=seed)
    prob = np.where(labels > 0, 0.95, 0.05).astype(np.float32)
    entropy = np.where(labels == 1, 0.9, 0.1).astype(np.float32)
    epistemic = (entropy / 4).astype(np.float32)
    maps = {"probability": prob, "entropy": entropy, "epistemic": epistemic}
    records, summary = analyse_segmentation(
        labels, maps, prob > 0.5, None, ReviewThresholds(nucleus_uncertainty=0.5)
    )
    zeros = np.zeros(shape, np.float32)
    result = Result(
        probability=prob,
        entropy=entropy,
        aleatoric=entropy - epistemic,
        epistemic=epistemic,
        variance=zeros,
        contour=zeros,
        labels=labels,
        nuclei=records,
        summary=summary,
        info=PredictionInfo(n_samples=1, tta=False, diameter=None, scale=1.0, precision="fp32"),
    )
    image = (np.where(labels > 0, 3000, 200) + labels * 10).astype(np.uint16)
    return result, image
