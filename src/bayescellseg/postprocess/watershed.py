"""Nucleus instances from the foreground and contour probability maps (marker-controlled watershed).

The network predicts, per pixel, the probability of being inside a nucleus (``foreground``) and
of lying on a nucleus boundary (``contour``, the inner 1-pixel rim of every nucleus, so touching
nuclei are separated by contour pixels). Instances are built the way the DSB2018 winners did:

1. ``mask = foreground > fg_threshold`` is the region that may be labelled.
2. ``seed_map = foreground - contour_weight * contour``; markers are the connected components of
   ``seed_map > marker_threshold`` inside the mask (optionally eroded by ``marker_erosion``
   pixels); markers smaller than ``min_marker_area`` pixels are dropped.
3. ``skimage.segmentation.watershed`` floods ``-seed_map`` from the markers inside the mask, so
   the contour ridge between two touching nuclei becomes the split line.
4. Foreground components that received no marker (tiny nuclei whose interior is all contour)
   are kept as nuclei of their own, so no detected foreground is silently lost.
5. Nuclei smaller than ``min_size`` pixels are removed, holes inside each nucleus are filled,
   and labels are renumbered 1..N.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk
from skimage.segmentation import watershed

from bayescellseg.settings import from_user_dict

__all__ = ["WatershedParams", "instances_from_maps"]


@dataclass(frozen=True)
class WatershedParams:
    """Settings of :func:`instances_from_maps` (stored in a model folder's extras ``postprocess``).

    Attributes:
        fg_threshold: Pixels with foreground probability above this may belong to a nucleus.
        contour_weight: Weight of the contour probability subtracted from the foreground
            probability to make the seed map.
        marker_threshold: Seed-map value above which a pixel is a marker (nucleus core).
        min_marker_area: Markers smaller than this (pixels) are dropped, so noise does not split
            a nucleus.
        marker_erosion: Radius (pixels) of a disk the marker mask is eroded by; 0 = none.
        min_size: Nuclei smaller than this (pixels) are removed.
        fill_holes: Fill holes enclosed by a single nucleus.
    """

    fg_threshold: float = 0.5
    contour_weight: float = 1.0
    marker_threshold: float = 0.5
    min_marker_area: int = 4
    marker_erosion: int = 0
    min_size: int = 10
    fill_holes: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.fg_threshold < 1.0:
            raise ValueError(f"fg_threshold must be in [0, 1), got {self.fg_threshold}")
        if self.contour_weight < 0:
            raise ValueError(f"contour_weight must be >= 0, got {self.contour_weight}")
        for name in ("min_marker_area", "marker_erosion", "min_size"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of the settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "postprocess") -> WatershedParams:
        """Build from a dict as written by :meth:`to_dict`; missing keys keep their defaults.

        Args:
            data: The settings.
            source: Where the dict came from, used in error messages.

        Raises:
            InputError: Unknown keys or invalid values.
        """
        return from_user_dict(cls, data, source, "watershed setting")


def _check_maps(foreground: np.ndarray, contour: np.ndarray) -> None:
    if foreground.ndim != 2 or contour.shape != foreground.shape:
        raise ValueError(
            "foreground and contour must be 2-D maps of the same shape, got "
            f"{foreground.shape} and {contour.shape}"
        )
    if not (np.isfinite(foreground).all() and np.isfinite(contour).all()):
        raise ValueError("foreground and contour maps must not contain NaN or infinity")


def _remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Labels with every object smaller than ``min_size`` pixels set to 0 and the others
    numbered 1..N in their order (a new uint32 array; one look-up pass, the same result as
    removing them and then ``skimage.segmentation.relabel_sequential``)."""
    keep = np.bincount(labels.ravel()) >= max(min_size, 1)
    keep[0] = False
    lookup = np.cumsum(keep, dtype=np.uint32)
    lookup[~keep] = 0
    return lookup[labels]


def enclosed_background(background: np.ndarray) -> np.ndarray:
    """Background pixels not 4-connected to the image border: the same as
    ``ndi.binary_fill_holes(~background) & background``, by one labelling pass instead of an
    iterated dilation (about 4x faster on large images)."""
    components, n = ndi.label(background)  # 4-connectivity, as binary_fill_holes uses
    if n == 0:
        return np.zeros(background.shape, bool)
    border = np.concatenate([components[0], components[-1], components[:, 0], components[:, -1]])
    inner = np.ones(n + 1, bool)
    inner[0] = False
    inner[border] = False
    return inner[components]


def _fill_holes_per_label(labels: np.ndarray) -> np.ndarray:
    """Fill background holes that are enclosed by a single nucleus (a new array)."""
    out = labels.copy()
    background = labels == 0
    holes = enclosed_background(background)
    if not holes.any():
        return out
    # Only nuclei that border a hole can enclose one.
    candidates = np.unique(labels[ndi.binary_dilation(holes)])
    objects = ndi.find_objects(labels)
    for index in candidates[candidates > 0].tolist():
        slices = objects[index - 1]
        # Pad the crop by one pixel so a nucleus touching the crop edge is handled correctly.
        crop = np.pad(labels[slices] == index, 1)
        filled = ndi.binary_fill_holes(crop)[1:-1, 1:-1]
        new = filled & holes[slices]
        if new.any():
            out[slices][new] = index
    return out


def instances_from_maps(
    foreground: np.ndarray,
    contour: np.ndarray,
    params: WatershedParams | None = None,
) -> np.ndarray:
    """Instance labels from foreground and contour probability maps.

    Args:
        foreground: (H, W) nucleus foreground probability in [0, 1].
        contour: (H, W) nucleus contour probability in [0, 1].
        params: Watershed settings; defaults to ``WatershedParams()``.

    Returns:
        (H, W) uint32 labels, 0 = background, nuclei numbered 1..N.

    Raises:
        ValueError: The maps are not 2-D, differ in shape, or contain NaN / infinity.
    """
    params = params or WatershedParams()
    foreground = np.asarray(foreground, dtype=np.float32)
    contour = np.asarray(contour, dtype=np.float32)
    _check_maps(foreground, contour)

    mask = foreground > params.fg_threshold
    if not mask.any():
        return np.zeros(foreground.shape, np.uint32)
    seed_map = foreground - np.float32(params.contour_weight) * contour
    marker_mask = (seed_map > params.marker_threshold) & mask
    if params.marker_erosion > 0:
        marker_mask = ndi.binary_erosion(marker_mask, structure=disk(params.marker_erosion))
    markers, n_markers = ndi.label(marker_mask)
    if params.min_marker_area > 1 and n_markers:
        markers = _remove_small(markers, params.min_marker_area)

    labels = watershed(-seed_map, markers=markers, mask=mask)

    # Foreground components without a marker become nuclei of their own.
    orphans, n_orphans = ndi.label(mask & (labels == 0))
    if n_orphans:
        offset = int(labels.max())
        labels = np.where(orphans > 0, orphans + offset, labels)

    labels = _remove_small(labels, params.min_size)  # and numbered 1..N
    if params.fill_holes:  # fills holes, never adds or removes a nucleus
        labels = _fill_holes_per_label(labels)
    return labels
