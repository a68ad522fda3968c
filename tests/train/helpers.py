"""Tiny synthetic data and configs shared by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayescellseg.io.dsb import Sample
from bayescellseg.model.config import ModelConfig
from bayescellseg.train.config import TrainConfig
from tests.synthetic import synthetic_image, synthetic_labels


def synthetic_samples(n: int, size: int = 48, seed: int = 0) -> list[Sample]:
    """``n`` synthetic fluorescence images with 3-5 nuclei each."""
    out = []
    for i in range(n):
        labels = synthetic_labels(
            (size, size), n=4, seed=seed + i, touching_pair=i % 2 == 0, radius=(4.0, 7.0)
        )
        image = synthetic_image(labels, seed=seed + i)
        out.append(
            Sample(
                id=f"s{seed + i}", image=image, labels=labels, source=Path(f"synthetic/s{seed + i}")
            )
        )
    return out


def tiny_config(**changes: Any) -> TrainConfig:
    """A model and run small enough for a test: width 4, depth 2, 32 px crops."""
    model = {
        "base_channels": 4,
        "depth": 2,
        "method": "mc_dropout",
        "dropout_rate": 0.2,
        "dropout_placement": "decoder",
        "dropout_last_k": 1,
        "n_samples": 2,
    }
    model.update(changes.pop("model", {}))
    base = {
        "model": ModelConfig.from_dict(model).to_dict(),
        "epochs": 2,
        "steps_per_epoch": 3,
        "batch_size": 2,
        "crop": 32,
        "lr": 5e-3,
        "progress": False,
        "num_threads": 1,
        "kl_anneal_epochs": 1,
    }
    return TrainConfig(**{**base, **changes})
