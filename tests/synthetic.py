"""Synthetic nuclei for tests: elliptical blobs, touching pairs, noise."""

from __future__ import annotations

import numpy as np


def ellipse_mask(
    shape: tuple[int, int],
    center: tuple[float, float],
    axes: tuple[float, float],
    angle: float = 0.0,
) -> np.ndarray:
    """Boolean mask of a filled ellipse (row/col centre, semi-axes in pixels, angle in radians)."""
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dr, dc = rr - center[0], cc - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (dr * cos + dc * sin) / axes[0]
    v = (-dr * sin + dc * cos) / axes[1]
    return u * u + v * v <= 1.0


def synthetic_labels(
    shape: tuple[int, int] = (128, 128),
    n: int = 8,
    seed: int = 0,
    touching_pair: bool = True,
    radius: tuple[float, float] = (5.0, 10.0),
) -> np.ndarray:
    """Instance labels (uint32) with ``n`` random ellipses and, optionally, one touching pair.

    Later nuclei do not overwrite earlier ones, so every label keeps at least part of its ellipse.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint32)
    next_label = 1
    if touching_pair:
        r = radius[1]
        cy, cx = shape[0] / 2, shape[1] / 2
        for dx in (-r, r):
            m = ellipse_mask(shape, (cy, cx + dx), (r, r)) & (labels == 0)
            labels[m] = next_label
            next_label += 1
    for _ in range(n):
        a, b = rng.uniform(*radius, size=2)
        c = rng.uniform([a, a], [shape[0] - a, shape[1] - a])
        m = ellipse_mask(shape, tuple(c), (a, b), rng.uniform(0, np.pi)) & (labels == 0)
        if m.sum() < 10:
            continue
        labels[m] = next_label
        next_label += 1
    return labels


def synthetic_image(
    labels: np.ndarray, seed: int = 0, noise: float = 0.05, brightfield: bool = False
) -> np.ndarray:
    """(H, W, 3) float32 image in [0, 1]: bright nuclei on dark (or dark on bright for brightfield)."""
    rng = np.random.default_rng(seed)
    fg = (labels > 0).astype(np.float32)
    img = 0.1 + 0.7 * fg + rng.normal(0, noise, labels.shape).astype(np.float32)
    img = np.clip(img, 0, 1)
    rgb = np.repeat(img[..., None], 3, axis=2)
    if brightfield:
        rgb = 1.0 - rgb
        rgb[..., 0] = np.clip(rgb[..., 0] * 0.9 + 0.08, 0, 1)  # pinkish tint, as in H&E
    return rgb.astype(np.float32)
