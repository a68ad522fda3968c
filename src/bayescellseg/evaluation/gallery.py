"""The report's image galleries: the k most uncertain and the k worst images, side by side.

Only the current top-k entries keep their rendered panels, so memory does not grow with the
number of images scored.
"""

from __future__ import annotations

import heapq
import io
import itertools
import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from bayescellseg.evaluation.sources import EvalItem
from bayescellseg.report.html import GalleryEntry

PANEL_MAX_SIDE = 400


def panel_bytes(rgb: np.ndarray, max_side: int = PANEL_MAX_SIDE) -> bytes:
    """JPEG bytes (quality 90, no chroma subsampling, so thin coloured outlines stay crisp) of
    an (H, W, 3) uint8 image downscaled (Lanczos) so its longer side is at most ``max_side``.

    JPEG keeps the report a few MB: microscopy panels compress 4-5x better than as PNG.
    """
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


def _display_source(item: EvalItem) -> np.ndarray:
    if item.image is not None:
        return item.image
    prob = item.prediction.maps.get("probability")
    if prob is not None:
        return np.repeat(prob[..., None], 3, axis=2)
    return np.repeat((item.prediction.labels > 0)[..., None].astype(np.float32), 3, axis=2)


def render_panels(item: EvalItem, unmatched: set[int]) -> tuple[tuple[str, bytes], ...]:
    """Image, truth outlines, prediction outlines and the uncertainty map of one item.

    Args:
        item: The scored item.
        unmatched: Predicted labels without a true match at IoU 0.5 (ringed in magenta).

    Returns:
        ``(caption, JPEG bytes)`` panels.
    """
    from bayescellseg.report.overlay import (
        colorize,
        display_image,
        make_overlay,
        uncertainty_vmax,
    )

    source = _display_source(item)
    pred = item.prediction
    truth_ids = [int(i) for i in np.unique(item.truth) if i != 0]
    scale = "green = certain, red = uncertain"
    if uncertainty_vmax(pred.review_threshold) != 1.0:
        scale = "green = certain, yellow = review threshold, red = twice it"
    panels = [
        ("image" if item.image is not None else "image unavailable: probability map",
         display_image(source)),
        ("truth (outlined)", make_overlay(source, item.truth, dict.fromkeys(truth_ids, 0.5))),
        (f"prediction: outline colour = nucleus uncertainty ({scale}), magenta = no true match",
         make_overlay(source, pred.labels, pred.nucleus_uncertainty, unmatched,
                      vmax=uncertainty_vmax(pred.review_threshold))),
    ]  # fmt: skip
    for key, caption in (("entropy", "predictive entropy (bits, 0-1)"),
                         ("epistemic", "mutual information (bits)")):  # fmt: skip
        if key in pred.maps:
            vmax = 1.0 if key == "entropy" else max(float(pred.maps[key].max()), 1e-6)
            panels.append((caption, colorize(pred.maps[key], 0.0, vmax)))
            break
    return tuple(
        (caption, panel_bytes((a * 255).round().astype(np.uint8) if a.dtype != np.uint8 else a))
        for caption, a in panels
    )


class TopK:
    """Keeps the ``k`` entries with the largest keys; entries are built only when they qualify.

    Args:
        k: Number of entries to keep.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int, GalleryEntry]] = []
        self._count = itertools.count()

    def offer(self, key: float, build: Callable[[], GalleryEntry]) -> None:
        """Consider an entry with sort ``key`` (nan keys are ignored)."""
        if self.k <= 0 or not math.isfinite(key):
            return
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (key, next(self._count), build()))
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (key, next(self._count), build()))

    def entries(self) -> list[GalleryEntry]:
        """Entries, largest key first."""
        return [e for _, _, e in sorted(self._heap, key=lambda t: (-t[0], t[1]))]
