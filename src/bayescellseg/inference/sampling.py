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

from bayescellseg.inference.fusion import inference_members
from bayescellseg.inference.precision import (
    PRECISIONS,
    forward_precision,
    prepare_input,
    prepare_model,
    resolve_precision,
)
from bayescellseg.inference.tiling import core_slices, gaussian_weight, tile_slices
from bayescellseg.inference.transforms import (
    IDENTITY,
    TTA_TRANSFORMS,
    input_groups,
    inverse_transform,
    transform,
)
from bayescellseg.inference.uncertainty import (
    MomentStitcher,
    SampleMoments,
    UncertaintyMaps,
    binary_entropy_tensor,
    uncertainty_maps,
)
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.layers import row_seeds, sampling
from bayescellseg.model.unet import repeat_state


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
        precision: Precision of the forward pass, ``fp32`` (default), ``bf16``, ``fp16`` or
            ``auto`` (see :mod:`bayescellseg.inference.precision`).
    """

    n_samples: int | None = None
    tta: bool = False
    share: bool = True
    seed: int = 0
    temperature: float = 1.0
    logit_bias: float = 0.0
    max_batch_pixels: int = 2**19
    keep_logits: bool = False
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.n_samples is not None and self.n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {self.n_samples}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not math.isfinite(self.logit_bias):
            raise ValueError(f"logit_bias must be finite, got {self.logit_bias}")
        if self.max_batch_pixels < 1:
            raise ValueError(f"max_batch_pixels must be >= 1, got {self.max_batch_pixels}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


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


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _member_logits(
    member: nn.Module, x: Tensor, seeds: list[int], share: bool, rows_per_batch: int
) -> Iterator[tuple[list[int], Tensor]]:
    """Yield (positions in ``seeds``, logits (c, n, 2, h, w)) for micro-batches of one member's
    samples of the ``n`` inputs ``x`` (n, C, h, w); batch row ``t*n + i`` is sample t of input i.
    """
    n_inputs = x.shape[0]
    positions = list(range(len(seeds)))
    shared = share and hasattr(member, "forward_shared")
    if shared:
        state = member.forward_shared(x)
    for chunk in _chunks(positions, max(1, rows_per_batch // n_inputs)):
        with row_seeds([seeds[i] for i in chunk for _ in range(n_inputs)]):
            if shared:
                logits = member.forward_stochastic(repeat_state(state, len(chunk)))
            else:
                logits = member(x.repeat(len(chunk), 1, 1, 1))
        yield chunk, logits.reshape(len(chunk), n_inputs, *logits.shape[1:])


class _TileSums:
    """Sums over the predictions of a batch of tiles, kept on the network's device (float32).

    Args:
        n_tiles: Tiles in the batch.
        n_total: Samples T per tile.
        shape: (h, w) of the tiles.
        device: The network's device.
        options: Sampling options (temperature, bias, ``keep_logits``).
        n_transforms: TTA transforms per sample (the per-sample maps average over them).
    """

    def __init__(
        self,
        n_tiles: int,
        n_total: int,
        shape: tuple[int, int],
        device: torch.device,
        options: SamplingOptions,
        n_transforms: int,
    ) -> None:
        def zeros(*lead: int) -> Tensor:
            return torch.zeros((*lead, *shape), dtype=torch.float32, device=device)

        self.moments = {name: zeros(n_tiles) for name in ("p", "p2", "h", "ct")}
        self.fg, self.ct = zeros(n_total, n_tiles), zeros(n_total, n_tiles)
        self.z = zeros(n_total, n_tiles) if options.keep_logits else None
        self.options, self.n_transforms = options, n_transforms

    def add(self, tile: int, rows: list[int], logits: Tensor) -> None:
        """Add the float32 logits (c, 2, h, w) of samples ``rows`` of ``tile``."""
        options = self.options
        fg = torch.sigmoid(logits[:, 0] / options.temperature + options.logit_bias)
        ct = torch.sigmoid(logits[:, 1])
        self.moments["p"][tile] += fg.sum(0)
        self.moments["p2"][tile] += fg.square().sum(0)
        self.moments["h"][tile] += binary_entropy_tensor(fg).sum(0)
        self.moments["ct"][tile] += ct.sum(0)
        self.fg[rows, tile] += fg / self.n_transforms
        self.ct[rows, tile] += ct / self.n_transforms
        if self.z is not None:
            self.z[rows, tile] += logits[:, 0] / self.n_transforms

    def results(self, n_predictions: int) -> list[TileSamples]:
        """The tiles' samples (one copy to the CPU per map for the whole batch)."""
        mean = {k: (v / n_predictions).cpu().numpy() for k, v in self.moments.items()}
        fg, ct = self.fg.cpu().numpy(), self.ct.cpu().numpy()
        z = None if self.z is None else self.z.cpu().numpy()
        return [
            TileSamples(
                moments=SampleMoments(
                    probability=mean["p"][b],
                    second_moment=mean["p2"][b],
                    expected_entropy=mean["h"][b],
                    contour=mean["ct"][b],
                ),
                foreground=np.ascontiguousarray(fg[:, b]),
                contour=np.ascontiguousarray(ct[:, b]),
                foreground_logits=None if z is None else np.ascontiguousarray(z[:, b]),
            )
            for b in range(len(fg[0]))
        ]


