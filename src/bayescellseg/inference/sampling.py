"""Stochastic forward passes: T posterior samples per tile, batched, optionally with 8-fold TTA.

Samples
    * ``mc_dropout`` / ``variational``: T passes with sampling switched on.
    * ``ensemble`` without dropout: one deterministic pass per member (T = M).
    * ``ensemble`` with dropout: T passes spread over the M members (member m gets
      ``T // M`` passes, plus one for the first ``T % M`` members; T is raised to M if smaller).
    * ``deterministic``: a single pass (T = 1).

Reproducibility
    Sample ``t`` (counted over all members) draws all its noise from its own generator, seeded
    with :func:`sample_seed` ``(seed, t)`` (via :func:`bayescellseg.model.layers.row_seeds`). So the
    result does not depend on how samples are grouped into batches, on whether the deterministic
    part is shared, or on the tile: with spatial dropout, sample t is the *same network* in every
    tile of a large image, and under every TTA transform.

Decoder-tail sharing
    With ``share=True`` the deterministic part of the network (everything before the first
    stochastic layer, :meth:`UNet.forward_shared`) runs once per tile and transform, and only the
    stochastic tail runs for the T samples, in micro-batches of at most ``max_batch_pixels``
    pixels. ``share=False`` runs the full network for every sample (the reference path).

Test-time augmentation
    With ``tta=True`` each sample is evaluated under the 8 flips / 90-degree rotations of the
    input; each output is transformed back before it is used. All T x 8 predictions count as
    samples of the predictive distribution for the moments (so disagreement between transforms
    shows up as uncertainty), while the per-sample maps (used for nucleus stability) average
    sample t over its 8 transforms.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from bayescellseg.inference.tiling import core_slices, gaussian_weight, tile_slices
from bayescellseg.inference.uncertainty import (
    MomentStitcher,
    SampleMoments,
    UncertaintyMaps,
    binary_entropy,
    uncertainty_maps,
)
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.layers import row_seeds, sampling
from bayescellseg.model.unet import repeat_state

#: The 8 elements of the dihedral group as (number of 90-degree rotations, flip first).
TTA_TRANSFORMS: tuple[tuple[int, bool], ...] = tuple(
    (k, flip) for flip in (False, True) for k in range(4)
)
IDENTITY: tuple[tuple[int, bool], ...] = ((0, False),)


@dataclass(frozen=True)
class SamplingOptions:
    """How to draw samples.

    Attributes:
        n_samples: Requested number of stochastic samples T (None: the model's default,
            ``config.n_samples``, times the members for an ensemble with dropout; 0: one
            deterministic pass per member with sampling switched off).
        tta: Cross every sample with the 8 flips / rotations.
        share: Run the deterministic part once and batch only the stochastic tail.
        seed: Base seed; sample t uses ``sample_seed(seed, t)``.
        temperature: Foreground logits are divided by this before the sigmoid (calibration).
        logit_bias: Then this is added (calibration): ``p = sigmoid(z / temperature + bias)``.
        max_batch_pixels: Upper bound on rows x pixels of one forward batch (memory / speed).
        keep_logits: Also return each sample's raw foreground logit (before the temperature;
            with TTA, the mean over the transforms), e.g. to fit the temperature.
    """

    n_samples: int | None = None
    tta: bool = False
    share: bool = True
    seed: int = 0
    temperature: float = 1.0
    logit_bias: float = 0.0
    max_batch_pixels: int = 2**19
    keep_logits: bool = False

    def __post_init__(self) -> None:
        if self.n_samples is not None and self.n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {self.n_samples}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not math.isfinite(self.logit_bias):
            raise ValueError(f"logit_bias must be finite, got {self.logit_bias}")
        if self.max_batch_pixels < 1:
            raise ValueError(f"max_batch_pixels must be >= 1, got {self.max_batch_pixels}")


@dataclass(frozen=True)
class TileSamples:
    """Samples of one tile.

    Attributes:
        moments: Moments over all T x K predictions (K = 8 with TTA, else 1).
        foreground: (T, h, w) float32 per-sample foreground probability (mean over transforms).
        contour: (T, h, w) float32 per-sample contour probability (mean over transforms).
        foreground_logits: (T, h, w) float32 per-sample raw foreground logit (mean over
            transforms), only with ``SamplingOptions.keep_logits``; else None.
    """

    moments: SampleMoments
    foreground: np.ndarray
    contour: np.ndarray
    foreground_logits: np.ndarray | None = None


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` derived from the base ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(1)[0])


def members_of(model: nn.Module) -> list[nn.Module]:
    """The member networks of an ensemble, or ``[model]`` for a single network."""
    members = getattr(model, "members", None)
    return list(members) if members is not None else [model]


def samples_per_member(config: ModelConfig, n_members: int, n_samples: int | None) -> list[int]:
    """Number of stochastic passes of each member (see the module docstring).

    Args:
        config: The model's configuration.
        n_members: Number of member networks (1 for a single U-Net).
        n_samples: Requested total T, or None for the model's default. ``0`` asks for one
            deterministic pass per member (dropout off, variational mean weights).

    Returns:
        One count per member; their sum is the effective T.
    """
    if n_samples is not None and n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    if not config.is_stochastic or n_samples == 0:
        return [1] * n_members
    total = n_samples if n_samples is not None else config.n_samples * n_members
    total = max(total, n_members)
    return [total // n_members + (m < total % n_members) for m in range(n_members)]


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


def _chunks(indices: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield indices[start : start + size]


def _member_logits(
    member: nn.Module, x: Tensor, seeds: list[int], share: bool, rows_per_batch: int
) -> Iterator[tuple[list[int], Tensor]]:
    """Yield (positions in ``seeds``, logits) for micro-batches of one member's samples."""
    positions = list(range(len(seeds)))
    shared = share and hasattr(member, "forward_shared")
    if shared:
        state = member.forward_shared(x)
    for chunk in _chunks(positions, rows_per_batch):
        with row_seeds([seeds[i] for i in chunk]):
            if shared:
                logits = member.forward_stochastic(repeat_state(state, len(chunk)))
            else:
                logits = member(x.repeat(len(chunk), 1, 1, 1))
        yield chunk, logits


