"""Dihedral test-time-augmentation transforms and how (tile, transform) inputs are batched.

Small pure functions used by :mod:`bayescellseg.inference.sampling`.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The 8 elements of the dihedral group as (number of 90-degree rotations, flip first).
TTA_TRANSFORMS: tuple[tuple[int, bool], ...] = tuple(
    (k, flip) for flip in (False, True) for k in range(4)
)
IDENTITY: tuple[tuple[int, bool], ...] = ((0, False),)


def transform(x: Tensor, k: int, flip: bool) -> Tensor:
    """Apply a dihedral transform to the last two axes: optional left-right flip, then ``k``
    counter-clockwise 90-degree rotations."""
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k % 4 else x


def inverse_transform(x: Tensor, k: int, flip: bool) -> Tensor:
    """Undo :func:`transform` with the same ``k`` and ``flip``."""
    if k % 4:
        x = torch.rot90(x, -k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


Input = tuple[int, int, bool]
"""One network input of a tile batch: (tile index, rotations ``k``, flip)."""


def input_groups(
    n_tiles: int, transforms: tuple[tuple[int, bool], ...], shape: tuple[int, int], size: int
) -> list[list[Input]]:
    """Split every (tile, transform) input into forward batches of at most ``size`` inputs.

    Inputs in one batch share their transformed shape (an odd number of rotations swaps the
    height and width of a non-square tile); the order is tile-major, transforms in order.

    Args:
        n_tiles: Tiles of the batch (all of ``shape``).
        transforms: The (k, flip) transforms applied to every tile.
        shape: (height, width) of the tiles.
        size: Largest number of inputs in one forward batch (>= 1).

    Returns:
        The batches, each a list of inputs.
    """
    by_shape: dict[tuple[int, int], list[Input]] = {}
    for tile in range(n_tiles):
        for k, flip in transforms:
            key = shape if k % 2 == 0 else (shape[1], shape[0])
            by_shape.setdefault(key, []).append((tile, k, flip))
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return [
        group[start : start + size]
        for group in by_shape.values()
        for start in range(0, len(group), size)
    ]
