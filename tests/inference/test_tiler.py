"""The model-agnostic sliding window: plan, blending, cores, batching, any predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayescellseg.inference.tiler import TileOutput, sliding_window, window_plan


def linear_predictor(calls: list[int]):
    """Moments that are linear in the input (blending reproduces them exactly) and per-sample
    maps that say which tile of the batch produced each pixel."""

    def predict(x: torch.Tensor) -> TileOutput:
        calls.append(int(x.shape[0]))
        tile_id = torch.arange(x.shape[0], dtype=torch.float32)[:, None, None]
        per_sample = torch.stack([x[:, 0], tile_id.expand_as(x[:, 0])])
        return TileOutput({"mean": x.mean(1), "first": x[:, 0]}, {"copy": per_sample})

    return predict


@pytest.mark.parametrize("tiles_per_batch", [1, 3, 100])
def test_linear_moments_and_per_sample_maps_are_stitched_exactly(tiles_per_batch: int) -> None:
    image = torch.from_numpy(np.random.default_rng(0).random((2, 70, 53), dtype=np.float32))
    calls: list[int] = []
    out = sliding_window(image, linear_predictor(calls), 32, 4, tiles_per_batch)
    plan = window_plan((70, 53), 32, 4)
    assert sum(calls) == len(plan.tiles) == 6 and max(calls) <= tiles_per_batch
    torch.testing.assert_close(out.moments["mean"], image.mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.moments["first"], image[0], rtol=0, atol=1e-6)
    assert out.per_sample["copy"].shape == (2, 70, 53)
    torch.testing.assert_close(out.per_sample["copy"][0], image[0], rtol=0, atol=0)
    # every pixel's per-sample value comes from one tile: the tile whose core holds it
    owner = out.per_sample["copy"][1]
    for index, (rows, cols) in enumerate(plan.cores):
        assert bool((owner[rows, cols] == index % tiles_per_batch).all())


def test_an_image_in_one_tile_is_predicted_whole_without_weights() -> None:
    image = torch.rand(3, 20, 24)
    calls: list[int] = []
    out = sliding_window(image, linear_predictor(calls), 32, 4)
    assert calls == [1]
    torch.testing.assert_close(out.moments["mean"], image.mean(0), rtol=0, atol=0)


def test_plan_covers_the_image_and_bad_batch_sizes_are_refused() -> None:
    plan = window_plan((100, 40), 48, 6)
    # 3 tiles of 48 rows cover 100; 3 of 38 do too, overlapping by >= 6: ceil((100 + 2 * 6) / 3)
    assert plan.tile_shape == (38, 40) and len(plan.tiles) == len(plan.cores) == 3
    covered = np.zeros((100, 40), int)
    for rows, cols in plan.cores:
        covered[rows, cols] += 1
    assert (covered == 1).all()  # the cores partition the image
    with pytest.raises(ValueError, match="tiles_per_batch"):
        sliding_window(torch.zeros(1, 8, 8), linear_predictor([]), 4, 1, 0)
