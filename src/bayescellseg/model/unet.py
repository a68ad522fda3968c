"""The Bayesian U-Net: encoder, decoder, head, and a shared / stochastic split of the forward pass.

Layout (``depth = d``, ``c_i = base_channels * 2**i``)::

    encoder block 0 (in -> c_0)          [dropout]  -> skip 0
    max-pool, encoder block 1 (-> c_1)    [dropout]  -> skip 1
    ...
    max-pool, encoder block d (-> c_d)    [dropout]     (bottleneck)
    decoder block 0: upsample, concat skip d-1, block (c_d + c_{d-1} -> c_{d-1})  [dropout]
    ...
    decoder block d-1: upsample, concat skip 0, block (c_1 + c_0 -> c_0)          [dropout]
    head: 1x1 conv (c_0 -> 2)   -> logits, channel 0 = foreground, 1 = contour

A block is 2 x (3x3 conv, GroupNorm or BatchNorm, ReLU); up-sampling is bilinear. The
``[dropout]`` slots hold :class:`~bayescellseg.model.layers.MCDropout` where the config's placement
says so (``all``: every slot; ``decoder``: decoder slots; ``last_k``: the last k decoder slots) and
identity otherwise. For the ``variational`` method the convolutions of the last
``variational_last_k`` decoder blocks and the head are
:class:`~bayescellseg.model.layers.VariationalConv2d`.

Inputs of any height and width are padded (reflect, or replicate when the image is too small
to reflect) at the bottom and right to a multiple of ``2**depth``; the logits are cropped back.

Decoder-tail sampling: :meth:`UNet.forward_shared` runs every step before the first stochastic
layer and returns a :class:`UNetState`; :meth:`UNet.forward_stochastic` runs the rest.
``forward(x) == forward_stochastic(forward_shared(x))`` by construction (``forward`` is that
composition). :meth:`UNet.forward_tail` is ``forward_stochastic`` that also returns the
bottleneck (the output of the last encoder block, ``encoder.blocks[-1]``, before its dropout),
which the prediction path summarises per channel. :func:`repeat_state` turns a state of batch B into one of batch T*B (row
``t*B + b`` = sample t of image b), so T samples of the tail run as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayescellseg.model.config import ModelConfig
from bayescellseg.model.layers import (
    MCDropout,
    VariationalConv2d,
    channels_last_grad,
    max_pool_2x2,
)

OUT_CHANNELS = 2


def _group_count(channels: int, max_groups: int = 8) -> int:
    """Largest divisor of ``channels`` that is at most ``max_groups``."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(_group_count(channels), channels)


def _conv3x3(in_ch: int, out_ch: int, config: ModelConfig, variational: bool) -> nn.Module:
    if variational:
        return VariationalConv2d(
            in_ch,
            out_ch,
            3,
            padding=1,
            bias=False,
            prior_sigma=config.prior_sigma,
            rho_init=config.posterior_rho_init,
        )
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)


class ConvBlock(nn.Sequential):
    """2 x (3x3 conv, norm, ReLU); the convolutions are variational if asked."""

    def __init__(
        self, in_ch: int, out_ch: int, config: ModelConfig, variational: bool = False
    ) -> None:
        super().__init__(
            _conv3x3(in_ch, out_ch, config, variational),
            _norm(config.norm, out_ch),
            nn.ReLU(inplace=True),
            _conv3x3(out_ch, out_ch, config, variational),
            _norm(config.norm, out_ch),
            nn.ReLU(inplace=True),
        )


def _dropout(config: ModelConfig, wanted: bool) -> nn.Module:
    if wanted and config.uses_dropout:
        return MCDropout(config.dropout_rate, config.dropout_kind)
    return nn.Identity()


def level_channels(config: ModelConfig) -> list[int]:
    """Channels of levels 0..depth: ``base_channels * 2**i``."""
    return [config.base_channels * 2**i for i in range(config.depth + 1)]


class Encoder(nn.Module):
    """Contracting path: ``depth + 1`` blocks (the last is the bottleneck), max-pool between."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        ch = level_channels(config)
        ins = [config.in_channels, *ch[:-1]]
        self.blocks = nn.ModuleList(ConvBlock(i, o, config) for i, o in zip(ins, ch, strict=True))
        self.drops = nn.ModuleList(_dropout(config, config.dropout_placement == "all") for _ in ch)

    def stage(self, level: int, h: Tensor) -> Tensor:
        """Max-pool (below level 0) and the conv block of ``level`` (no dropout)."""
        if level > 0:
            h = max_pool_2x2(h)
        return self.blocks[level](h)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the features of every level, 0 (full resolution) to depth (bottleneck)."""
        feats = []
        h = x
        for level in range(len(self.blocks)):
            h = self.drops[level](self.stage(level, h))
            feats.append(h)
        return feats


