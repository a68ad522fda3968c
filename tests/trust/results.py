"""Small synthetic Results for the trust tests (built through the real analysis code)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bayescellseg.inference.result import PredictionInfo, Result
from bayescellseg.postprocess.nuclei import analyse_segmentation


def two_nucleus_result(samples: bool = True) -> Result:
    """20x20 image: nucleus 7 = 4x4 square (rows/cols 2..5), nucleus 3 = 5x5 (rows/cols 10..14).

    Probability 0.9 on the nuclei and 0.1 elsewhere, entropy 1 on one column of nucleus 3
    (5 pixels), mutual information 0.1 everywhere. With ``samples``: one sample equals the
    labels and one lacks nucleus 3 (stability 0.5 for nucleus 3, 1.0 for nucleus 7).
    """
    labels = np.zeros((20, 20), np.uint32)
    labels[2:6, 2:6] = 7
    labels[10:15, 10:15] = 3
    prob = np.where(labels > 0, 0.9, 0.1).astype(np.float32)
    entropy = np.zeros((20, 20), np.float32)
    entropy[10:15, 10] = 1.0
    epistemic = np.full((20, 20), 0.1, np.float32)
    maps = {"probability": prob, "entropy": entropy, "epistemic": epistemic}
    other = np.where(labels == 7, 1, 0).astype(np.uint32)
    sample_labels = [labels, other] if samples else None
    records, summary = analyse_segmentation(labels, maps, prob > 0.5, sample_labels)
    zeros = np.zeros((20, 20), np.float32)
    return Result(
        probability=prob,
        entropy=entropy,
        aleatoric=entropy,
        epistemic=epistemic,
        variance=zeros,
        contour=zeros,
        labels=labels,
        nuclei=records,
        summary=summary,
        info=PredictionInfo(
            n_samples=2 if samples else 1, tta=False, diameter=None, scale=1.0, precision="fp32"
        ),  # fmt: skip
    )


def empty_result(result: Result) -> Result:
    """``result`` with all maps zero, no nuclei and a sample-agreement quality of 1."""
    return replace(
        result,
        **{k: np.zeros_like(v) for k, v in result.maps().items()},
        labels=np.zeros_like(result.labels),
        nuclei=[],
        summary=replace(result.summary, n_nuclei=0, predicted_quality=1.0),
    )
