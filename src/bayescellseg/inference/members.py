"""Run some of an ensemble's members, and join the samples of member subsets.

``diameter="auto"`` measures the nuclei on a single-pass prediction before it knows whether the
image must be resized. One member's pass measures them as well as all members' (the size is
a median over the nuclei, not a per-pixel value), so the probe runs the first member only;
when the image then needs no resizing the other members run on their own and their samples
are joined to the probe's, which gives the same samples as one pass of the whole ensemble:

* the linear moments (mean probability, second moment, expected entropy, mean contour) are
  averaged weighted by each part's number of samples (tile blending is a convex combination per
  pixel, so it commutes with this average), and the non-linear maps recomputed from them;
* the per-sample maps and the per-member bottleneck statistics are concatenated in member
  order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from bayescellseg.inference.passes import BottleneckStats
from bayescellseg.inference.sampling import ImageSamples, members_of
from bayescellseg.inference.uncertainty import SampleMoments, uncertainty_maps
from bayescellseg.model.build import Ensemble

__all__ = ["join_member_samples", "member_subset"]


def member_subset(model: nn.Module, start: int, stop: int | None = None) -> nn.Module:
    """Members ``start:stop`` of ``model`` as a network :func:`sample_image` can run.

    Args:
        model: An ``Ensemble`` or a single network (its only member is itself).
        start: First member.
        stop: One past the last member (None: to the end).

    Returns:
        The member itself when one is selected, else an ``Ensemble`` of the selected members
        (the same modules, no copy).

    Raises:
        ValueError: The range selects no member.
    """
    chosen = members_of(model)[start:stop]
    if not chosen:
        raise ValueError(f"members {start}:{stop} of {len(members_of(model))} select none")
    return chosen[0] if len(chosen) == 1 else Ensemble(nn.ModuleList(chosen))


def _moments(samples: ImageSamples) -> SampleMoments:
    maps = samples.maps
    return SampleMoments(
        probability=maps.probability,
        second_moment=maps.variance + np.square(maps.probability),
        expected_entropy=maps.aleatoric,
        contour=maps.contour,
    )


def _joined_bottleneck(parts: Sequence[ImageSamples]) -> BottleneckStats | None:
    stats = [part.bottleneck for part in parts]
    if any(s is None for s in stats):
        return None
    return BottleneckStats(
        np.concatenate([s.mean for s in stats]), np.concatenate([s.std for s in stats])
    )


def join_member_samples(parts: Sequence[ImageSamples]) -> ImageSamples:
    """The samples of the union of disjoint member subsets, from each subset's samples.

    Args:
        parts: Samples of the same image and grid, one per member subset, in member order.

    Returns:
        New samples (the inputs are not modified): moments weighted by each part's number of
        samples, per-sample maps, raw logits (when every part has them) and bottleneck
        statistics concatenated.

    Raises:
        ValueError: No parts, or parts of different shapes.
    """
    if not parts:
        raise ValueError("no samples to join")
    shape = parts[0].foreground.shape[1:]
    if any(part.foreground.shape[1:] != shape for part in parts):
        raise ValueError(f"samples of different shapes: {[p.foreground.shape for p in parts]}")
    counts = np.array([part.foreground.shape[0] for part in parts], np.float64)
    weights = (counts / counts.sum()).astype(np.float32)
    moments = [_moments(part) for part in parts]
    joined = SampleMoments(
        **{
            name: sum(w * getattr(m, name) for w, m in zip(weights, moments, strict=True))
            for name in ("probability", "second_moment", "expected_entropy", "contour")
        }
    )
    logits = [part.foreground_logits for part in parts]
    return ImageSamples(
        maps=uncertainty_maps(joined),
        foreground=np.concatenate([part.foreground for part in parts]),
        contour=np.concatenate([part.contour for part in parts]),
        foreground_logits=None if any(z is None for z in logits) else np.concatenate(logits),
        bottleneck=_joined_bottleneck(parts),
    )
