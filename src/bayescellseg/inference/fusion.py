"""Inference copies of the members with convolution, batch norm and ReLU fused (bf16 on CPU).

Under bf16 autocast on a CPU, eager PyTorch runs every 3x3 convolution, then batch norm, then
ReLU as three passes over the activations; the two element-wise passes cost about as much as
the convolution itself. For inference the batch norm (fixed statistics) is folded into the
convolution's weights and bias, and the ReLU runs as oneDNN's fused post-op
(``torch.ops.mkldnn._convolution_pointwise``, the kernel ``torch.compile`` uses on CPU), so a
conv block is two kernels instead of six.

Autocast runs bilinear up-sampling in float32 on CPU, so the decoder would up-sample, then
concatenate float32 with bf16 skips, then cast back; the copy's decoder up-samples and
concatenates in bf16 instead (:class:`BF16Decoder`; the kernel accumulates in float32).

The head (the 1x1 convolution to the two logits) runs in float32 on the bf16 features
(:class:`FP32Head`): it costs nothing, and with a bf16 head the image-level Spearman of the 134
validation images moved by 0.0067 against fp32 (``benchmarks/bf16_check.py``).

The fused copy is made once per member and weight state (it is rebuilt when a weight changes
in place, e.g. by an optimiser step) and is used only for ``bf16`` on CPU; fp32 always runs the
model itself, unchanged. Convolutions not followed by a batch norm (variational layers, group
norm) are left as they are.
"""

from __future__ import annotations

import copy
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from bayescellseg.model.unet import Decoder, Head


def fusion_available() -> bool:
    """Whether this torch build has oneDNN's fused convolution (x86/Arm CPU builds do) and this
    CPU runs oneDNN's bf16 kernels (AVX-512 BW/VL/DQ or AVX-NE-CONVERT; an AVX2-only CPU does
    not, and its bf16 path then runs unfused)."""
    ops = getattr(torch.ops, "mkldnn", None)
    if not (
        torch.backends.mkldnn.is_available()
        and ops is not None
        and hasattr(ops, "_convolution_pointwise")
    ):
        return False
    supported = getattr(ops, "_is_mkldnn_bf16_supported", None)
    return bool(supported()) if supported is not None else True


class FusedConv2d(nn.Module):
    """A bf16 convolution with its batch norm folded in and an optional fused ReLU.

    Args:
        conv: The convolution (eval mode).
        norm: The batch norm that follows it (eval mode, running statistics).
        relu: Whether a ReLU follows the batch norm.
    """

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d, relu: bool) -> None:
        super().__init__()
        folded = fuse_conv_bn_eval(conv, norm)
        weight = folded.weight.detach().to(torch.bfloat16)
        self.register_buffer("weight", weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", folded.bias.detach().to(torch.bfloat16))
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.attr = "relu" if relu else "none"

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            self.attr, [], "",
        )  # fmt: skip


class BF16Decoder(Decoder):
    """A :class:`~bayescellseg.model.unet.Decoder` that up-samples and concatenates in bf16."""

    def stage(self, j: int, h: Tensor, skip: Tensor) -> Tensor:
        """As :meth:`Decoder.stage`, with the up-sampling and concatenation outside autocast."""
        if skip.shape[0] != h.shape[0]:
            skip = skip.repeat(h.shape[0] // skip.shape[0], 1, 1, 1)
        with torch.autocast(device_type=h.device.type, enabled=False):
            h = h.to(torch.bfloat16)
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = torch.cat([h, skip.to(torch.bfloat16)], dim=1)
        return self.blocks[j](h)


class FP32Head(Head):
    """A :class:`~bayescellseg.model.unet.Head` that runs in float32 under autocast."""

    def forward(self, h: Tensor) -> Tensor:
        with torch.autocast(device_type=h.device.type, enabled=False):
            return self.conv(h.float())


def _fuse_sequential(seq: nn.Sequential) -> None:
    """Replace every (Conv2d, BatchNorm2d[, ReLU]) run in ``seq`` by a :class:`FusedConv2d`."""
    names = list(seq._modules)
    i = 0
    while i < len(names):
        conv = seq._modules[names[i]]
        norm = seq._modules[names[i + 1]] if i + 1 < len(names) else None
        if type(conv) is nn.Conv2d and type(norm) is nn.BatchNorm2d:
            after = seq._modules[names[i + 2]] if i + 2 < len(names) else None
            relu = type(after) is nn.ReLU
            seq._modules[names[i]] = FusedConv2d(conv, norm, relu)
            seq._modules[names[i + 1]] = nn.Identity()
            if relu:
                seq._modules[names[i + 2]] = nn.Identity()
            i += 3 if relu else 2
        else:
            i += 1


def fused_copy(member: nn.Module) -> nn.Module:
    """A copy of ``member`` (eval mode) with its conv / batch norm / ReLU runs fused."""
    fused = copy.deepcopy(member).eval()
    for module in list(fused.modules()):
        if isinstance(module, nn.Sequential):
            _fuse_sequential(module)
        if type(module) is Decoder:
            module.__class__ = BF16Decoder
        if type(module) is Head:
            module.__class__ = FP32Head
    return fused


_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], nn.Module]] = (
    weakref.WeakKeyDictionary()
)


def _weight_state(member: nn.Module) -> tuple[int, ...]:
    """Identity and in-place version of every parameter and buffer (changes on any update)."""
    tensors = [*member.parameters(), *member.buffers()]
    return tuple(v for t in tensors for v in (t.data_ptr(), t._version))


def inference_members(members: list[nn.Module], precision: str) -> list[nn.Module]:
    """The modules to run for ``members`` at ``precision``: fused copies for bf16 on a CPU
    with oneDNN (cached, see the module docstring), else the members themselves."""
    if precision != "bf16" or not fusion_available():
        return members
    out = []
    for member in members:
        if next(member.parameters()).device.type != "cpu" or member.training:
            out.append(member)
            continue
        state = _weight_state(member)
        cached = _CACHE.get(member)
        if cached is None or cached[0] != state:
            cached = (state, fused_copy(member))
            _CACHE[member] = cached
        out.append(cached[1])
    return out
