"""Per-image normalisation: hand-computed percentiles, imaging type, polarity, constant images."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.data.normalize import imaging_type, is_colour, normalize
from tests.synthetic import synthetic_image, synthetic_labels


def test_percentile_scaling_hand_computed() -> None:
    # 0..100 in 101 pixels: the 10th and 90th percentiles are exactly 10 and 90
    ramp = np.arange(101, dtype=np.float32).reshape(1, 101) / 100
    image = np.repeat(ramp[..., None], 3, axis=2)
    out = normalize(image, mode="fluorescence", low=10, high=90)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out[0, :, 0], np.clip((np.arange(101) - 10) / 80, 0, 1), atol=1e-6)
    inverted = normalize(image, mode="brightfield", low=10, high=90)
    np.testing.assert_allclose(inverted, 1 - out, atol=1e-6)


def test_same_percentiles_for_all_channels_keep_colour() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, (16, 16)).astype(np.float32)
    image = np.dstack([base, base * 0.5, base * 0.25])
    out = normalize(image, mode="fluorescence", low=0, high=100)
    lo, hi = image.min(), image.max()
    np.testing.assert_allclose(out, (image - lo) / (hi - lo), atol=1e-6)
    # channel ratios relative to the common offset are preserved (per-channel scaling would not)
    assert out[..., 0].mean() > out[..., 1].mean() > out[..., 2].mean()


def test_constant_images_do_not_divide_by_zero() -> None:
    for mode in ("auto", "fluorescence", "brightfield"):
        for value in (0.0, 0.7, 1.0):
            out = normalize(np.full((4, 5, 3), value, np.float32), mode=mode)
            assert np.isfinite(out).all() and not out.any(), (mode, value)


def test_imaging_type() -> None:
    labels = synthetic_labels((64, 64), n=5, seed=2)
    fluo = synthetic_image(labels, seed=2)
    bright = synthetic_image(labels, seed=2, brightfield=True)
    assert imaging_type(fluo) == "fluorescence" and not is_colour(fluo)
    assert imaging_type(bright) == "brightfield" and is_colour(bright)
    grey_bright = np.repeat((1 - fluo[..., :1]), 3, axis=2)  # grey, bright background
    assert not is_colour(grey_bright) and imaging_type(grey_bright) == "brightfield"
    assert (
        imaging_type(np.full((4, 4, 3), 0.9, np.float32)) == "fluorescence"
    )  # constant: no evidence
    assert not is_colour(np.zeros((4, 4), np.float32))


def test_auto_makes_nuclei_bright_in_both_types() -> None:
    labels = synthetic_labels((64, 64), n=6, seed=5)
    for brightfield in (False, True):
        out = normalize(synthetic_image(labels, seed=5, brightfield=brightfield))
        assert 0.0 <= out.min() and out.max() <= 1.0
        nuclei, background = out[labels > 0].mean(), out[labels == 0].mean()
        assert nuclei > background + 0.4, brightfield


def test_input_is_not_modified_and_bad_mode() -> None:
    image = np.linspace(0, 1, 48, dtype=np.float32).reshape(4, 4, 3)
    copy = image.copy()
    normalize(image, mode="brightfield")
    np.testing.assert_array_equal(image, copy)
    with pytest.raises(ValueError, match="unknown mode 'phase'"):
        normalize(image, mode="phase")  # type: ignore[arg-type]
