"""Numeric precision of the network's forward pass at inference.

``precision`` is one of:

* ``"fp32"``: float32 weights and activations in the default (NCHW) memory layout; exactly
  the computation of earlier versions, the reference path;
* ``"bf16"``: bfloat16 autocast with channels-last activations and weights (float32 weights are
  cast per layer); on CPUs with AVX-512 BF16 or AMX this is about 3-4x faster than fp32;
* ``"fp16"``: float16 autocast with channels-last, CUDA only;
* ``"auto"``: ``bf16`` on a CPU that computes bf16 natively
  (:func:`bayescellseg.model.precision.cpu_has_bf16`, shared with training), ``fp32`` on other
  CPUs (where torch emulates bf16 more slowly than fp32), ``bf16`` on a CUDA device that
  supports it and ``fp16`` on older ones, ``fp32`` on anything else.

Whatever the precision, the network's logits are converted to float32 before the sigmoid, and
every moment (mean, second moment, entropy) is accumulated in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from bayescellseg.errors import InputError
from bayescellseg.model.precision import cpu_has_bf16, warn_if_emulated_bf16

#: Accepted ``precision`` arguments.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """Validate a ``precision`` argument (one of :data:`PRECISIONS`) and return it.

    Raises:
        InputError: Anything else.
    """
    if precision not in PRECISIONS:
        raise InputError("precision", f"expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The concrete precision (``fp32``, ``bf16`` or ``fp16``) a request means on ``device``.

    Args:
        precision: One of :data:`PRECISIONS`.
        device: Where the network runs.

    Returns:
        ``precision`` itself unless it is ``"auto"`` (see the module docstring).

    Raises:
        InputError: An unknown precision, ``fp16`` on a CPU, or ``bf16`` on a CUDA device
            without bf16 support.
    """
    check_precision(precision)
    kind = torch.device(device).type
    if precision == "fp32":
        return precision
    if kind == "cuda":
        bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if precision == "auto":
            return "bf16" if bf16_ok else "fp16"
        if precision == "bf16" and not bf16_ok:
            raise InputError("precision", "this CUDA device does not support bf16; use fp16")
        return precision
    if precision == "fp16":
        raise InputError("precision", f"fp16 is for CUDA devices, not {kind}; use bf16 or fp32")
    if precision == "bf16":
        if kind == "cpu":
            warn_if_emulated_bf16()
        return precision
    return "bf16" if kind == "cpu" and cpu_has_bf16() else "fp32"


def memory_format(precision: str) -> torch.memory_format:
    """Channels-last for the reduced precisions, the default layout for ``fp32``."""
    return torch.contiguous_format if precision == "fp32" else torch.channels_last


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    """Put the 4-D weights of ``model`` in the memory layout ``precision`` runs in (in place).

    Converting is skipped when the first 4-D weight is already in that layout, so calling this
    before every image costs nothing after the first.

    Returns:
        The same module.
    """
    fmt = memory_format(precision)
    weight = next((p for p in model.parameters() if p.ndim == 4), None)
    if weight is not None and not weight.is_contiguous(memory_format=fmt):
        model.to(memory_format=fmt)
    return model


def prepare_input(x: Tensor, precision: str) -> Tensor:
    """An (N, C, H, W) input in the memory layout ``precision`` runs in."""
    return x.contiguous(memory_format=memory_format(precision))


@contextlib.contextmanager
def forward_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast to ``precision`` inside the block (nothing for ``fp32``).

    Args:
        precision: A resolved precision (``fp32``, ``bf16`` or ``fp16``).
        device: The device the network runs on.
    """
    if precision == "fp32":
        yield
        return
    if precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"expected a resolved precision (fp32, bf16, fp16), got {precision!r}")
    with torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision]):
        yield
