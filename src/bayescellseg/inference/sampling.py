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
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from bayescellseg.inference.fusion import inference_members
from bayescellseg.inference.passes import (
    BottleneckStats,
    BottleneckSums,
    identity_rows,
    member_logits,
)
from bayescellseg.inference.precision import (
    PRECISIONS,
    forward_precision,
    prepare_input,
    prepare_model,
    resolve_precision,
)
from bayescellseg.inference.tiler import Predictor, TileOutput, sliding_window, window_plan
from bayescellseg.inference.transforms import (
    IDENTITY,
    TTA_TRANSFORMS,
    input_groups,
    inverse_transform,
    transform,
)
from bayescellseg.inference.uncertainty import (
    SampleMoments,
    UncertaintyMaps,
    binary_entropy_tensor,
    uncertainty_maps,
)
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.layers import sampling


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
        max_batch_pixels: Upper bound on rows x pixels of one forward batch (memory / speed);
            None: :func:`default_batch_pixels` of the network's device.
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
    max_batch_pixels: int | None = None
    keep_logits: bool = False
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.n_samples is not None and self.n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {self.n_samples}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not math.isfinite(self.logit_bias):
            raise ValueError(f"logit_bias must be finite, got {self.logit_bias}")
        if self.max_batch_pixels is not None and self.max_batch_pixels < 1:
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
    total = max(n_samples if n_samples is not None else config.n_samples * n_members, n_members)
    return [total // n_members + (m < total % n_members) for m in range(n_members)]


MOMENT_NAMES = ("probability", "second_moment", "expected_entropy", "contour")
"""The linear moments a tile predictor returns (the fields of :class:`SampleMoments`)."""


#: Rows x pixels of one forward batch by device type: two 512 x 512 tiles on a CPU (larger
#: batches gave no speed there and cost memory); 16 on a GPU, which a batch of two leaves idle.
BATCH_PIXELS = {"cpu": 2**19, "cuda": 2**22}


def default_batch_pixels(device: torch.device) -> int:
    """The default ``max_batch_pixels`` on ``device`` (:data:`BATCH_PIXELS`, CPU's elsewhere)."""
    return BATCH_PIXELS.get(device.type, BATCH_PIXELS["cpu"])


def _batch_pixels(options: SamplingOptions, device: torch.device) -> int:
    return options.max_batch_pixels or default_batch_pixels(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of a network's parameters (CPU for a module without any)."""
    first = next(model.parameters(), None)
    return torch.device("cpu") if first is None else first.device


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

        self.moments = {name: zeros(n_tiles) for name in MOMENT_NAMES}
        self.fg, self.ct = zeros(n_total, n_tiles), zeros(n_total, n_tiles)
        self.z = zeros(n_total, n_tiles) if options.keep_logits else None
        self.options, self.n_transforms = options, n_transforms

    def add(self, tile: int, rows: list[int], logits: Tensor) -> None:
        """Add the float32 logits (c, 2, h, w) of samples ``rows`` of ``tile``."""
        options = self.options
        fg = torch.sigmoid(logits[:, 0] / options.temperature + options.logit_bias)
        ct = torch.sigmoid(logits[:, 1])
        self.moments["probability"][tile] += fg.sum(0)
        self.moments["second_moment"][tile] += fg.square().sum(0)
        self.moments["expected_entropy"][tile] += binary_entropy_tensor(fg).sum(0)
        self.moments["contour"][tile] += ct.sum(0)
        self.fg[rows, tile] += fg / self.n_transforms
        self.ct[rows, tile] += ct / self.n_transforms
        if self.z is not None:
            self.z[rows, tile] += logits[:, 0] / self.n_transforms

    def output(self, n_predictions: int, encode: bool) -> TileOutput:
        """The batch's moments and per-sample maps, on the device.

        Args:
            n_predictions: Predictions per tile (T x transforms), the moments' divisor.
            encode: Store the per-sample maps compactly (:func:`quantize_tensor`,
                :func:`half_tensor`), as the stitched image keeps them; else float32.
        """
        moments = {k: v / n_predictions for k, v in self.moments.items()}
        per_sample = {"foreground": self.fg, "contour": self.ct}
        if self.z is not None:
            per_sample["foreground_logits"] = self.z
        if encode:
            per_sample = {
                k: half_tensor(v) if k == "foreground_logits" else quantize_tensor(v)
                for k, v in per_sample.items()
            }
        return TileOutput(moments, per_sample)


def quantize_tensor(p: Tensor) -> Tensor:
    """:func:`quantize` on the tensor's device: uint8 ``round(255 p)`` (half to even)."""
    return torch.round(p.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def half_tensor(logits: Tensor) -> Tensor:
    """:func:`to_half` on the tensor's device: float16, clipped to +-60000."""
    return logits.clamp(-60000.0, 60000.0).to(torch.float16)


def tile_predictor(
    model: nn.Module,
    config: ModelConfig,
    options: SamplingOptions,
    encode: bool = True,
    bottleneck: BottleneckSums | None = None,
) -> Predictor:
    """The Bayesian U-Net's predictor for :func:`~bayescellseg.inference.tiler.sliding_window`.

    The returned callable takes a (B, C, h, w) batch of normalised tiles on the network's device
    and draws all T samples of every tile. Every (tile, TTA transform) input is batched with
    others of its shape (at most ``options.max_batch_pixels`` rows x pixels per forward pass),
    and the samples of a member run as micro-batches of the same budget; moments are
    accumulated on the device. The result does not depend on the grouping: batching only
    changes float32 rounding (about 1e-7), never which noise a sample draws.

    Args:
        model: A ``UNet`` or ``Ensemble`` in eval mode.
        config: Its configuration.
        options: Sampling options (``options.precision`` chooses the forward pass's precision).
        encode: Per-sample maps as uint8 / float16 (True) or float32.
        bottleneck: Sums (one per member) that every tile's bottlenecks are added to
            (:mod:`bayescellseg.inference.passes`), or None.
    """
    device = model_device(model)
    precision = resolve_precision(options.precision, device)
    prepare_model(model, precision)
    members = inference_members(members_of(model), precision)
    counts = samples_per_member(config, len(members), options.n_samples)
    transforms = TTA_TRANSFORMS if options.tta else IDENTITY
    stochastic = config.is_stochastic and options.n_samples != 0
    seeds = [sample_seed(options.seed, t) for t in range(sum(counts))]

    def predict(x: Tensor) -> TileOutput:
        if x.ndim != 4 or x.shape[1] != config.in_channels:
            raise ValueError(f"expected (B, {config.in_channels}, h, w) tiles, got {x.shape}")
        shape = (int(x.shape[2]), int(x.shape[3]))
        rows_per_batch = max(1, _batch_pixels(options, device) // (shape[0] * shape[1]))
        sums = _TileSums(x.shape[0], sum(counts), shape, device, options, len(transforms))
        groups = input_groups(x.shape[0], transforms, shape, rows_per_batch)
        first = 0
        with sampling(nn.ModuleList(members), stochastic), forward_precision(precision, device):
            for m, (member, count) in enumerate(zip(members, counts, strict=True)):
                for group in groups:
                    xg = torch.cat([transform(x[b : b + 1], k, f) for b, k, f in group])
                    passes = member_logits(
                        member,
                        prepare_input(xg, precision),
                        seeds[first : first + count],
                        options.share,
                        rows_per_batch,
                        _recorder(bottleneck, m, identity_rows(group)),
                    )
                    for chunk, logits in passes:
                        rows = [first + i for i in chunk]
                        for i, (b, k, f) in enumerate(group):
                            sums.add(b, rows, inverse_transform(logits[:, i].float(), k, f))
                first += count
        return sums.output(sum(counts) * len(transforms), encode)

    return predict


def _recorder(sums: BottleneckSums | None, member: int, rows: list[int]):
    """The bottleneck callback adding the untransformed ``rows`` to ``sums`` (None: no sums)."""
    if sums is None or not rows:
        return None
    return lambda h: sums.add(member, h[:, rows])


def _as_tensor(image: np.ndarray, device: torch.device) -> Tensor:
    """(H, W, C) float32 array -> contiguous (C, H, W) tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device)


def sample_tile(
    model: nn.Module, config: ModelConfig, image: np.ndarray, options: SamplingOptions
) -> TileSamples:
    """Draw the samples of one tile (or a whole image that fits in memory), in float32.

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
    predictor = tile_predictor(model, config, options, encode=False)
    with torch.inference_mode():
        out = predictor(_as_tensor(image, model_device(model))[None])
    host = {k: v[0].cpu().numpy() for k, v in out.moments.items()}
    per = {k: np.ascontiguousarray(v[:, 0].cpu().numpy()) for k, v in out.per_sample.items()}
    return TileSamples(
        moments=SampleMoments(**host),
        foreground=per["foreground"],
        contour=per["contour"],
        foreground_logits=per.get("foreground_logits"),
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
        bottleneck: The network's bottleneck statistic over the image
            (:mod:`bayescellseg.inference.passes`), None for networks without an encoder.
    """

    maps: UncertaintyMaps
    foreground: np.ndarray
    contour: np.ndarray
    foreground_logits: np.ndarray | None = None
    bottleneck: BottleneckStats | None = None


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
    """Samples of a whole image, tile by tile, stitched with Gaussian weights on the device.

    Linear moments are blended across overlapping tiles; the non-linear maps are computed from
    the blended moments. Per-sample maps are stored as uint8 and, instead of being blended, are
    taken from the tile whose centre is nearest (its *core*). Several tiles go through the
    network at once (``options.max_batch_pixels``); the stitched maps are copied to the host
    once, at the end.

    Args:
        model: A ``UNet`` or ``Ensemble`` in eval mode.
        config: Its configuration.
        image: (H, W, 3) float32 normalised image.
        options: Sampling options.
        tile_size: Largest tile extent; an image no larger is processed in one piece, a larger
            one in the fewest tiles that fit (:func:`~bayescellseg.inference.tiler.window_plan`).
        overlap: Minimum tile overlap in pixels (default ``tile_size // 8``).

    Returns:
        Maps, per-sample maps and the bottleneck statistic.
    """
    if tile_size < 2**config.depth:
        raise ValueError(f"tile_size must be at least {2**config.depth}, got {tile_size}")
    if image.ndim != 3 or image.shape[2] != config.in_channels:
        raise ValueError(f"expected an (H, W, {config.in_channels}) image, got {image.shape}")
    overlap = tile_size // 8 if overlap is None else overlap
    align = 2**config.depth  # tile extents the encoder divides without padding
    tile_pixels = math.prod(window_plan(image.shape[:2], tile_size, overlap, align).tile_shape)
    device = model_device(model)
    per_batch = max(1, _batch_pixels(options, device) // tile_pixels)
    sums = BottleneckSums(len(members_of(model)))
    predictor = tile_predictor(model, config, options, bottleneck=sums)
    with torch.inference_mode():
        x = _as_tensor(image, device)
        out = sliding_window(x, predictor, tile_size, overlap, per_batch, align)
        moments = SampleMoments(**{k: out.moments[k].cpu().numpy() for k in MOMENT_NAMES})
        per = {k: v.cpu().numpy() for k, v in out.per_sample.items()}
        stats = sums.stats()
    maps = uncertainty_maps(moments)
    return ImageSamples(
        maps, per["foreground"], per["contour"], per.get("foreground_logits"), stats
    )
