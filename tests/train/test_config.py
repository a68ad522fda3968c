"""TrainConfig: JSON round trip, CLI overrides, presets, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayescellseg.errors import InputError
from bayescellseg.model.config import PRESETS, ModelConfig
from bayescellseg.train.config import TrainConfig, load_train_config

ROOT = Path(__file__).resolve().parents[2]
STORED_CONFIGS = [
    ROOT / "src/bayescellseg/pretrained/nuclei/training_config.json",
    *sorted((ROOT / "experiments/checkpoints").glob("*/training_config.json")),
]


def test_json_round_trip() -> None:
    cfg = TrainConfig(epochs=3, lr=1e-4, val_limit=5, model={"base_channels": 8}, amp=False)
    back = TrainConfig.from_json(cfg.to_json())
    assert back == cfg
    assert json.loads(cfg.to_json())["val_limit"] == 5


def test_model_is_a_model_config_and_stored_dicts_still_load() -> None:
    cfg = TrainConfig(model={"base_channels": 8})  # a dict, as training_config.json stores it
    assert cfg.model == ModelConfig(base_channels=8)
    assert json.loads(cfg.to_json())["model"] == ModelConfig(base_channels=8).to_dict()
    with pytest.raises(InputError, match="invalid model config"):
        TrainConfig(model={"base_channels": 0})
    for stored in STORED_CONFIGS:
        text = stored.read_text(encoding="utf-8")
        cfg = TrainConfig.from_json(text, stored)
        assert isinstance(cfg.model, ModelConfig)
        stored_dict, full = json.loads(text), cfg.to_dict()
        assert {k: full[k] for k in stored_dict} == stored_dict  # written back as it was stored


def test_defaults_resolve_to_full_model_config() -> None:
    cfg = load_train_config(None, {})
    assert cfg.model == ModelConfig()
    assert cfg.device == "cpu" and cfg.crop == 256


def test_cli_overrides_go_to_model_and_training(tmp_path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"epochs": 7, "lr": 0.01, "model": {"base_channels": 8}}))
    cfg = load_train_config(
        path, {"method": "variational", "epochs": 2, "dropout_rate": None, "cache_dir": tmp_path}
    )
    assert cfg.epochs == 2  # flag beats file
    assert cfg.lr == 0.01  # file beats default
    assert cfg.model.base_channels == 8 and cfg.model.method == "variational"
    assert cfg.cache_dir == str(tmp_path)


def test_preset_then_overrides() -> None:
    cfg = load_train_config(None, {"preset": "original", "base_channels": 16})
    expected = ModelConfig.from_dict({**PRESETS["original"], "base_channels": 16})
    assert cfg.model == expected
    assert cfg.preset == "original"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"preset": "nope"}, "unknown model preset 'nope'"),
        ({"frobnicate": 1}, "unknown setting 'frobnicate'"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"scheduler": "step"}, "scheduler must be one of"),
        ({"method": "ensemble", "n_members": 1}, "n_members >= 2"),
        ({"brightfield_share": 1.5}, r"brightfield_share must be in \(0, 1\)"),
    ],
)
def test_bad_settings_raise_input_error(overrides: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_train_config(None, overrides)


def test_bad_file(tmp_path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON") as err:
        load_train_config(path, {})
    assert str(path) in str(err.value)
    path.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(InputError, match=r"unknown training config key\(s\) \['epoch'\]"):
        load_train_config(path, {})
    with pytest.raises(InputError, match="cannot read"):
        load_train_config(tmp_path / "missing.json", {})


def test_init_from_takes_the_model_config_of_the_folder(tmp_path) -> None:
    from bayescellseg.model.build import build_model
    from bayescellseg.model.store import bundled_model_path, save_model
    from bayescellseg.train.config import init_folder

    model_cfg = ModelConfig.from_dict({"base_channels": 4, "depth": 2, "dropout_rate": 0.2})
    folder = tmp_path / "m"
    save_model(folder, build_model(model_cfg), model_cfg, {})
    cfg = load_train_config(None, {"init_from": folder, "lr": 1e-3})
    assert cfg.model == model_cfg and cfg.init_from == str(folder)
    assert load_train_config(None, {"init_from": folder, "depth": 2}).model == cfg.model  # agrees
    with pytest.raises(InputError, match=r"these differ: base_channels=8 \(the folder has 4\)"):
        load_train_config(None, {"init_from": folder, "base_channels": 8})
    with pytest.raises(InputError, match="drop the preset"):
        load_train_config(None, {"init_from": folder, "preset": "original"})
    with pytest.raises(InputError, match="nowhere: model folder not found"):
        load_train_config(None, {"init_from": tmp_path / "nowhere"})
    assert init_folder("bundled") == bundled_model_path() and init_folder(folder) == folder
    stored = tmp_path / "training_config.json"  # what --resume reads back
    stored.write_text(cfg.to_json())
    assert load_train_config(stored, {}) == cfg
