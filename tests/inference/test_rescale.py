"""Resizing an image to the model's nucleus size and its samples back."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.inference.rescale import (
    AUTO_PROBES,
    AUTO_RANGE,
    SCALE_LIMITS,
    auto_scale,
    params_at_scale,
    resize_image,
    resize_samples,
    scale_for,
    trust_coarser_probe,
)
from bayescellseg.inference.sampling import ImageSamples, quantize
from bayescellseg.inference.uncertainty import SampleMoments, uncertainty_maps
from bayescellseg.postprocess.watershed import WatershedParams


def test_scale_for_and_its_limits() -> None:
    assert scale_for(40.0, 20.0) == pytest.approx(0.5)
    assert scale_for(10.0, 20.0) == pytest.approx(2.0)
    assert scale_for(1.0, 100.0) == SCALE_LIMITS[1]
    assert scale_for(1000.0, 10.0) == SCALE_LIMITS[0]
    for bad in (0.0, -3.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive"):
            scale_for(bad, 20.0)


def test_resize_image_shape_and_input_untouched() -> None:
    image = np.random.default_rng(0).random((30, 41, 3)).astype(np.float32)
    before = image.copy()
    assert resize_image(image, 0.5).shape == (15, 20, 3)
    out = resize_image(image, 2.0)
    assert out.shape == (60, 82, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(image, before)


def _samples(fg: np.ndarray, ct: np.ndarray) -> ImageSamples:
    moments = SampleMoments(
        probability=fg.mean(0),
        second_moment=np.square(fg).mean(0),
        expected_entropy=np.zeros(fg.shape[1:], np.float32),
        contour=ct.mean(0),
    )
    return ImageSamples(uncertainty_maps(moments), quantize(fg), quantize(ct))


def test_resize_samples_recomputes_maps_from_linear_moments() -> None:
    # two samples that disagree everywhere: p = 0.2 and 0.6 -> mean 0.4, variance 0.04
    fg = np.stack([np.full((8, 10), 0.2), np.full((8, 10), 0.6)]).astype(np.float32)
    ct = np.full((2, 8, 10), 0.1, np.float32)
    out = resize_samples(_samples(fg, ct), (16, 20))
    assert out.foreground.shape == (2, 16, 20) and out.foreground.dtype == np.uint8
    np.testing.assert_allclose(out.maps.probability, 0.4, atol=1e-6)
    np.testing.assert_allclose(out.maps.variance, 0.04, atol=1e-6)
    np.testing.assert_allclose(out.maps.contour, 0.1, atol=1e-6)
    np.testing.assert_array_equal(out.foreground[1], quantize(np.full((16, 20), 0.6)))
    # entropy of the mean, not the mean of entropies: H(0.4) in bits
    h = -(0.4 * np.log2(0.4) + 0.6 * np.log2(0.6))
    np.testing.assert_allclose(out.maps.entropy, h, atol=1e-5)


def test_resize_samples_keeps_a_step_where_it_was() -> None:
    fg = np.zeros((1, 10, 10), np.float32)
    fg[:, :, 5:] = 1.0
    out = resize_samples(_samples(fg, np.zeros_like(fg)), (20, 20))
    assert (out.maps.probability[:, :9] < 0.05).all() and (
        out.maps.probability[:, 11:] > 0.95
    ).all()


def test_resize_samples_refuses_logits() -> None:
    fg = np.zeros((1, 4, 4), np.float32)
    samples = _samples(fg, fg)
    with_logits = ImageSamples(
        samples.maps, samples.foreground, samples.contour, fg.astype(np.float16)
    )
    with pytest.raises(ValueError, match="logits"):
        resize_samples(with_logits, (8, 8))


def test_params_at_scale_converts_pixel_counts() -> None:
    params = WatershedParams(min_size=10, min_marker_area=4, marker_erosion=2, fg_threshold=0.4)
    small = params_at_scale(params, 0.5)  # the network saw the image at half size
    assert (small.min_size, small.min_marker_area, small.marker_erosion) == (40, 16, 4)
    assert small.fg_threshold == 0.4
    big = params_at_scale(params, 4.0)
    assert (big.min_size, big.min_marker_area, big.marker_erosion) == (1, 1, 1)
    assert params_at_scale(WatershedParams(marker_erosion=0), 3.0).marker_erosion == 0


def test_a_coarser_probe_is_trusted_when_its_nuclei_are_about_model_size() -> None:
    assert trust_coarser_probe(16.0, 20.0)  # 20 / 1.25
    assert trust_coarser_probe(45.0, 20.0)
    assert not trust_coarser_probe(15.9, 20.0)
    assert not trust_coarser_probe(float("nan"), 20.0)
    assert AUTO_PROBES[0] == 1.0 and list(AUTO_PROBES) == sorted(AUTO_PROBES, reverse=True)


def test_auto_scale_resizes_only_into_the_range_the_model_handles() -> None:
    assert AUTO_RANGE == 1.5
    for inside in (20.0, 14.0, 29.0, 20 / 1.5, 30.0):
        assert auto_scale(inside, 20.0) == 1.0
    assert auto_scale(60.0, 20.0) == pytest.approx(0.5)  # to 30 px, the upper end
    assert auto_scale(5.0, 20.0) == pytest.approx(20 / 1.5 / 5)  # to 13.3 px
    assert auto_scale(1000.0, 20.0) == SCALE_LIMITS[0]
    with pytest.raises(ValueError, match="positive"):
        auto_scale(float("nan"), 20.0)
