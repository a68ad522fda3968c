"""Stochastic sampling: shared vs naive passes, seeds, TTA, temperature, tiling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from bayescellseg.inference.sampling import (
    TTA_TRANSFORMS,
    SamplingOptions,
    inverse_transform,
    sample_image,
    sample_tile,
    samples_per_member,
    transform,
)
from bayescellseg.inference.transforms import input_groups
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig

torch.set_num_threads(1)


def tiny(**changes) -> tuple[torch.nn.Module, ModelConfig]:
    config = ModelConfig(base_channels=4, depth=2, n_samples=4, **changes)
    return build_model(config, seed=3).eval(), config


def image(shape=(40, 36), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(*shape, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "changes",
    [
        {"dropout_placement": "last_k", "dropout_last_k": 1},
        {"dropout_placement": "last_k", "dropout_last_k": 2, "dropout_kind": "element"},
        {"dropout_placement": "all"},
        {"method": "variational", "posterior_rho_init": -2.0},
        {"method": "ensemble", "n_members": 2, "dropout_placement": "decoder"},
    ],
)
def test_shared_tail_equals_naive_loop(changes: dict) -> None:
    model, config = tiny(**changes)
    x = image()
    # Shared deterministic part, all 5 samples' tails in one batch ...
    shared = sample_tile(model, config, x, SamplingOptions(n_samples=5, max_batch_pixels=10**7))
    # ... versus the full network run once per sample.
    naive = sample_tile(
        model, config, x, SamplingOptions(n_samples=5, share=False, max_batch_pixels=1)
    )
    assert shared.foreground.shape == (5, 40, 36)
    np.testing.assert_allclose(shared.foreground, naive.foreground, atol=1e-5)
    np.testing.assert_allclose(shared.contour, naive.contour, atol=1e-5)
    np.testing.assert_allclose(shared.moments.probability, naive.moments.probability, atol=1e-5)
    # The samples really differ (the test would be vacuous otherwise).
    assert shared.foreground.std(axis=0).mean() > 1e-3


def test_last_k_sharing_is_bit_exact_across_micro_batches() -> None:
    model, config = tiny(dropout_placement="last_k", dropout_last_k=1)
    x = image()
    results = [
        sample_tile(model, config, x, SamplingOptions(n_samples=6, share=s, max_batch_pixels=b))
        for s, b in [(True, 10**7), (True, 2 * 40 * 36), (False, 1)]
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].foreground, other.foreground)


def test_seed_reproducible_and_distinct() -> None:
    model, config = tiny()
    x = image()
    a = sample_tile(model, config, x, SamplingOptions(n_samples=3, seed=1))
    b = sample_tile(model, config, x, SamplingOptions(n_samples=3, seed=1))
    c = sample_tile(model, config, x, SamplingOptions(n_samples=3, seed=2))
    np.testing.assert_array_equal(a.foreground, b.foreground)
    assert np.abs(a.foreground - c.foreground).max() > 1e-3
    # The first samples of a longer run are the same samples.
    d = sample_tile(model, config, x, SamplingOptions(n_samples=5, seed=1))
    np.testing.assert_allclose(d.foreground[:3], a.foreground, atol=1e-6)


def test_sampling_leaves_model_and_global_rng_untouched() -> None:
    model, config = tiny()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sample_tile(model, config, image(), SamplingOptions(n_samples=3))
    np.testing.assert_array_equal(torch.rand(3), expected)
    x = torch.from_numpy(image().transpose(2, 0, 1))[None]
    with torch.no_grad():
        np.testing.assert_array_equal(model(x), model(x))  # sampling switched back off


def test_samples_per_member() -> None:
    mc = ModelConfig(n_samples=20)
    assert samples_per_member(mc, 1, None) == [20]
    assert samples_per_member(mc, 1, 7) == [7]
    det = ModelConfig(method="deterministic")
    assert samples_per_member(det, 1, 50) == [1]
    ens = ModelConfig(method="ensemble", n_members=3, dropout_rate=0.0)
    assert samples_per_member(ens, 3, 50) == [1, 1, 1]
    ens_do = ModelConfig(method="ensemble", n_members=3, dropout_rate=0.2, n_samples=4)
    assert samples_per_member(ens_do, 3, 10) == [4, 3, 3]
    assert samples_per_member(ens_do, 3, 2) == [1, 1, 1]  # at least one pass per member
    assert samples_per_member(ens_do, 3, None) == [4, 4, 4]  # n_samples is per member


def test_transforms_invert_and_form_the_dihedral_group() -> None:
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    outputs = set()
    for k, flip in TTA_TRANSFORMS:
        y = transform(x, k, flip)
        assert y.shape[-2:] == ((5, 7) if k % 2 == 0 else (7, 5))
        torch.testing.assert_close(inverse_transform(y, k, flip), x)
        outputs.add(tuple(y.flatten().tolist()))
    assert len(outputs) == 8


def test_tta_average_is_equivariant() -> None:
    # With a deterministic network and the full 8-element TTA, the averaged prediction of a
    # transformed image is the transformed prediction of the original image.
    model, config = tiny(method="deterministic")
    x = image((32, 32))
    opts = SamplingOptions(tta=True)
    base = sample_tile(model, config, x, opts).moments.probability
    flipped = sample_tile(model, config, x[:, ::-1].copy(), opts).moments.probability
    rotated = sample_tile(model, config, np.rot90(x).copy(), opts).moments.probability
    np.testing.assert_allclose(flipped, base[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(rotated, np.rot90(base), atol=1e-5)
    # Without TTA the network itself is not equivariant, so the check above is not trivial.
    plain = sample_tile(model, config, x, SamplingOptions()).moments.probability
    plain_flipped = sample_tile(model, config, x[:, ::-1].copy(), SamplingOptions())
    assert np.abs(plain_flipped.moments.probability - plain[:, ::-1]).max() > 1e-4
    # TTA on a deterministic model spreads predictions -> some disagreement is measured.
    assert sample_tile(model, config, x, opts).moments.second_moment.max() > 0


def test_temperature_divides_foreground_logits() -> None:
    model, config = tiny(method="deterministic")
    x = image()
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1))[None])[0]
    out = sample_tile(model, config, x, SamplingOptions(temperature=2.0))
    np.testing.assert_allclose(
        out.moments.probability, torch.sigmoid(logits[0] / 2).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(out.moments.contour, torch.sigmoid(logits[1]).numpy(), atol=1e-6)
    assert out.foreground.shape == (1, 40, 36)  # deterministic: a single sample
    biased = sample_tile(model, config, x, SamplingOptions(temperature=2.0, logit_bias=-0.5))
    np.testing.assert_allclose(
        biased.moments.probability, torch.sigmoid(logits[0] / 2 - 0.5).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(biased.moments.contour, out.moments.contour)  # contour untouched
    with pytest.raises(ValueError, match="logit_bias"):
        SamplingOptions(logit_bias=float("inf"))


@pytest.mark.parametrize("method", ["deterministic", "mc_dropout"])
def test_tiled_matches_whole(method: str) -> None:
    # BatchNorm (fixed statistics at inference) makes the network translation-equivariant up to
    # border effects, so tiles must reproduce the whole-image maps. (GroupNorm normalises over
    # each tile's own extent; see test_tiling_with_groupnorm_is_close.)
    model, config = tiny(method=method, dropout_placement="decoder", norm="batch")
    x = image((128, 112), seed=5)
    opts = SamplingOptions(n_samples=4)
    whole = sample_image(model, config, x, opts, tile_size=512)
    tiled = sample_image(model, config, x, opts, tile_size=64, overlap=16)
    for name in ("probability", "entropy", "aleatoric", "epistemic", "variance", "contour"):
        diff = np.abs(getattr(whole.maps, name) - getattr(tiled.maps, name))
        assert diff.mean() < 0.005, (name, diff.mean())
        assert np.percentile(diff, 99) < 0.05, (name, np.percentile(diff, 99))
    # Per-sample maps (cut at tile cores): sample t is the same network in every tile.
    per_diff = np.abs(whole.foreground.astype(int) - tiled.foreground.astype(int))
    assert per_diff.mean() < 255 * 0.005
    n_expected = 4 if method == "mc_dropout" else 1
    assert tiled.foreground.dtype == np.uint8
    assert tiled.foreground.shape == (n_expected, 128, 112)


def test_tiling_with_groupnorm_is_close() -> None:
    model, config = tiny(method="deterministic", norm="group")
    x = image((128, 112), seed=5)
    whole = sample_image(model, config, x, SamplingOptions(), tile_size=512)
    tiled = sample_image(model, config, x, SamplingOptions(), tile_size=64, overlap=16)
    diff = np.abs(whole.maps.probability - tiled.maps.probability)
    assert diff.mean() < 0.05


def test_image_maps_ranges_and_identity() -> None:
    model, config = tiny(dropout_placement="all", dropout_rate=0.3)
    samples = sample_image(model, config, image((50, 30)), SamplingOptions(n_samples=6))
    maps = samples.maps
    for name in ("probability", "entropy", "aleatoric", "epistemic", "contour"):
        arr = getattr(maps, name)
        assert arr.shape == (50, 30) and arr.dtype == np.float32
        assert 0 <= arr.min() and arr.max() <= 1
    assert maps.epistemic.max() > 0
    np.testing.assert_allclose(maps.epistemic, maps.entropy - maps.aleatoric, atol=1e-6)
    # Per-sample maps are the samples the moments were computed from (up to uint8 rounding).
    per = samples.foreground.astype(np.float32) / 255
    np.testing.assert_allclose(per.mean(axis=0), maps.probability, atol=1 / 255)
    np.testing.assert_allclose(per.var(axis=0), maps.variance, atol=2 / 255)


def test_zero_samples_is_one_deterministic_pass() -> None:
    from bayescellseg.inference.sampling import samples_per_member
    from bayescellseg.model.config import config_from_preset

    cfg = config_from_preset("decoder", base_channels=4, depth=2)
    assert samples_per_member(cfg, 1, 0) == [1]
    assert samples_per_member(cfg, 3, 0) == [1, 1, 1]
    assert samples_per_member(cfg, 1, 7) == [7]
    with pytest.raises(ValueError, match="n_samples must be >= 0"):
        samples_per_member(cfg, 1, -1)


def test_zero_samples_runs_the_network_with_sampling_off() -> None:
    model, config = tiny(dropout_placement="last_k", dropout_last_k=1)
    x = image()
    a = sample_tile(model, config, x, SamplingOptions(n_samples=0, seed=1))
    b = sample_tile(model, config, x, SamplingOptions(n_samples=0, seed=2))
    assert a.foreground.shape == (1, 40, 36)
    np.testing.assert_array_equal(a.foreground, b.foreground)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1))[None])
    np.testing.assert_allclose(a.foreground[0], torch.sigmoid(logits[0, 0]).numpy(), atol=1e-6)


def test_input_groups_batch_by_transformed_shape() -> None:
    groups = input_groups(2, TTA_TRANSFORMS, (20, 30), size=3)
    inputs = [item for group in groups for item in group]
    assert sorted(inputs) == sorted((b, k, f) for b in range(2) for k, f in TTA_TRANSFORMS)
    assert max(len(g) for g in groups) == 3
    for group in groups:  # one transformed shape per batch
        assert len({k % 2 for _, k, _ in group}) == 1
    square = input_groups(3, TTA_TRANSFORMS, (16, 16), size=100)
    assert len(square) == 1 and len(square[0]) == 24
    with pytest.raises(ValueError, match="size"):
        input_groups(1, TTA_TRANSFORMS, (8, 8), size=0)


@pytest.mark.parametrize(
    ("changes", "tta"),
    [
        ({"dropout_placement": "last_k", "dropout_last_k": 1}, True),
        ({"dropout_placement": "all", "dropout_kind": "element"}, False),
        ({"method": "ensemble", "n_members": 2, "dropout_placement": "decoder"}, True),
    ],
)
def test_batched_tiles_equal_one_at_a_time(changes: dict, tta: bool) -> None:
    # 60x100 with 48-pixel tiles: 2 x 3 square tiles; a 40-row image gives 1 x 3 tiles of
    # 40x48, whose odd rotations form their own batches.
    model, config = tiny(**changes)
    for shape in ((60, 100), (40, 100)):
        x = image(shape, seed=7)
        one = SamplingOptions(n_samples=3, seed=1, tta=tta, max_batch_pixels=1, keep_logits=True)
        batched = replace(one, max_batch_pixels=10**8)
        a = sample_image(model, config, x, one, tile_size=48, overlap=8)
        b = sample_image(model, config, x, batched, tile_size=48, overlap=8)
        for name in ("probability", "entropy", "aleatoric", "epistemic", "variance", "contour"):
            np.testing.assert_allclose(
                getattr(a.maps, name), getattr(b.maps, name), rtol=1e-5, atol=1e-6
            )
        assert np.abs(a.foreground.astype(int) - b.foreground).max() <= 1
        assert (a.foreground != b.foreground).mean() < 1e-3
        np.testing.assert_allclose(
            a.foreground_logits.astype(np.float32), b.foreground_logits, atol=1e-2
        )
        assert a.maps.epistemic.max() > 1e-3  # the samples differ: the test is not vacuous


def test_default_batch_budget_depends_on_the_device() -> None:
    from bayescellseg.inference.sampling import default_batch_pixels

    assert SamplingOptions().max_batch_pixels is None
    assert default_batch_pixels(torch.device("cpu")) == 2**19  # two 512 x 512 tiles
    assert default_batch_pixels(torch.device("cuda")) == 2**22
    assert default_batch_pixels(torch.device("meta")) == 2**19
    model, config = tiny()
    x = image((80, 72))
    default = sample_image(model, config, x, SamplingOptions(n_samples=3), tile_size=32)
    explicit = sample_image(
        model, config, x, SamplingOptions(n_samples=3, max_batch_pixels=2**19), tile_size=32
    )
    np.testing.assert_array_equal(default.maps.probability, explicit.maps.probability)
    with pytest.raises(ValueError, match="max_batch_pixels"):
        SamplingOptions(max_batch_pixels=0)
