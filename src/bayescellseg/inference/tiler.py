"""Model-agnostic sliding-window inference that stitches moments on the device.

In the style of MONAI's ``sliding_window_inference``: :func:`sliding_window` cuts an image
into overlapping tiles (:mod:`bayescellseg.inference.tiling`: nnU-Net's evenly spread steps and
Gaussian weights), hands batches of tiles to any *predictor* callable and stitches what it
returns, all on the image tensor's device; nothing is copied to the host until the caller asks.

A predictor maps a (B, C, h, w) batch of tiles to a :class:`TileOutput`:

* ``moments``: linear per-pixel quantities of every tile, (B, h, w) float32 (for the Bayesian
  U-Net: mean probability, its second moment, expected entropy, mean contour). They are blended
  across overlapping tiles with the Gaussian weights, which is exact for linear moments.
* ``per_sample``: per-sample maps of every tile, (T, B, h, w) in any dtype (e.g. uint8
  quantised probabilities). They are not blended: each pixel takes the value of the tile whose
  centre is nearest (its *core*, :func:`~bayescellseg.inference.tiling.core_slices`), so they
  can be stored compactly.

An image that fits in one tile is predicted in one piece and its moments are returned as the
predictor gave them (no weighting).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bayescellseg.inference.tiling import core_slices, gaussian_weight, tile_extent, tile_slices

Region = tuple[slice, slice]


@dataclass(frozen=True)
class TileOutput:
    """What a predictor returns for a batch of B tiles, or the stitched whole image.

    Attributes:
        moments: Name -> (B, h, w) float32 linear moments (stitched: (H, W)).
        per_sample: Name -> (T, B, h, w) per-sample maps (stitched: (T, H, W)).
    """

    moments: dict[str, Tensor]
    per_sample: dict[str, Tensor] = field(default_factory=dict)


Predictor = Callable[[Tensor], TileOutput]
"""(B, C, h, w) tiles on the device -> their :class:`TileOutput`."""


@dataclass(frozen=True)
class WindowPlan:
    """Where the tiles of an image lie.

    Attributes:
        tiles: (row, column) slices of every tile, row-major.
        cores: The part of the image each tile owns for per-sample maps.
        tile_shape: (h, w) of every tile (the tile size clipped to the image).
    """

    tiles: list[Region]
    cores: list[Region]
    tile_shape: tuple[int, int]


def window_plan(shape: tuple[int, int], tile_size: int, overlap: int, align: int = 1) -> WindowPlan:
    """The tiles and cores covering an image of ``shape`` (pure function).

    Args:
        shape: Image (height, width).
        tile_size: Largest tile extent in pixels; per axis the tile is the smallest extent
            that needs no more tiles (:func:`~bayescellseg.inference.tiling.tile_extent`).
        overlap: Minimum overlap of neighbouring tiles in pixels.
        align: Tile extents are rounded up to a multiple of this where the image allows.
    """
    extents = (
        tile_extent(shape[0], tile_size, overlap, align),
        tile_extent(shape[1], tile_size, overlap, align),
    )
    return WindowPlan(
        tiles=tile_slices(shape, extents, overlap),
        cores=core_slices(shape, extents, overlap),
        tile_shape=extents,
    )


def _local(tile: Region, core: Region) -> Region:
    """The core's slices in the tile's own coordinates."""
    rows, cols = tile
    return (
        slice(core[0].start - rows.start, core[0].stop - rows.start),
        slice(core[1].start - cols.start, core[1].stop - cols.start),
    )


class _Stitcher:
    """Gaussian-weighted sums of tile moments and core copies of per-sample maps (device)."""

    def __init__(self, shape: tuple[int, int], weight: Tensor) -> None:
        self.shape, self.weight = shape, weight
        self.sums: dict[str, Tensor] = {}
        self.per_sample: dict[str, Tensor] = {}
        self.total = torch.zeros(shape, dtype=torch.float32, device=weight.device)

    def add(self, out: TileOutput, tiles: list[Region], cores: list[Region]) -> None:
        for name, values in out.moments.items():
            if name not in self.sums:
                self.sums[name] = torch.zeros_like(self.total)
            for b, where in enumerate(tiles):
                self.sums[name][where] += self.weight * values[b]
        for name, values in out.per_sample.items():
            if name not in self.per_sample:
                lead = values.shape[0]
                self.per_sample[name] = values.new_zeros((lead, *self.shape))
            for b, (where, core) in enumerate(zip(tiles, cores, strict=True)):
                local = _local(where, core)
                self.per_sample[name][:, core[0], core[1]] = values[:, b, local[0], local[1]]
        for where in tiles:
            self.total[where] += self.weight

    def result(self) -> TileOutput:
        if not bool((self.total > 0).all()):
            raise RuntimeError("some pixels were not covered by any tile")
        moments = {name: s / self.total for name, s in self.sums.items()}
        return TileOutput(moments, self.per_sample)


def sliding_window(
    image: Tensor,
    predictor: Predictor,
    tile_size: int,
    overlap: int,
    tiles_per_batch: int = 1,
    align: int = 1,
) -> TileOutput:
    """Predict an image tile by tile and stitch the outputs on the image's device.

    Args:
        image: (C, H, W) input tensor, on the device the predictor runs on.
        predictor: Batch of tiles -> :class:`TileOutput` (see the module docstring).
        tile_size: Tile size in pixels; an image no larger than this is predicted whole.
        overlap: Minimum overlap of neighbouring tiles in pixels (``< tile_size``).
        tiles_per_batch: Tiles handed to the predictor at once (>= 1).
        align: Tile extents are rounded up to a multiple of this (see :func:`window_plan`).

    Returns:
        Moments (H, W), blended with Gaussian weights, and per-sample maps (T, H, W) taken
        from the tile cores.
    """
    if tiles_per_batch < 1:
        raise ValueError(f"tiles_per_batch must be >= 1, got {tiles_per_batch}")
    shape = (int(image.shape[-2]), int(image.shape[-1]))
    plan = window_plan(shape, tile_size, overlap, align)
    if len(plan.tiles) == 1:
        out = predictor(image[None])
        return TileOutput(
            {k: v[0] for k, v in out.moments.items()},
            {k: v[:, 0] for k, v in out.per_sample.items()},
        )
    weight = torch.from_numpy(gaussian_weight(plan.tile_shape, 1 / 8)).to(image.device)
    stitcher = _Stitcher(shape, weight)
    for start in range(0, len(plan.tiles), tiles_per_batch):
        tiles = plan.tiles[start : start + tiles_per_batch]
        cores = plan.cores[start : start + tiles_per_batch]
        batch = torch.stack([image[:, rows, cols] for rows, cols in tiles])
        stitcher.add(predictor(batch), tiles, cores)
    return stitcher.result()
