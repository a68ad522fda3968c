"""Inference copies of the members with convolution, batch norm and ReLU fused (bf16 on CPU).

Under bf16 autocast on a CPU, eager PyTorch runs every 3x3 convolution, then batch norm, then
ReLU as three passes over the activations; the two element-wise passes cost about as much as
the convolution itself. For inference the batch norm (fixed statistics) is folded into the
convolution's weights and bias, and the ReLU runs as oneDNN's fused post-op
(``torch.ops.mkldnn._convolution_pointwise``, the kernel ``torch.compile`` uses on CPU), so a
conv block is two kernels instead of six.

Autocast runs bilinear up-sampling in float32 on CPU, so the decoder would up-sample, then
concatenate float32 with bf16 skips, then cast back; the copy's decoder up-samples in bf16
instead (:class:`BF16Decoder`; the kernel accumulates in float32). It does not concatenate
either: the first convolution of a decoder block is split by input channels, so
``conv(cat([up, skip]))`` runs as ``conv_up(up) + conv_skip(skip)`` with the sum, bias and ReLU
fused into the second convolution (oneDNN's binary post-op). The concatenated copy cost as much
as the convolution at full resolution (a 2x464x464 batch, 16 + 32 channels: 46 ms with it,
26 ms without); the only numerical change is the bf16 rounding of ``conv_skip(skip)``.

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
        self.split: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            self.attr, [], "",
        )  # fmt: skip

    def split_input(self, channels: int) -> None:
        """Keep the weights of the first ``channels`` input channels and of the rest apart,
        for :meth:`forward_pair` (a convolution of a concatenation)."""
        if self.groups != 1 or not 0 < channels < self.weight.shape[1]:
            raise ValueError(f"cannot split {self.weight.shape[1]} input channels at {channels}")
        cl = torch.channels_last
        self.register_buffer("weight_first", self.weight[:, :channels].contiguous(memory_format=cl))
        self.register_buffer("weight_rest", self.weight[:, channels:].contiguous(memory_format=cl))
        self.split = channels

    def forward_pair(self, first: Tensor, rest: Tensor) -> Tensor:
        """The convolution of ``cat([first, rest], dim=1)`` without the concatenated copy:
        ``rest``'s part first, then ``first``'s with the sum, bias and ReLU fused. ``rest`` may
        have fewer rows than ``first`` (a divisor: shared skips of T samples)."""
        cl, ops = torch.channels_last, torch.ops.mkldnn
        first = first.to(torch.bfloat16).contiguous(memory_format=cl)
        rest = rest.to(torch.bfloat16).contiguous(memory_format=cl)
        other = ops._convolution_pointwise(
            rest, self.weight_rest, None, self.padding, self.stride, self.dilation, 1, "none",
            [], "",
        )  # fmt: skip
        if other.shape[0] != first.shape[0]:
            other = other.repeat(first.shape[0] // other.shape[0], 1, 1, 1)
        attr = None if self.attr == "none" else self.attr
        return ops._convolution_pointwise.binary(
            first, other, self.weight_first, self.bias, self.padding, self.stride,
            self.dilation, 1, "add", None, attr, [], "",
        )  # fmt: skip


class BF16Decoder(Decoder):
    """A :class:`~bayescellseg.model.unet.Decoder` that up-samples and concatenates in bf16."""

    def stage(self, j: int, h: Tensor, skip: Tensor) -> Tensor:
        """As :meth:`Decoder.stage`, with the up-sampling outside autocast and, when the
        block's first convolution is split (:meth:`FusedConv2d.split_input`), no
        concatenation."""
        block = self.blocks[j]
        first = block[0]
        with torch.autocast(device_type=h.device.type, enabled=False):
            h = h.to(torch.bfloat16)
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            if isinstance(first, FusedConv2d) and first.split == h.shape[1]:
                h = first.forward_pair(h, skip)
                for module in list(block)[1:]:
                    h = module(h)
                return h
            if skip.shape[0] != h.shape[0]:
                skip = skip.repeat(h.shape[0] // skip.shape[0], 1, 1, 1)
            h = torch.cat([h, skip.to(torch.bfloat16)], dim=1)
        return block(h)


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


def _split_decoder(decoder: Decoder) -> None:
    """Split the first convolution of every fused decoder block into its up-sampled and skip
    inputs (a block of level l takes ``ch[l + 1] + ch[l]`` channels and makes ``ch[l]``)."""
    for block in decoder.blocks:
        first = block[0]
        if isinstance(first, FusedConv2d):
            out_channels, in_channels = first.weight.shape[:2]
            first.split_input(in_channels - out_channels)


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
    for module in fused.modules():  # after the loop: the blocks are fused after their decoder
        if isinstance(module, BF16Decoder):
            _split_decoder(module)
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
