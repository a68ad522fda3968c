"""Tests of ModelConfig, its validation, JSON round trip and presets."""

from __future__ import annotations

import json

import pytest

from bayescellseg.model.config import PRESETS, ModelConfig, config_from_preset


def test_defaults_match_documentation() -> None:
    cfg = ModelConfig()
    assert (cfg.base_channels, cfg.depth, cfg.method) == (32, 4, "mc_dropout")
    assert (cfg.dropout_rate, cfg.dropout_placement, cfg.dropout_kind) == (
        0.5,
        "decoder",
        "spatial",
    )
    assert (cfg.n_members, cfg.prior_sigma, cfg.posterior_rho_init) == (1, 1.0, -5.0)
    assert (cfg.n_samples, cfg.normalization, cfg.in_channels) == (20, "auto", 3)


def test_json_round_trip() -> None:
    cfg = ModelConfig(base_channels=8, depth=3, method="variational", prior_sigma=0.5)
    text = json.dumps(cfg.to_dict())
    assert ModelConfig.from_dict(json.loads(text)) == cfg


def test_missing_keys_take_defaults() -> None:
    assert ModelConfig.from_dict({"depth": 2}) == ModelConfig(depth=2)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown model config key\(s\) \['bogus'\]"):
        ModelConfig.from_dict({"depth": 2, "bogus": 1})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "bayes"}, "method must be one of"),
        ({"dropout_rate": 1.0}, r"dropout_rate must be in \[0, 1\)"),
        ({"dropout_rate": -0.1}, r"dropout_rate must be in \[0, 1\)"),
        ({"depth": 0}, "depth must be between 1 and 7"),
        ({"base_channels": 2.5}, "base_channels must be an integer"),
        ({"base_channels": True}, "base_channels must be an integer"),
        ({"dropout_placement": "encoder"}, "dropout_placement must be one of"),
        ({"dropout_kind": "gaussian"}, "dropout_kind must be one of"),
        ({"dropout_placement": "last_k", "dropout_last_k": 5}, "dropout_last_k must be between"),
        ({"dropout_last_k": 0}, "dropout_last_k must be >= 1"),
        ({"method": "variational", "variational_last_k": 5}, "variational_last_k must be between"),
        ({"method": "mc_dropout", "dropout_rate": 0.0}, "needs dropout_rate > 0"),
        ({"method": "ensemble", "n_members": 1}, "needs n_members >= 2"),
        ({"n_members": 3}, "n_members must be 1 unless"),
        ({"prior_sigma": 0.0}, "prior_sigma must be > 0"),
        ({"normalization": "zscore"}, "normalization must be one of"),
        ({"n_samples": 0}, "n_samples must be between"),
        ({"norm": "layer"}, "norm must be one of"),
    ],
)
def test_invalid_values_are_rejected(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(changes)


def test_unused_last_k_is_not_bounded_by_depth() -> None:
    cfg = ModelConfig(depth=1)
    assert (cfg.dropout_last_k, cfg.variational_last_k) == (2, 2)
    assert ModelConfig(depth=1, method="variational", variational_last_k=1).depth == 1


def test_replace_validates() -> None:
    cfg = ModelConfig()
    assert cfg.replace(depth=3).depth == 3
    assert cfg.depth == 4
    with pytest.raises(ValueError, match="unknown"):
        cfg.replace(dept=3)


def test_original_preset_matches_description() -> None:
    cfg = config_from_preset("original")
    assert (cfg.base_channels, cfg.depth) == (32, 4)
    assert cfg.method == "mc_dropout"
    assert cfg.dropout_rate == 0.5
    assert cfg.dropout_placement == "all"
    assert cfg.dropout_kind == "element"
    assert cfg.n_samples == 15


def test_all_presets_are_valid_and_distinct() -> None:
    assert {"original", "decoder", "deterministic", "variational", "ensemble"} <= set(PRESETS)
    configs = {name: config_from_preset(name) for name in PRESETS}
    assert configs["ensemble"].n_members == 5
    assert configs["ensemble"].method == "ensemble"
    assert configs["deterministic"].is_stochastic is False
    assert configs["variational"].method == "variational"
    assert configs["decoder"].dropout_placement == "last_k"
    assert len(set(configs.values())) == len(configs)


def test_preset_overrides_and_unknown_preset() -> None:
    cfg = config_from_preset("original", base_channels=4, depth=2)
    assert (cfg.base_channels, cfg.depth, cfg.dropout_placement) == (4, 2, "all")
    assert PRESETS["original"]["base_channels"] == 32
    with pytest.raises(ValueError, match="unknown model preset 'nope'"):
        config_from_preset("nope")
