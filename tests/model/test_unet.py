"""Tests of the U-Net: shapes, placement of stochastic layers, shared/stochastic split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig, config_from_preset
from bayescellseg.model.layers import MCDropout, VariationalConv2d, row_seeds, set_sampling
from bayescellseg.model.unet import UNet, repeat_state

torch.set_num_threads(1)

TINY = {"base_channels": 4, "depth": 2}
METHOD_CONFIGS = {
    "deterministic": ModelConfig(**TINY, method="deterministic"),
    "mc_all": ModelConfig(**TINY, dropout_placement="all", dropout_kind="element"),
    "mc_decoder": ModelConfig(**TINY, dropout_placement="decoder"),
    "mc_last_k": ModelConfig(**TINY, dropout_placement="last_k", dropout_last_k=1),
    "variational": ModelConfig(**TINY, method="variational", variational_last_k=1),
    "batchnorm": ModelConfig(**TINY, norm="batch"),
}


def _model(name: str) -> UNet:
    model = build_model(METHOD_CONFIGS[name], seed=3)
    assert isinstance(model, UNet)
    return model.eval()


@pytest.mark.parametrize("name", list(METHOD_CONFIGS))
@pytest.mark.parametrize("size", [(32, 32), (37, 45), (5, 3), (1, 1)])
def test_output_shape_any_size(name: str, size: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *size)
    y = _model(name)(x)
    assert y.shape == (2, 2, *size)
    assert torch.isfinite(y).all()


def test_output_is_translation_consistent_with_padding() -> None:
    """An input that is already a multiple of 2**depth is not padded: cropping matches."""
    model = _model("deterministic")
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(model(x), model(x.clone()))
    assert model(x[..., :31, :30]).shape == (1, 2, 31, 30)


def test_wrong_input_channels() -> None:
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 3, H, W\)"):
        _model("deterministic")(torch.rand(1, 1, 8, 8))


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(
    ("placement", "k", "enc", "dec"),
    [
        ("all", 1, [0, 1, 2, 3], [0, 1, 2]),
        ("decoder", 1, [], [0, 1, 2]),
        ("last_k", 1, [], [2]),
        ("last_k", 2, [], [1, 2]),
    ],
)
def test_dropout_placement(placement: str, k: int, enc: list[int], dec: list[int]) -> None:
    cfg = ModelConfig(base_channels=4, depth=3, dropout_placement=placement, dropout_last_k=k)
    model = UNet(cfg)
    assert _count(model, MCDropout) == len(enc) + len(dec)
    assert [i for i, m in enumerate(model.encoder.drops) if isinstance(m, MCDropout)] == enc
    assert [i for i, m in enumerate(model.decoder.drops) if isinstance(m, MCDropout)] == dec
    assert all(m.p == 0.5 for m in model.modules() if isinstance(m, MCDropout))


def test_original_preset_has_dropout_after_every_block() -> None:
    model = build_model(config_from_preset("original"))
    assert _count(model, MCDropout) == 5 + 4
    drops = [m for m in model.modules() if isinstance(m, MCDropout)]
    assert all(d.p == 0.5 and d.kind == "element" for d in drops)
    assert model.encoder.blocks[0][0].out_channels == 32
    assert model.encoder.blocks[4][0].out_channels == 512


@pytest.mark.parametrize("name", ["deterministic", "variational"])
def test_no_dropout_without_dropout_method(name: str) -> None:
    assert _count(_model(name), MCDropout) == 0


def test_variational_layers_are_decoder_tail_and_head() -> None:
    cfg = ModelConfig(base_channels=4, depth=3, method="variational", variational_last_k=2)
    model = UNet(cfg)
    assert _count(model.encoder, VariationalConv2d) == 0
    assert _count(model.decoder.blocks[0], VariationalConv2d) == 0
    assert _count(model.decoder.blocks[1], VariationalConv2d) == 2
    assert _count(model.decoder.blocks[2], VariationalConv2d) == 2
    assert isinstance(model.head.conv, VariationalConv2d)


@pytest.mark.parametrize("name", list(METHOD_CONFIGS))
def test_sampling_switch(name: str) -> None:
    model = _model(name)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(model(x), model(x))
    set_sampling(model, True)
    a, b = model(x), model(x)
    assert torch.equal(a, b) == (name in ("deterministic",))
    set_sampling(model, False)
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", list(METHOD_CONFIGS))
def test_split_composes_to_forward(name: str) -> None:
    model = _model(name)
    x = torch.rand(2, 3, 19, 22)
    assert torch.equal(model.forward_stochastic(model.forward_shared(x)), model(x))


@pytest.mark.parametrize("name", list(METHOD_CONFIGS))
def test_batched_tail_equals_looped_forward_with_row_seeds(name: str) -> None:
    """Guarantee: same row seeds -> same masks/noise; outputs equal to float round-off."""
    model = set_sampling(_model(name), True)
    x = torch.rand(2, 3, 19, 22)
    n_samples = 3
    seeds = [100 + r for r in range(n_samples * 2)]
    state = model.forward_shared(x)
    with row_seeds(seeds):
        batched = model.forward_stochastic(repeat_state(state, n_samples))
    looped = []
    for t in range(n_samples):
        with row_seeds(seeds[2 * t : 2 * t + 2]):
            looped.append(model(x))
    assert batched.shape == (n_samples * 2, 2, 19, 22)
    torch.testing.assert_close(batched, torch.cat(looped), rtol=1e-5, atol=1e-6)
    if name != "deterministic":
        assert not torch.allclose(batched[:2], batched[2:4])


def test_shared_part_is_deterministic_and_stops_before_first_dropout() -> None:
    cfg = ModelConfig(base_channels=4, depth=3, dropout_placement="last_k", dropout_last_k=2)
    model = set_sampling(UNet(cfg).eval(), True)
    x = torch.rand(1, 3, 24, 24)
    s1, s2 = model.forward_shared(x), model.forward_shared(x)
    assert torch.equal(s1.h, s2.h)
    # Encoder (4 blocks) and the first two decoder stages (block 0 and 1) are shared; the
    # first dropout follows decoder block 1, which outputs level 1 (8 channels, half size).
    assert s1.h.shape == (1, 8, 12, 12)
    assert len(s1.skips) == 3
    all_cfg = cfg.replace(dropout_placement="all")
    shared = UNet(all_cfg).forward_shared(x)
    assert shared.step == 1 and shared.h.shape == (1, 4, 24, 24)


def test_repeat_state_orders_rows_sample_major() -> None:
    model = _model("mc_last_k")
    x = torch.rand(2, 3, 8, 8)
    state = model.forward_shared(x)
    rep = repeat_state(state, 3)
    assert rep.h.shape[0] == 6
    assert torch.equal(rep.h[4], state.h[0]) and torch.equal(rep.h[5], state.h[1])
    assert rep.skips is state.skips
    with pytest.raises(ValueError, match="repeat count"):
        repeat_state(state, 0)


@pytest.mark.parametrize("name", ["mc_all", "variational", "batchnorm"])
def test_channels_last(name: str) -> None:
    model = _model(name)
    x = torch.rand(2, 3, 37, 45)
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["mc_decoder", "variational", "batchnorm"])
def test_training_step_backpropagates(name: str) -> None:
    model = _model(name).train()
    x = torch.rand(2, 3, 16, 16)
    model(x).square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
