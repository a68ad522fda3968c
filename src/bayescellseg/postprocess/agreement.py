"""How the stochastic samples' segmentations agree with the final segmentation.

The IoUs come from :mod:`bayescellseg.metrics.overlaps` and the DSB2018 scores from
:func:`bayescellseg.metrics.matching.match`, the same engine that scores a prediction against
the truth.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from bayescellseg.metrics.matching import DSB_THRESHOLDS, MatchResult, match
from bayescellseg.metrics.overlaps import label_index

__all__ = [
    "PARALLEL_PIXELS",
    "TIE_FLOOR",
    "TIE_WEIGHT",
    "SampleAgreement",
    "sample_agreement",
    "tie_broken_uncertainty",
]

TIE_WEIGHT = 1e-3
"""Weight of the mean entropy that breaks ties of the image uncertainty (see
:func:`tie_broken_uncertainty`)."""
TIE_FLOOR = 1e-6
"""Smallest image uncertainty of an image with at least one nucleus."""
PARALLEL_PIXELS = 2 * 2048 * 2048
"""Pixels segmented at once by :func:`sample_agreement`'s threads: each sample's watershed
holds about 80 bytes per pixel, so a 2048 x 2048 image runs two at a time (about 0.3 GB more)
and a 4096 x 4096 image one (its peak memory unchanged)."""


@dataclass(frozen=True)
class SampleAgreement:
    """How the stochastic samples' segmentations agree with the final segmentation.

    Attributes:
        labels: The final labels' ids, ascending (the order of ``stability``).
        stability: (N,) mean best-match IoU of each final nucleus over the samples.
        sample_scores: (T,) DSB2018 score of each sample segmentation against the final one.
    """

    labels: np.ndarray
    stability: np.ndarray
    sample_scores: np.ndarray

    @property
    def predicted_quality(self) -> float:
        """Mean sample DSB score (the expected DSB score from sample agreement)."""
        return float(self.sample_scores.mean())


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity on Linux; all CPUs where that is unknown)."""
    affinity = getattr(os, "sched_getaffinity", None)  # absent on macOS and Windows
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def sample_agreement(
    labels: np.ndarray, sample_labels: Sequence[np.ndarray], workers: int | None = None
) -> SampleAgreement:
    """Stability of every nucleus and DSB score of every sample against the final segmentation.

    The stability of a nucleus is the mean over samples of its best IoU with the sample's
    nuclei; the score of a sample is its DSB2018 score with the final labels as the truth.
    Samples are read (a lazy sequence segments them on access) and matched in ``workers``
    threads: the watershed and labelling release the GIL, and the result does not depend on
    the number of threads.

    Args:
        labels: (H, W) final instance labels.
        sample_labels: T >= 1 (H, W) instance segmentations, one per stochastic sample.
        workers: Threads (None: one per CPU this process may use, at most T and at most
            :data:`PARALLEL_PIXELS` pixels at once).

    Returns:
        The per-nucleus stability and per-sample DSB scores.

    Raises:
        ValueError: No samples, a sample differs in shape from ``labels``, or labels that are
            not non-negative integers.
    """
    if len(sample_labels) == 0:
        raise ValueError("sample_agreement needs at least one sample segmentation")
    labels = np.asarray(labels)
    final = label_index(labels)  # renumbered once for all samples

    def score(t: int) -> MatchResult:
        sample = sample_labels[t]
        if sample.shape != labels.shape:
            raise ValueError(f"sample {t} has shape {sample.shape}, labels have {labels.shape}")
        return match(final, sample, DSB_THRESHOLDS)

    n = len(sample_labels)
    if workers is None:
        workers = min(_usable_cpus(), PARALLEL_PIXELS // max(labels.size, 1))
    workers = max(1, min(n, workers))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(score, range(n)))
    else:
        results = [score(t) for t in range(n)]
    stability = np.sum([r.true_best_iou for r in results], axis=0) / n
    scores = np.array([r.score for r in results], dtype=float)
    return SampleAgreement(labels=final.ids, stability=stability, sample_scores=scores)


def tie_broken_uncertainty(disagreement: float, mean_entropy: float, n_nuclei: int) -> float:
    """Image uncertainty from sample disagreement, with ties broken by the mean entropy.

    With few samples (3 ensemble members) many images get a disagreement ``1 - predicted
    quality`` of exactly 0. ``(1 - w) d + w h`` with ``w`` = :data:`TIE_WEIGHT` orders those
    by their mean predictive entropy ``h`` over the foreground while moving any value by at most
    ``w``; with at least one nucleus the result is never below :data:`TIE_FLOOR`.

    Args:
        disagreement: ``1 - predicted quality``, in [0, 1].
        mean_entropy: Mean predictive entropy (bits) over the predicted foreground, in [0, 1].
        n_nuclei: Nuclei in the final segmentation.

    Returns:
        The image uncertainty in [0, 1].
    """
    u = (1.0 - TIE_WEIGHT) * float(disagreement) + TIE_WEIGHT * float(mean_entropy)
    return max(u, TIE_FLOOR) if n_nuclei > 0 else u
