"""The forward passes of one member over a batch of inputs, and the bottleneck statistic.

:func:`member_logits` runs T samples of a member over ``n`` inputs in micro-batches (the
deterministic prefix once when ``share``), and hands every bottleneck the member computed to
a callback. :class:`BottleneckSums` keeps, per member, the per-channel sum and sum of squares
of those bottlenecks on the device; :class:`BottleneckStats` is what an image gets from it.

The bottleneck statistic of an image
    The bottleneck is the output of the last encoder block (``member.encoder.blocks[-1]``, before
    its dropout) of the modules actually run: the member itself in fp32, its fused bf16 copy
    (:mod:`bayescellseg.inference.fusion`) or the member under autocast otherwise, converted to
    float32 before it is summed. Per member, the spatial mean and standard deviation of every
    channel are taken over every bottleneck pixel of every tile (so tiles count by their area;
    the bottom / right padding to a multiple of ``2**depth`` included), of the untransformed
    input only (with TTA the 7 other transforms are not counted, so the statistic is the same
    with and without TTA), and of every sample (with a deterministic encoder, the usual case,
    every sample has the same bottleneck, so this is one pass). The members' means and
    standard deviations are then averaged: :meth:`BottleneckStats.vector` (mean then std).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from bayescellseg.model.layers import row_seeds
from bayescellseg.model.unet import repeat_state

#: Called with a bottleneck (c, n, C, h, w): c samples (1 when shared) of the n inputs.
BottleneckCallback = Callable[[Tensor], None]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _full_pass(member: nn.Module, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """Logits and bottleneck of the whole network (None for a module without ``forward_tail``)."""
    if hasattr(member, "forward_tail"):
        return member.forward_tail(member.forward_shared(x))
    return member(x), None


def member_logits(
    member: nn.Module,
    x: Tensor,
    seeds: list[int],
    share: bool,
    rows_per_batch: int,
    on_bottleneck: BottleneckCallback | None = None,
) -> Iterator[tuple[list[int], Tensor]]:
    """Yield (positions in ``seeds``, logits (c, n, 2, h, w)) for micro-batches of one member's
    samples of the ``n`` inputs ``x`` (n, C, h, w); batch row ``t*n + i`` is sample t of input i.

    ``on_bottleneck`` receives every bottleneck the member computes, shaped (c, n, C, h', w'):
    once with c = 1 when it lies in the shared part, else once per micro-batch of c samples.
    """
    n_inputs = x.shape[0]
    positions = list(range(len(seeds)))
    shared = share and hasattr(member, "forward_shared")
    before = None
    if shared:
        state = member.forward_shared(x)
        before = state.bottleneck
        if before is not None and on_bottleneck is not None:
            on_bottleneck(before[None])
    for chunk in _chunks(positions, max(1, rows_per_batch // n_inputs)):
        with row_seeds([seeds[i] for i in chunk for _ in range(n_inputs)]):
            if shared:
                logits, bottleneck = member.forward_tail(repeat_state(state, len(chunk)))
            else:
                logits, bottleneck = _full_pass(member, x.repeat(len(chunk), 1, 1, 1))
        if bottleneck is not None and bottleneck is not before and on_bottleneck is not None:
            on_bottleneck(bottleneck.reshape(len(chunk), n_inputs, *bottleneck.shape[1:]))
        yield chunk, logits.reshape(len(chunk), n_inputs, *logits.shape[1:])


@dataclass(frozen=True)
class BottleneckStats:
    """The bottleneck statistic of one image (see the module docstring).

    Attributes:
        mean: (M, C) float32 spatial mean of every channel, per member.
        std: (M, C) float32 spatial standard deviation of every channel, per member.
    """

    mean: np.ndarray
    std: np.ndarray

    def vector(self) -> np.ndarray:
        """(2C,) float32: the members' mean of ``mean``, then of ``std``."""
        return np.concatenate([self.mean.mean(0), self.std.mean(0)]).astype(np.float32)


class BottleneckSums:
    """Per member: per-channel sum and sum of squares of its bottlenecks, on the device.

    Args:
        n_members: The members whose passes are summed.
    """

    def __init__(self, n_members: int) -> None:
        self.sums: list[Tensor | None] = [None] * n_members
        self.squares: list[Tensor | None] = [None] * n_members
        self.counts = [0] * n_members

    def add(self, member: int, h: Tensor) -> None:
        """Add a bottleneck (..., C, h, w) of ``member`` (any dtype; summed in float32)."""
        flat = h.detach().float().reshape(-1, *h.shape[-3:])
        s, q = flat.sum(dim=(0, 2, 3)), flat.square().sum(dim=(0, 2, 3))
        old_s, old_q = self.sums[member], self.squares[member]
        self.sums[member] = s if old_s is None else old_s + s
        self.squares[member] = q if old_q is None else old_q + q
        self.counts[member] += flat.shape[0] * flat.shape[2] * flat.shape[3]

    def stats(self) -> BottleneckStats | None:
        """Mean and std per member (float64 on the host, stored as float32); None when a member
        recorded nothing (a network without an encoder)."""
        if not self.counts or min(self.counts) == 0:
            return None
        sums = torch.stack([torch.as_tensor(s) for s in self.sums]).cpu().double().numpy()
        squares = torch.stack([torch.as_tensor(q) for q in self.squares]).cpu().double().numpy()
        counts = np.asarray(self.counts, np.float64)[:, None]
        mean = sums / counts
        std = np.sqrt(np.maximum(squares / counts - mean**2, 0.0))
        return BottleneckStats(mean.astype(np.float32), std.astype(np.float32))


def identity_rows(group: list[tuple[int, int, bool]]) -> list[int]:
    """Positions of the untransformed inputs ((tile, 0, False)) in a forward batch."""
    return [i for i, (_, k, flip) in enumerate(group) if k % 4 == 0 and not flip]