class Decoder(nn.Module):
    """Expanding path: ``depth`` blocks of bilinear up-sampling, skip concatenation, conv block."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        ch = level_channels(config)
        d = config.depth
        blocks, drops = [], []
        for j in range(d):
            level = d - 1 - j
            variational = config.method == "variational" and j >= d - config.variational_last_k
            blocks.append(ConvBlock(ch[level + 1] + ch[level], ch[level], config, variational))
            placement = config.dropout_placement
            wanted = placement in ("all", "decoder") or j >= d - config.dropout_last_k
            drops.append(_dropout(config, wanted))
        self.blocks = nn.ModuleList(blocks)
        self.drops = nn.ModuleList(drops)

    def stage(self, j: int, h: Tensor, skip: Tensor) -> Tensor:
        """Up-sample ``h`` to the skip's size, concatenate, run block ``j`` (no dropout).

        ``skip`` may have fewer rows than ``h`` (a state repeated by :func:`repeat_state`); it is
        then tiled to match, row ``t*B + b`` taking skip row ``b``.
        """
        if skip.shape[0] != h.shape[0]:
            skip = skip.repeat(h.shape[0] // skip.shape[0], 1, 1, 1)
        h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.blocks[j](torch.cat([channels_last_grad(h), skip], dim=1))

    def forward(self, feats: list[Tensor]) -> Tensor:
        """Decode encoder features (level 0..depth) to full-resolution features."""
        h = feats[-1]
        for j in range(len(self.blocks)):
            h = self.drops[j](self.stage(j, h, feats[len(feats) - 2 - j]))
        return h


class Head(nn.Module):
    """1x1 convolution to the two output logits (foreground, contour)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c0 = config.base_channels
        if config.method == "variational":
            self.conv: nn.Module = VariationalConv2d(
                c0,
                OUT_CHANNELS,
                1,
                padding=0,
                bias=True,
                prior_sigma=config.prior_sigma,
                rho_init=config.posterior_rho_init,
            )
        else:
            self.conv = nn.Conv2d(c0, OUT_CHANNELS, 1)

    def forward(self, h: Tensor) -> Tensor:
        return self.conv(h)


@dataclass(frozen=True)
class UNetState:
    """Intermediate result of :meth:`UNet.forward_shared`.

    Attributes:
        h: The current activation (batch rows may be repeated, see :func:`repeat_state`).
        skips: Encoder skip features collected so far (levels 0, 1, ...), un-repeated.
        step: Index of the next step to run.
        size: The (H, W) of the input before padding; the logits are cropped to it.
        bottleneck: The output of the last encoder block once that step has run (un-repeated
            when it ran before :func:`repeat_state`), else None.
    """

    h: Tensor
    skips: tuple[Tensor, ...]
    step: int
    size: tuple[int, int]
    bottleneck: Tensor | None = None


def repeat_state(state: UNetState, n: int) -> UNetState:
    """Repeat the batch of a state ``n`` times: row ``t*B + b`` is copy t of image b.

    The skips are not copied; the decoder tiles them when it uses them.
    """
    if n < 1:
        raise ValueError(f"repeat count must be >= 1, got {n}")
    return replace(state, h=state.h.repeat(n, 1, 1, 1))


def _pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class UNet(nn.Module):
    """Bayesian U-Net built from a :class:`ModelConfig` (see the module docstring).

    Args:
        config: The architecture. ``config.method == "ensemble"`` builds one member.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.head = Head(config)
        d = config.depth
        self._steps: list[tuple[str, int]] = (
            [(kind, i) for i in range(d + 1) for kind in ("enc", "enc_drop")]
            + [(kind, j) for j in range(d) for kind in ("dec", "dec_drop")]
            + [("head", 0)]
        )
        self.first_stochastic_step = next(
            (k for k, step in enumerate(self._steps) if self._is_stochastic(step)),
            len(self._steps),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _step_module(self, step: tuple[str, int]) -> nn.Module:
        kind, i = step
        return {
            "enc": lambda: self.encoder.blocks[i],
            "enc_drop": lambda: self.encoder.drops[i],
            "dec": lambda: self.decoder.blocks[i],
            "dec_drop": lambda: self.decoder.drops[i],
            "head": lambda: self.head,
        }[kind]()

    def _is_stochastic(self, step: tuple[str, int]) -> bool:
        module = self._step_module(step)
        return any(isinstance(m, (MCDropout, VariationalConv2d)) for m in module.modules())

    def _run(self, state: UNetState, stop: int) -> UNetState:
        h, skips, bottleneck = state.h, list(state.skips), state.bottleneck
        d = self.config.depth
        for kind, i in self._steps[state.step : stop]:
            if kind == "enc":
                h = self.encoder.stage(i, h)
                bottleneck = h if i == d else bottleneck
            elif kind == "enc_drop":
                h = self.encoder.drops[i](h)
                if i < d:
                    skips.append(h)
            elif kind == "dec":
                h = self.decoder.stage(i, h, skips[d - 1 - i])
            elif kind == "dec_drop":
                h = self.decoder.drops[i](h)
            else:
                h = self.head(h)
        step = max(stop, state.step)
        return UNetState(h=h, skips=tuple(skips), step=step, size=state.size, bottleneck=bottleneck)

    def forward_shared(self, x: Tensor) -> UNetState:
        """Pad ``x`` (B, C, H, W) and run every step before the first stochastic layer.

        The result does not depend on dropout or variational sampling, so it can be computed
        once per image and reused for T samples of the tail.
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected input of shape (B, {self.config.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        size = (int(x.shape[-2]), int(x.shape[-1]))
        x = _pad_to_multiple(x, 2**self.config.depth)
        start = UNetState(h=x, skips=(), step=0, size=size)
        return self._run(start, self.first_stochastic_step)

    def forward_stochastic(self, state: UNetState) -> Tensor:
        """Run the remaining steps of ``state`` and return logits (B', 2, H, W), cropped."""
        return self.forward_tail(state)[0]

    def forward_tail(self, state: UNetState) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward_stochastic`'s logits and the bottleneck (the output of
        ``encoder.blocks[-1]`` on the padded input, (B'', C, H/2**depth, W/2**depth): from this
        call, or from ``state`` with its un-repeated rows when it ran before)."""
        end = self._run(state, len(self._steps))
        return end.h[..., : state.size[0], : state.size[1]], end.bottleneck

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, 2, H, W) for an input (B, in_channels, H, W) of any H, W."""
        return self.forward_stochastic(self.forward_shared(x))
