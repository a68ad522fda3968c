"""Issue 20, case 8: oversized model configs and misfit weights are refused before any network
is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

import bayescellseg.model.store as store
from bayescellseg.errors import InputError
from bayescellseg.model.build import build_model
from bayescellseg.model.config import (
    MAX_PARAMETERS,
    ModelConfig,
    config_from_preset,
    estimated_parameters,
)
from bayescellseg.model.store import load_model, read_model_config, save_model

CONFIGS = [
    ModelConfig(base_channels=4, depth=2, n_samples=3),
    config_from_preset("original"),
    config_from_preset("variational", base_channels=8),
    config_from_preset("ensemble", base_channels=8, n_members=3),
    ModelConfig(base_channels=6, depth=3, norm="batch", in_channels=1),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.method}-{c.base_channels}")
def test_estimate_counts_every_parameter(config: ModelConfig) -> None:
    built = sum(p.numel() for p in build_model(config).parameters())
    assert estimated_parameters(config) == built


def test_case8_huge_config_refused_without_building(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    model = {"base_channels": 1024, "depth": 7, "method": "ensemble", "n_members": 64,
             "dropout_rate": 0.0}  # fmt: skip
    (folder / "config.json").write_text(json.dumps({"format_version": 1, "model": model}))

    def no_building(*args, **kwargs):
        raise AssertionError("the network was built")

    monkeypatch.setattr(store, "build_model", no_building)
    with pytest.raises(InputError, match=r"config\.json: invalid model config: .* parameters"):
        read_model_config(folder)
    with pytest.raises(InputError, match=f"over the limit of {MAX_PARAMETERS:,}"):
        load_model(folder)


def test_case8_activation_memory_limit() -> None:
    with pytest.raises(ValueError, match="GiB of activations"):
        ModelConfig(base_channels=1024, depth=1)  # ~103M parameters, but ~6 GiB per tile


def test_case8_weight_shapes_checked_from_the_header(tmp_path: Path, monkeypatch) -> None:
    config = ModelConfig(base_channels=4, depth=2, method="deterministic", dropout_rate=0.0)
    folder = save_model(tmp_path / "m", build_model(config), config)
    tensors = safetensors.torch.load_file(str(folder / "weights.safetensors"))
    key = sorted(tensors)[0]
    tensors[key] = torch.zeros(3, 3)
    safetensors.torch.save_file(tensors, str(folder / "weights.safetensors"))
    loads = []
    real_load = safetensors.torch.load_file
    monkeypatch.setattr(store.safetensors.torch, "load_file", lambda *a, **k: loads.append(a))
    with pytest.raises(InputError, match=rf"do not fit the config .*{key} \(3, 3\)"):
        load_model(folder)
    assert loads == []  # refused from the header, before reading any weight
    monkeypatch.setattr(store.safetensors.torch, "load_file", real_load)


def test_non_finite_floats_refused() -> None:
    with pytest.raises(ValueError, match="prior_sigma must be a finite number"):
        ModelConfig(method="variational", dropout_rate=0.0, prior_sigma=float("inf"))
