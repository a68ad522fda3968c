"""Overlapping tiles and Gaussian blending weights for sliding-window inference.

The scheme follows nnU-Net's ``sliding_window_prediction``: tiles overlap, their start positions
are spread evenly so that the first tile starts at 0 and the last one ends at the image border,
and every tile's prediction is weighted by a Gaussian centred on the tile before the weighted
sum is divided by the summed weights. The Gaussian gives little weight to tile borders, where
a convolutional network sees zero padding instead of image context. Unlike nnU-Net's fixed
patch, the tile is shrunk per axis to the smallest extent that needs no more tiles
(:func:`tile_extent`), so little of the network's work is spent on doubly covered pixels.
"""

from __future__ import annotations

import math

import numpy as np


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of overlapping tiles covering ``[0, size)`` along one axis.

    Args:
        size: Image extent along the axis (pixels, > 0).
        tile: Tile extent (pixels, > 0). An image no larger than ``tile`` gets a single tile
            starting at 0 (the caller then uses a tile of extent ``size``).
        overlap: Minimum overlap between neighbouring tiles in pixels, ``0 <= overlap < tile``
            (not checked when one tile covers the axis).

    Returns:
        Sorted start offsets. The first is 0, the last is ``size - tile``; neighbouring tiles
        overlap by at least ``overlap`` pixels (the steps are spread evenly, so the actual overlap
        is usually a little larger).

    Raises:
        ValueError: For a non-positive size or tile, or an overlap outside ``[0, tile)``.
    """
    if size <= 0 or tile <= 0:
        raise ValueError(f"size and tile must be positive, got size={size}, tile={tile}")
    if size <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
    step = tile - overlap
    n_tiles = math.ceil((size - tile) / step) + 1
    actual_step = (size - tile) / (n_tiles - 1)
    return [int(round(i * actual_step)) for i in range(n_tiles)]


def tile_extent(size: int, tile: int, overlap: int, align: int = 1) -> int:
    """The smallest tile extent along one axis that needs no more tiles than ``tile`` does.

    With tiles of ``tile`` pixels, an axis of ``size`` needs ``n`` tiles (:func:`tile_starts`);
    ``n`` tiles of the returned extent still cover it with at least ``overlap`` between
    neighbours, so the network sees fewer padded and doubly covered pixels (a 520-pixel axis
    takes two 292-pixel tiles instead of two 512-pixel tiles that overlap by 504).

    Args:
        size: Image extent along the axis (pixels, > 0).
        tile: Largest tile extent (pixels, > 0).
        overlap: Minimum overlap between neighbouring tiles, ``0 <= overlap < tile``.
        align: The extent is rounded up to a multiple of this (a U-Net's ``2**depth``, so no
            tile needs padding), but never beyond ``min(tile, size)``.

    Returns:
        The tile extent, in ``[1, min(tile, size)]``.

    Raises:
        ValueError: As :func:`tile_starts`, or ``align < 1``.
    """
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    n_tiles = len(tile_starts(size, tile, overlap))
    if n_tiles == 1:
        return min(tile, size)
    needed = math.ceil((size + (n_tiles - 1) * overlap) / n_tiles)
    return min(math.ceil(needed / align) * align, tile, size)


def _extents(shape: tuple[int, int], tile: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (tile, tile) if isinstance(tile, int) else tile
    return min(height, shape[0]), min(width, shape[1])


def tile_slices(
    shape: tuple[int, int], tile: int | tuple[int, int], overlap: int
) -> list[tuple[slice, slice]]:
    """All (row, column) slices of the tiles covering an image of ``shape``.

    Args:
        shape: Image (height, width).
        tile: Tile size in pixels, an int for square tiles or (height, width) (clipped to the
            image extent per axis).
        overlap: Minimum overlap between neighbouring tiles in pixels.

    Returns:
        Slices in row-major order; together they cover every pixel at least once.
    """
    height, width = _extents(shape, tile)
    rows = [(s, height) for s in tile_starts(shape[0], height, overlap)]
    cols = [(s, width) for s in tile_starts(shape[1], width, overlap)]
    return [(slice(r, r + h), slice(c, c + w)) for r, h in rows for c, w in cols]


def tile_cores(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """The part of ``[0, size)`` each tile is responsible for when tiles are *not* blended.

    Every pixel belongs to the tile whose centre is nearest (the tile with the largest Gaussian
    weight there), so the cores partition ``[0, size)``. Used for per-sample maps, which are
    stored compactly and are therefore cut at the midpoints between tile centres instead of being
    blended.

    Args:
        size: Image extent along the axis.
        tile: Tile extent.
        overlap: Minimum overlap, as for :func:`tile_starts`.

    Returns:
        One ``(begin, end)`` pair per start of :func:`tile_starts`, in image coordinates.
    """
    starts = tile_starts(size, tile, overlap)
    extent = min(tile, size)
    centres = [s + extent / 2 for s in starts]
    cuts = (
        [0]
        + [int(round((a + b) / 2)) for a, b in zip(centres[:-1], centres[1:], strict=True)]
        + [size]
    )
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def core_slices(
    shape: tuple[int, int], tile: int | tuple[int, int], overlap: int
) -> list[tuple[slice, slice]]:
    """(row, column) slices of every tile's core, in the order of :func:`tile_slices`."""
    height, width = _extents(shape, tile)
    rows = tile_cores(shape[0], height, overlap)
    cols = tile_cores(shape[1], width, overlap)
    return [(slice(r0, r1), slice(c0, c1)) for r0, r1 in rows for c0, c1 in cols]


def gaussian_weight(tile: int | tuple[int, int], sigma_scale: float = 1 / 8) -> np.ndarray:
    """Gaussian blending weights for one tile, maximal (1.0) at its centre.

    Args:
        tile: Tile size, an int for a square tile or (height, width).
        sigma_scale: Standard deviation as a fraction of the tile extent (nnU-Net uses 1/8).

    Returns:
        (height, width) float32 weights in (0, 1]. Values are bounded below by the smallest
        non-zero weight so that every pixel keeps a positive weight (as nnU-Net does); the
        blended result is unaffected by the scale of the weights.
    """
    height, width = (tile, tile) if isinstance(tile, int) else tile
    if height <= 0 or width <= 0 or sigma_scale <= 0:
        raise ValueError(f"tile sizes and sigma_scale must be positive, got {tile}, {sigma_scale}")

    def axis_weight(n: int) -> np.ndarray:
        centre = (n - 1) / 2
        sigma = n * sigma_scale
        return np.exp(-0.5 * ((np.arange(n) - centre) / sigma) ** 2)

    weight = np.outer(axis_weight(height), axis_weight(width))
    weight /= weight.max()
    positive = weight[weight > 0]
    floor = positive.min() if positive.size else 1.0
    return np.maximum(weight, max(floor, 1e-8)).astype(np.float32)
