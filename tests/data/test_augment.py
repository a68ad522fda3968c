"""Tests for bayescellseg.data.augment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.color import rgb_from_hed

from bayescellseg.data.augment import augment, dihedral, photometric, rescale_pair, stain_jitter
from bayescellseg.data.normalize import is_colour
from tests.synthetic import synthetic_image, synthetic_labels

torch.set_num_threads(1)


def _label_image(labels: np.ndarray) -> np.ndarray:
    """An image whose every channel *is* the label map (scaled into [0, 1])."""
    return np.repeat((labels / 64.0)[..., None], 3, axis=2).astype(np.float32)


def test_dihedral_gives_8_distinct_transforms() -> None:
    a = np.arange(12).reshape(3, 4)
    outs = {dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(8)}
    assert len(outs) == 8
    np.testing.assert_array_equal(dihedral(a, 4), a[:, ::-1])
    np.testing.assert_array_equal(dihedral(a, 1), np.rot90(a))


def test_geometry_only_dihedral_keeps_image_equal_to_labels() -> None:
    labels = synthetic_labels((40, 56), n=5, seed=2)
    image = _label_image(labels)
    for seed in range(8):
        # zoom 1 (out_shape equal to the rotated shape) -> exact equality
        rng = np.random.default_rng(seed)
        k = int(np.random.default_rng(seed).integers(8))
        shape = labels.shape if k % 2 == 0 else labels.shape[::-1]
        img, lab = augment(image, labels, rng, out_shape=shape, photometric_aug=False)
        np.testing.assert_array_equal(img[..., 0] * 64.0, lab.astype(np.float32))
        assert lab.dtype == labels.dtype


def test_zoom_keeps_labels_aligned_with_image() -> None:
    labels = synthetic_labels((96, 96), n=10, seed=3, radius=(8.0, 14.0))
    image = _label_image(labels)
    for seed in range(6):
        img, lab = augment(image, labels, np.random.default_rng(seed), photometric_aug=False)
        assert img.shape[:2] == lab.shape and 0.7 * 96 <= lab.shape[0] <= 1.34 * 96
        assert set(np.unique(lab)) <= set(np.unique(labels))
        mismatch = np.rint(img[..., 0] * 64.0).astype(np.int64) != lab
        # bilinear blending (and anti-aliasing when shrinking) differs from nearest neighbour only next to label edges
        edges = ndimage.binary_dilation(
            ndimage.morphological_gradient(lab.astype(np.int64), size=3) > 0, iterations=2
        )
        assert mismatch.mean() < 0.1
        assert not (mismatch & ~edges).any()


def test_inputs_not_modified_and_outputs_valid() -> None:
    labels = synthetic_labels((64, 64), n=6, seed=4)
    image = synthetic_image(labels, seed=4, brightfield=True)
    img0, lab0 = image.copy(), labels.copy()
    for seed in range(5):
        img, lab = augment(image, labels, np.random.default_rng(seed))
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert 0.0 <= img.min() and img.max() <= 1.0
        assert lab.dtype == np.uint32 and lab.shape == img.shape[:2]
    np.testing.assert_array_equal(image, img0)
    np.testing.assert_array_equal(labels, lab0)


def test_deterministic_given_rng() -> None:
    labels = synthetic_labels((48, 48), n=4, seed=5)
    image = synthetic_image(labels, seed=5)
    a = augment(image, labels, np.random.default_rng(11))
    b = augment(image, labels, np.random.default_rng(11))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_grey_stays_grey_colour_gets_jitter() -> None:
    labels = synthetic_labels((48, 48), n=4, seed=6)
    grey = synthetic_image(labels, seed=6)
    assert not is_colour(grey)
    for seed in range(10):
        out = photometric(grey, np.random.default_rng(seed), colour=False)
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        np.testing.assert_array_equal(out[..., 0], out[..., 2])
    bright = synthetic_image(labels, seed=6, brightfield=True)
    assert is_colour(bright)
    ratios = []
    for seed in range(10):
        out = photometric(bright, np.random.default_rng(seed), colour=True)
        ratios.append(out[..., 1].mean() / max(out[..., 2].mean(), 1e-6))
    assert np.ptp(ratios) > 0.02  # channel balance varies between draws


def test_photometric_changes_intensity() -> None:
    labels = synthetic_labels((48, 48), n=4, seed=7)
    image = synthetic_image(labels, seed=7)
    means = [photometric(image, np.random.default_rng(s), False).mean() for s in range(10)]
    assert np.ptp(means) > 0.05


def test_rescale_pair_shapes_and_errors() -> None:
    labels = synthetic_labels((40, 40), n=3, seed=8)
    image = synthetic_image(labels, seed=8)
    img, lab = rescale_pair(image, labels, (30, 50))
    assert img.shape == (30, 50, 3) and lab.shape == (30, 50) and lab.dtype == np.uint32
    with pytest.raises(ValueError, match="need image"):
        augment(image[..., 0], labels, np.random.default_rng(0))


def test_stain_jitter_identity_and_change() -> None:
    rng = np.random.default_rng(3)
    image = rng.uniform(0.05, 1.0, size=(16, 16, 3)).astype(np.float32)
    same = stain_jitter(image, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(same, image, atol=1e-5)
    # adding haematoxylin multiplies each channel by its transmission 1e-6 ** (shift * H's colour)
    more_h = stain_jitter(image, np.ones(3), np.array([0.05, 0.0, 0.0]))
    transmission = 1e-6 ** (0.05 * rgb_from_hed[0])
    np.testing.assert_allclose(more_h, image * transmission, atol=1e-5)
    assert more_h.dtype == np.float32
    white = np.ones((4, 4, 3), np.float32)
    np.testing.assert_allclose(stain_jitter(white, np.array([2.0, 2.0, 2.0]), np.zeros(3)), white)
