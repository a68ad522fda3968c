"""Fused conv / batch norm / ReLU copies used for bf16 on CPU."""

from __future__ import annotations

import pytest
import torch

from bayescellseg.inference.fusion import (
    BF16Decoder,
    FP32Head,
    FusedConv2d,
    fusion_available,
    inference_members,
)
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig

pytestmark = pytest.mark.skipif(
    not fusion_available(),
    reason="torch built without oneDNN, or a CPU without oneDNN bf16 kernels",
)


def _model(**changes) -> torch.nn.Module:
    config = ModelConfig(base_channels=8, depth=2, norm="batch", **changes)
    model = build_model(config, seed=0)
    # Non-trivial running statistics, so that folding the batch norm matters.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_fused_copy_matches_the_member() -> None:
    model = _model(method="deterministic")
    (fused,) = inference_members([model], "bf16")
    assert fused is not model
    kinds = [type(m) for m in fused.modules()]
    assert FusedConv2d in kinds and torch.nn.BatchNorm2d not in kinds
    assert isinstance(fused.decoder, BF16Decoder) and isinstance(fused.head, FP32Head)
    x = torch.randn(2, 3, 32, 40)
    with torch.inference_mode():
        expected = torch.sigmoid(model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = torch.sigmoid(fused(x).float())
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 0.03
    assert (got - expected).abs().mean() < 0.005


def test_fp32_and_group_norm_are_not_fused() -> None:
    model = _model(method="deterministic")
    assert inference_members([model], "fp32")[0] is model
    group = build_model(ModelConfig(base_channels=8, depth=2, norm="group"), seed=0).eval()
    (copy,) = inference_members([group], "bf16")
    assert not any(isinstance(m, FusedConv2d) for m in copy.modules())


def test_cached_copy_is_rebuilt_when_weights_change() -> None:
    model = _model(method="deterministic")
    first = inference_members([model], "bf16")[0]
    assert inference_members([model], "bf16")[0] is first
    with torch.no_grad():
        model.encoder.blocks[0][0].weight.mul_(2.0)
    assert inference_members([model], "bf16")[0] is not first


def test_split_decoder_convolution_equals_the_concatenation() -> None:
    model = _model(method="deterministic")
    (fused,) = inference_members([model], "bf16")
    first = fused.decoder.blocks[0][0]
    assert isinstance(first, FusedConv2d) and first.split == 32  # 32 up-sampled + 16 skip channels
    torch.manual_seed(0)
    up, skip = torch.randn(2, 32, 12, 10), torch.randn(2, 16, 12, 10)
    with torch.inference_mode():
        joined = first(torch.cat([up, skip], dim=1)).float()
        paired = first.forward_pair(up, skip).float()
        # shared skips: one skip row for two rows of up-sampled features
        shared = first.forward_pair(up, skip[:1]).float()
        shared_cat = first(torch.cat([up, skip[:1].repeat(2, 1, 1, 1)], dim=1)).float()
    assert paired.shape == joined.shape == (2, 16, 12, 10)
    scale = joined.abs().max()
    assert (paired - joined).abs().max() <= 0.02 * scale  # bf16 rounding of the skip's part
    assert (shared - shared_cat).abs().max() <= 0.02 * scale
    assert (paired >= 0).all()  # the ReLU is fused


def test_split_input_refuses_a_bad_split() -> None:
    (fused,) = inference_members([_model(method="deterministic")], "bf16")
    with pytest.raises(ValueError, match="cannot split"):
        fused.decoder.blocks[0][0].split_input(0)
