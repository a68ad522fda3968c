"""Tiny random-weight model folders for inference tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import save_model


def make_model_dir(root: Path, extras: dict | None = None, **changes) -> Path:
    """Save a base-4, depth-2 random-weight model (3 samples by default) under ``root``."""
    torch.set_num_threads(1)
    config = ModelConfig(**{"base_channels": 4, "depth": 2, "n_samples": 3, **changes})
    folder = root / "model"
    save_model(folder, build_model(config, seed=0), config, extras or {})
    return folder


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path)


@pytest.fixture
def model_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def factory(extras: dict | None = None, **changes) -> Path:
        return make_model_dir(tmp_path / f"m{next(counter)}", extras, **changes)

    return factory
