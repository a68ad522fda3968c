"""The bottleneck statistic of the prediction path against a hand computation with hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayescellseg.inference import sampling
from bayescellseg.inference.fusion import fusion_available
from bayescellseg.inference.passes import BottleneckSums
from bayescellseg.inference.sampling import SamplingOptions, members_of, sample_image
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.inference.tiler import window_plan
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.precision import cpu_has_bf16

torch.set_num_threads(1)


def tiny(**changes) -> tuple[torch.nn.Module, ModelConfig]:
    base = {"base_channels": 4, "depth": 2, "method": "ensemble", "n_members": 2}
    config = ModelConfig(**{**base, **changes})
    return build_model(config, seed=3).eval(), config


def image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(*shape, 3)).astype(np.float32)


def hand_stats(model, config, img: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Per member: mean and std over the bottleneck pixels of every tile (forward hooks on the
    last encoder block, each tile padded like the U-Net pads it), in float64."""
    x = torch.from_numpy(img.transpose(2, 0, 1).copy())
    plan = window_plan(img.shape[:2], tile, tile // 8, align=2**config.depth)
    means, stds = [], []
    for member in members_of(model):
        seen: list[np.ndarray] = []
        handle = member.encoder.blocks[-1].register_forward_hook(
            lambda _m, _i, out, seen=seen: seen.append(out.detach().double().numpy())
        )
        with torch.inference_mode():
            for rows, cols in plan.tiles:
                member(x[None, :, rows, cols])
        handle.remove()
        flat = np.concatenate([h.transpose(1, 0, 2, 3).reshape(h.shape[1], -1) for h in seen], 1)
        means.append(flat.mean(1))
        stds.append(flat.std(1))
    return np.array(means), np.array(stds)


@pytest.mark.parametrize("shape,tile", [((40, 36), 64), ((70, 90), 32)])
def test_fp32_statistic_equals_the_hand_computation(shape, tile) -> None:
    model, config = tiny()
    img = image(shape)
    stats = sample_image(model, config, img, SamplingOptions(), tile_size=tile).bottleneck
    mean, std = hand_stats(model, config, img, tile)
    assert stats.mean.shape == (2, 16)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.std, std, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.vector(), np.r_[mean.mean(0), std.mean(0)], rtol=1e-4,
                               atol=1e-6)  # fmt: skip


def test_tiles_count_by_their_area() -> None:
    """Tiles of unequal pixel counts: the pooled mean is the pixel-weighted mean of tiles."""
    sums = BottleneckSums(1)
    a, b = torch.ones(1, 2, 2, 2), torch.full((1, 2, 4, 2), 4.0)
    sums.add(0, a)
    sums.add(0, b)
    stats = sums.stats()
    np.testing.assert_allclose(stats.mean[0], [(4 * 1 + 8 * 4) / 12] * 2)
    np.testing.assert_allclose(stats.std[0], [np.std([1.0] * 4 + [4.0] * 8)] * 2, rtol=1e-6)


needs_bf16 = pytest.mark.skipif(
    not (cpu_has_bf16() and fusion_available()),
    reason="this CPU does not compute bf16 natively (or torch has no oneDNN fusion)",
)


@needs_bf16
@pytest.mark.parametrize("shape,tile", [((40, 36), 64), ((70, 90), 32)])
def test_bf16_statistic_is_close_to_the_fp32_hand_computation(shape, tile) -> None:
    model, config = tiny(norm="batch")
    img = image(shape, seed=1)
    options = SamplingOptions(precision="bf16")
    stats = sample_image(model, config, img, options, tile_size=tile).bottleneck
    mean, std = hand_stats(model, config, img, tile)
    scale = float(np.abs(mean).max())
    np.testing.assert_allclose(stats.mean, mean, atol=0.03 * scale)
    np.testing.assert_allclose(stats.std, std, atol=0.03 * float(std.max()))


def test_tta_and_unshared_samples_give_the_same_statistic() -> None:
    """With TTA only the untransformed input counts; unshared samples repeat the same pass."""
    model, config = tiny(method="mc_dropout", n_members=1, dropout_placement="decoder")
    img = image((48, 40), seed=2)
    base = sample_image(model, config, img, SamplingOptions(n_samples=3), tile_size=32)
    for options in (
        SamplingOptions(n_samples=3, tta=True),
        SamplingOptions(n_samples=3, share=False),
    ):
        other = sample_image(model, config, img, options, tile_size=32).bottleneck
        np.testing.assert_allclose(other.vector(), base.bottleneck.vector(), rtol=1e-5, atol=1e-6)


def test_encoder_dropout_pools_every_sample() -> None:
    """Dropout before the bottleneck: every sample's bottleneck is pooled (shared or not)."""
    model, config = tiny(method="mc_dropout", n_members=1, dropout_placement="all")
    img = image((32, 32), seed=4)
    a = sample_image(model, config, img, SamplingOptions(n_samples=4)).bottleneck
    b = sample_image(model, config, img, SamplingOptions(n_samples=4, share=False)).bottleneck
    off = sample_image(model, config, img, SamplingOptions(n_samples=0)).bottleneck
    np.testing.assert_allclose(a.vector(), b.vector(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(a.vector(), off.vector())


def test_collection_leaves_the_maps_bitwise_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    model, config = tiny(method="mc_dropout", n_members=1, dropout_placement="all")
    img = image((70, 90), seed=5)
    options = SamplingOptions(n_samples=3, tta=True)
    with_stats = sample_image(model, config, img, options, tile_size=32)
    monkeypatch.setattr(sampling, "_recorder", lambda *_: None)  # nothing collected
    plain = sample_image(model, config, img, options, tile_size=32)
    assert plain.bottleneck is None and with_stats.bottleneck is not None
    for name, value in vars(with_stats.maps).items():
        assert np.array_equal(value, getattr(plain.maps, name)), name
    assert np.array_equal(with_stats.foreground, plain.foreground)
    assert np.array_equal(with_stats.contour, plain.contour)


def test_segmenter_returns_the_statistic_of_the_pass_it_returns() -> None:
    model, config = tiny()
    seg = Segmenter(model, config, {"nucleus_diameter": 6.0}, precision="fp32")
    img = image((40, 36), seed=6)
    maps = seg.predict_maps(img, PredictSettings(diameter=None))
    result = seg.segment(maps)
    assert result.bottleneck is not None and result.bottleneck.shape == (32,)
    np.testing.assert_array_equal(result.bottleneck, maps.bottleneck)
    resized = seg.predict_maps(img, PredictSettings(diameter=12.0))  # network runs at scale 0.5
    assert resized.scale == 0.5 and resized.bottleneck.shape == (32,)
    assert not np.allclose(resized.bottleneck, maps.bottleneck)
