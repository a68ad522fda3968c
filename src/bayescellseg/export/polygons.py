"""Nucleus outlines as polygons in pixel-corner coordinates (QuPath's and ImageJ's convention:
pixel (row r, column c) covers x in [c, c + 1], y in [r, r + 1]).

Each outline is ``skimage.measure.find_contours`` at level 0.5 of the nucleus mask: it runs
along the pixel edges and cuts each corner pixel diagonally (by at most half a pixel), so
rasterising it again (pixel centres inside the polygon) gives back the mask, up to pixels on the
nucleus border. The mask's foreground is taken as 8-connected, so diagonal touches stay in one
outline. A nucleus in several pieces keeps the outline of its largest piece, and holes are
ignored (one simple outline per nucleus, as QuPath detections and ImageJ ROIs expect).
Collinear vertices are removed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import approximate_polygon, find_contours


def _area(points: np.ndarray) -> float:
    """Signed shoelace area of an (N, 2) closed or open ring."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def outline(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The outer outline of the largest piece of a boolean mask.

    Args:
        mask: (h, w) boolean mask with at least one True pixel.
        offset: (row, column) of ``mask[0, 0]`` in the full image.

    Returns:
        (N, 2) float array of (x, y) vertices in pixel-corner coordinates, not closed (the
        first vertex is not repeated), counter-clockwise in (x, y) (positive shoelace area).

    Raises:
        ValueError: An empty mask.
    """
    if not mask.any():
        raise ValueError("empty mask has no outline")
    padded = np.pad(mask.astype(np.float32), 1)
    contours = find_contours(padded, 0.5, fully_connected="high")
    rings = [np.column_stack([c[:, 1], c[:, 0]]) for c in contours]  # (x, y)
    ring = max(rings, key=lambda r: abs(_area(r)))
    ring = approximate_polygon(ring, tolerance=1e-3)[:-1]  # closed by find_contours
    if _area(ring) < 0:
        ring = ring[::-1]
    shift = np.array([offset[1] - 1 + 0.5, offset[0] - 1 + 0.5])  # padding, then centre->corner
    return ring + shift


def nucleus_outlines(labels: np.ndarray) -> dict[int, np.ndarray]:
    """The outline of every nucleus, by label, in increasing label order.

    Args:
        labels: (H, W) instance labels, 0 = background.

    Returns:
        {label: (N, 2) (x, y) vertices} as :func:`outline` returns them.
    """
    lab = np.asarray(labels)
    out: dict[int, np.ndarray] = {}
    for index, box in enumerate(ndimage.find_objects(lab)):
        if box is None:
            continue
        label = index + 1
        out[label] = outline(lab[box] == label, (box[0].start, box[1].start))
    return out
