"""Synthetic TrustData with a known relation between features and scores (seeded)."""

from __future__ import annotations

import numpy as np

from bayescellseg.trust.features import IMAGE_FEATURES, NUCLEUS_FEATURES
from bayescellseg.trust.fit import TrustData


def synthetic_trust_data(
    n: int = 120, seed: int = 0, shift: float = 0.0, bottleneck_dim: int = 0
) -> TrustData:
    """``n`` images in two sources; DSB = 0.3 + 0.4 x0 + noise, nucleus correct ~ x0; with
    ``bottleneck_dim``, correlated Gaussian bottleneck vectors (their own seeded stream)."""
    rng = np.random.default_rng(seed)
    k, j = len(IMAGE_FEATURES), len(NUCLEUS_FEATURES)
    x = rng.uniform(0, 1, size=(n, k)) + shift
    dsb = np.clip(0.3 + 0.4 * x[:, 0] + rng.normal(0, 0.03, n), 0, 1)
    per_image = 5
    nucleus_image = np.repeat(np.arange(n), per_image)
    nx = rng.normal(size=(n * per_image, j))
    correct = rng.uniform(size=n * per_image) < 1 / (1 + np.exp(-2 * nx[:, 0]))
    return TrustData(
        image_ids=np.array([f"s{i % 2}/{i}" for i in range(n)]),
        sources=np.array([f"s{i % 2}" for i in range(n)]),
        image_x=x,
        scores={"dsb": dsb, "ap50": np.clip(dsb + 0.15, 0, 1)},
        nucleus_x=nx,
        nucleus_image=nucleus_image,
        nucleus_correct=correct,
        bottleneck=synthetic_bottleneck(n, bottleneck_dim, seed) if bottleneck_dim else None,
    )


def synthetic_bottleneck(n: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """(n, dim) Gaussian vectors with a fixed correlated covariance (mixing seeded by ``dim``),
    positive like a mean and std; ``shift`` moves them."""
    mixing = np.random.default_rng(1000 + dim).normal(size=(dim, dim)) / np.sqrt(dim)
    z = np.random.default_rng([seed, 7]).normal(size=(n, dim))
    return 2.0 + z @ mixing + shift