def sample_tiles(
    model: nn.Module, config: ModelConfig, images: list[np.ndarray], options: SamplingOptions
) -> list[TileSamples]:
    """Draw the samples of tiles of one shape, several tiles and transforms per forward pass.

    Every (tile, TTA transform) input is batched with others of its shape (at most
    ``options.max_batch_pixels`` rows x pixels per forward pass), and the samples of a member
    run as micro-batches of the same budget. Moments are accumulated on the network's device.
    The result does not depend on the grouping: batching only changes float32 rounding
    (about 1e-7), never which noise a sample draws.

    Args:
        model: A ``UNet`` or ``Ensemble`` in eval mode.
        config: Its configuration.
        images: (h, w, 3) float32 normalised tiles, all of one shape.
        options: Sampling options (``options.precision`` chooses the forward pass's precision).

    Returns:
        One :class:`TileSamples` per tile, in order.
    """
    shape = images[0].shape
    if len(shape) != 3 or shape[2] != config.in_channels:
        raise ValueError(f"expected (h, w, {config.in_channels}) tiles, got {shape}")
    if any(image.shape != shape for image in images):
        raise ValueError("sample_tiles needs tiles of one shape")
    device = next(model.parameters()).device
    precision = resolve_precision(options.precision, device)
    prepare_model(model, precision)
    members = inference_members(members_of(model), precision)
    counts = samples_per_member(config, len(members), options.n_samples)
    transforms = TTA_TRANSFORMS if options.tta else IDENTITY
    rows_per_batch = max(1, options.max_batch_pixels // (shape[0] * shape[1]))
    sums = _TileSums(len(images), sum(counts), shape[:2], device, options, len(transforms))
    groups = input_groups(len(images), transforms, shape[:2], rows_per_batch)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)))
        x = x.to(device)
        first = 0
        stochastic = config.is_stochastic and options.n_samples != 0
        with sampling(nn.ModuleList(members), stochastic), forward_precision(precision, device):
            for member, count in zip(members, counts, strict=True):
                seeds = [sample_seed(options.seed, first + i) for i in range(count)]
                for group in groups:
                    xg = torch.cat([transform(x[b : b + 1], k, f) for b, k, f in group])
                    member_logits = _member_logits(
                        member, prepare_input(xg, precision), seeds, options.share, rows_per_batch
                    )
                    for chunk, logits in member_logits:
                        rows = [first + i for i in chunk]
                        for i, (b, k, f) in enumerate(group):
                            sums.add(b, rows, inverse_transform(logits[:, i].float(), k, f))
                first += count
        return sums.results(sum(counts) * len(transforms))


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
    return sample_tiles(model, config, [image], options)[0]


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
    tile_shape = (min(tile_size, height), min(tile_size, width))
    weight = gaussian_weight(tile_shape, 1 / 8)
    per_batch = max(1, options.max_batch_pixels // (tile_shape[0] * tile_shape[1]))
    jobs = list(zip(tiles, cores, strict=True))
    for batch in (jobs[i : i + per_batch] for i in range(0, len(jobs), per_batch)):
        outs = sample_tiles(model, config, [image[r, c] for (r, c), _ in batch], options)
        for ((rows, cols), (core_r, core_c)), tile in zip(batch, outs, strict=True):
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
