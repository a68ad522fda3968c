"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import synthetic_image, synthetic_labels

REPO = Path(__file__).resolve().parents[1]
SHARED_DSB = REPO.parent / "shared" / "data" / "dsb2018" / "stage1_train"


@pytest.fixture
def dsb_root() -> Path:
    """The real DSB2018 stage1_train folder, or skip."""
    if not SHARED_DSB.is_dir():
        pytest.skip(f"real DSB2018 data not found at {SHARED_DSB} (../shared/data is absent)")
    return SHARED_DSB


@pytest.fixture
def synth() -> tuple[np.ndarray, np.ndarray]:
    """A 128x128 synthetic fluorescence image and its instance labels."""
    labels = synthetic_labels((128, 128), n=8, seed=1)
    return synthetic_image(labels, seed=1), labels