@torch.no_grad()
def sample_tile(
    model: nn.Module, config: ModelConfig, image: np.ndarray, options: SamplingOptions
) -> TileSamples:
    """Draw the samples of one tile (or a whole image that fits in memory).

    Args:
        model: A ``UNet`` or ``Ensemble`` in eval mode.
        config: Its configuration.
        image: (h, w, 3) float32 normalised image.
        options: Sampling options.

    Returns:
        Moments over all predictions and per-sample probability maps.
    """
    if image.ndim != 3 or image.shape[2] != config.in_channels:
        raise ValueError(f"expected an (h, w, {config.in_channels}) image, got {image.shape}")
    height, width = image.shape[:2]
    members = members_of(model)
    counts = samples_per_member(config, len(members), options.n_samples)
    n_total = sum(counts)
    transforms = TTA_TRANSFORMS if options.tta else IDENTITY
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    rows_per_batch = max(1, options.max_batch_pixels // (height * width))

    sums = {name: torch.zeros((height, width)) for name in ("p", "p2", "h")}
    contour_sum = torch.zeros((height, width))
    per_fg = torch.zeros((n_total, height, width), dtype=torch.float32)
    per_ct = torch.zeros((n_total, height, width), dtype=torch.float32)
    per_z = torch.zeros((n_total, height, width)) if options.keep_logits else None

    first = 0
    with sampling(model, config.is_stochastic and options.n_samples != 0):
        for member, count in zip(members, counts, strict=True):
            seeds = [sample_seed(options.seed, first + i) for i in range(count)]
            for k, flip in transforms:
                xt = transform(x, k, flip).contiguous()
                for chunk, logits in _member_logits(
                    member, xt, seeds, options.share, rows_per_batch
                ):
                    logits = inverse_transform(logits, k, flip).float().cpu()
                    fg = torch.sigmoid(logits[:, 0] / options.temperature + options.logit_bias)
                    ct = torch.sigmoid(logits[:, 1])
                    sums["p"] += fg.sum(0)
                    sums["p2"] += fg.square().sum(0)
                    sums["h"] += torch.from_numpy(binary_entropy(fg.numpy())).sum(0)
                    contour_sum += ct.sum(0)
                    rows = [first + i for i in chunk]
                    per_fg[rows] += fg / len(transforms)
                    per_ct[rows] += ct / len(transforms)
                    if per_z is not None:
                        per_z[rows] += logits[:, 0] / len(transforms)
            first += count

    n_predictions = n_total * len(transforms)
    moments = SampleMoments(
        probability=(sums["p"] / n_predictions).numpy(),
        second_moment=(sums["p2"] / n_predictions).numpy(),
        expected_entropy=(sums["h"] / n_predictions).numpy(),
        contour=(contour_sum / n_predictions).numpy(),
    )
    return TileSamples(
        moments=moments,
        foreground=per_fg.numpy(),
        contour=per_ct.numpy(),
        foreground_logits=None if per_z is None else per_z.numpy(),
    )


@dataclass(frozen=True)
class ImageSamples:
    """Uncertainty maps of a whole image and its compact per-sample maps.

    Attributes:
        maps: Per-pixel maps (blended across tiles).
        foreground: (T, H, W) uint8 per-sample foreground probability, ``round(255 p)``.
        contour: (T, H, W) uint8 per-sample contour probability, ``round(255 p)``.
        foreground_logits: (T, H, W) float16 per-sample raw foreground logit, only with
            ``SamplingOptions.keep_logits`` (taken from the tile cores like the maps above).
    """

    maps: UncertaintyMaps
    foreground: np.ndarray
    contour: np.ndarray
    foreground_logits: np.ndarray | None = None


def quantize(p: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] to uint8 ``round(255 p)`` (error at most 1/510)."""
    return np.rint(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)


def dequantize(q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize` (float32)."""
    return q.astype(np.float32) / np.float32(255.0)


def to_half(logits: np.ndarray) -> np.ndarray:
    """Logits to float16, clipped to +-60000 so that none overflows to infinity."""
    return np.clip(logits, -60000.0, 60000.0).astype(np.float16)


def sample_image(
    model: nn.Module,
    config: ModelConfig,
    image: np.ndarray,
    options: SamplingOptions,
    tile_size: int = 512,
    overlap: int | None = None,
) -> ImageSamples:
    """Samples of a whole image, tile by tile, stitched with Gaussian weights.

    Linear moments are blended across overlapping tiles; the non-linear maps are computed from
    the blended moments. Per-sample maps are stored as uint8 and, instead of being blended, are
    taken from the tile whose centre is nearest (its *core*). Peak memory is therefore the
    full-size maps plus ``2 T`` bytes per pixel plus one tile's worth of samples.

    Args:
        model: A ``UNet`` or ``Ensemble`` in eval mode.
        config: Its configuration.
        image: (H, W, 3) float32 normalised image.
        options: Sampling options.
        tile_size: Tile size in pixels; an image no larger than this is processed in one piece.
        overlap: Minimum tile overlap in pixels (default ``tile_size // 8``).

    Returns:
        Maps and per-sample maps.
    """
    if tile_size < 2**config.depth:
        raise ValueError(f"tile_size must be at least {2**config.depth}, got {tile_size}")
    height, width = image.shape[:2]
    overlap = tile_size // 8 if overlap is None else overlap
    tiles = tile_slices((height, width), tile_size, overlap)
    if len(tiles) == 1:
        one = sample_tile(model, config, image, options)
        logits = None if one.foreground_logits is None else to_half(one.foreground_logits)
        return ImageSamples(
            uncertainty_maps(one.moments), quantize(one.foreground), quantize(one.contour), logits
        )
    cores = core_slices((height, width), tile_size, overlap)
    n_total = sum(samples_per_member(config, len(members_of(model)), options.n_samples))
    per_fg = np.zeros((n_total, height, width), np.uint8)
    per_ct = np.zeros((n_total, height, width), np.uint8)
    per_z = np.zeros((n_total, height, width), np.float16) if options.keep_logits else None
    stitcher = MomentStitcher((height, width))
    weight = gaussian_weight((min(tile_size, height), min(tile_size, width)), 1 / 8)
    for (rows, cols), (core_r, core_c) in zip(tiles, cores, strict=True):
        tile = sample_tile(model, config, image[rows, cols], options)
        stitcher.add((rows, cols), tile.moments, weight)
        local = (
            slice(core_r.start - rows.start, core_r.stop - rows.start),
            slice(core_c.start - cols.start, core_c.stop - cols.start),
        )
        per_fg[:, core_r, core_c] = quantize(tile.foreground[:, local[0], local[1]])
        per_ct[:, core_r, core_c] = quantize(tile.contour[:, local[0], local[1]])
        if per_z is not None and tile.foreground_logits is not None:
            per_z[:, core_r, core_c] = to_half(tile.foreground_logits[:, local[0], local[1]])
    return ImageSamples(uncertainty_maps(stitcher.result()), per_fg, per_ct, per_z)
