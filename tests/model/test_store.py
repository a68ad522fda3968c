"""Tests of model folders: save/load round trip, extras, and errors on bad files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from bayescellseg.errors import InputError
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.layers import set_sampling
from bayescellseg.model.store import (
    CALIBRATION_FILE,
    CONFIG_FILE,
    load_model,
    read_calibration,
    read_model_config,
    save_model,
    update_extras,
    write_calibration,
)

torch.set_num_threads(1)

CONFIGS = [
    ModelConfig(base_channels=4, depth=2, dropout_placement="all"),
    ModelConfig(base_channels=4, depth=2, method="variational", variational_last_k=1),
    ModelConfig(base_channels=4, depth=2, method="ensemble", n_members=2, dropout_rate=0.0),
    ModelConfig(base_channels=4, depth=2, norm="batch", method="deterministic"),
]


def _trained_like(cfg: ModelConfig) -> torch.nn.Module:
    """A model whose weights differ from a fresh build (so loading must really restore them)."""
    model = build_model(cfg, seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(0.1)
            m.running_var.fill_(2.0)
    return model.eval()


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.method}-{c.norm}")
def test_round_trip_identical_outputs(tmp_path: Path, cfg: ModelConfig) -> None:
    model = _trained_like(cfg)
    extras = {"training": {"epochs": 3}, "temperature": 1.5}
    save_model(tmp_path / "m", model, cfg, extras)
    loaded = load_model(tmp_path / "m")
    assert loaded.config == cfg
    assert loaded.extras == extras
    assert not loaded.model.training
    x = torch.rand(1, 3, 21, 18)
    assert torch.equal(loaded.model(x), model(x))
    if cfg.is_stochastic:
        set_sampling(model, True)
        set_sampling(loaded.model, True)
        torch.manual_seed(0)
        a = model(x)
        torch.manual_seed(0)
        assert torch.equal(loaded.model(x), a)


def test_config_json_layout(tmp_path: Path) -> None:
    cfg = CONFIGS[0]
    save_model(tmp_path, build_model(cfg), cfg, {"postprocess": {"threshold": 0.5}})
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc == {"format_version": 1, "model": cfg.to_dict(), "postprocess": {"threshold": 0.5}}
    assert (tmp_path / "weights.safetensors").read_bytes()[8:9] == b"{"


def test_channels_last_model_saves(tmp_path: Path) -> None:
    cfg = CONFIGS[0]
    model = build_model(cfg).eval().to(memory_format=torch.channels_last)
    save_model(tmp_path, model, cfg)
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(load_model(tmp_path).model(x), model(x), rtol=1e-4, atol=1e-5)


def test_refuses_existing_unless_overwrite(tmp_path: Path) -> None:
    cfg = CONFIGS[0]
    model = build_model(cfg)
    save_model(tmp_path, model, cfg)
    with pytest.raises(FileExistsError, match="weights.safetensors"):
        save_model(tmp_path, model, cfg)
    save_model(tmp_path, model, cfg, {"temperature": 2.0}, overwrite=True)
    assert read_model_config(tmp_path)[1] == {"temperature": 2.0}


def test_save_rejects_mismatched_config_and_bad_extras(tmp_path: Path) -> None:
    model = build_model(CONFIGS[0])
    with pytest.raises(ValueError, match="does not match its config"):
        save_model(tmp_path, model, CONFIGS[0].replace(base_channels=8))
    with pytest.raises(ValueError, match="reserved"):
        save_model(tmp_path, model, CONFIGS[0], {"model": {}})
    with pytest.raises(ValueError, match="JSON"):
        save_model(tmp_path, model, CONFIGS[0], {"training": {"path": Path("x")}})
    assert list(tmp_path.iterdir()) == []


def test_update_extras(tmp_path: Path) -> None:
    cfg = CONFIGS[0]
    save_model(tmp_path, build_model(cfg), cfg, {"training": {"epochs": 1}, "review": {"a": 1}})
    out = update_extras(tmp_path, temperature=1.2, review=None)
    assert out == {"training": {"epochs": 1}, "temperature": 1.2}
    assert load_model(tmp_path).extras == out
    with pytest.raises(ValueError, match="reserved"):
        update_extras(tmp_path, format_version=2)


def test_calibration_json_overrides_config_json_which_stays_as_it_was(tmp_path: Path) -> None:
    cfg = CONFIGS[0]
    save_model(tmp_path, build_model(cfg), cfg, {"temperature": 1.5, "training": {"epochs": 1}})
    config_before = (tmp_path / CONFIG_FILE).read_bytes()
    assert read_calibration(tmp_path) == {}  # an old folder: calibration inside config.json
    assert load_model(tmp_path).extras["temperature"] == 1.5
    path = write_calibration(tmp_path, {"temperature": 2.0, "review": {"image_uncertainty": 0.3}})
    assert path == tmp_path / CALIBRATION_FILE
    assert json.loads(path.read_text()) == {
        "format_version": 1,
        "temperature": 2.0,
        "review": {"image_uncertainty": 0.3},
    }
    assert (tmp_path / CONFIG_FILE).read_bytes() == config_before
    extras = load_model(tmp_path).extras
    assert extras == {
        "temperature": 2.0,
        "training": {"epochs": 1},
        "review": {"image_uncertainty": 0.3},
    }
    assert read_model_config(tmp_path)[1] == extras
    with pytest.raises(ValueError, match="unknown calibration entries"):
        write_calibration(tmp_path, {"training": {}})
    (tmp_path / CALIBRATION_FILE).write_text('{"format_version": 1, "weights": 3}')
    with pytest.raises(InputError, match="calibration.json: unknown entries"):
        load_model(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(InputError, match="calibration.json: not valid JSON"):
        load_model(tmp_path)


def test_new_weights_drop_the_old_calibration(tmp_path: Path) -> None:
    cfg = CONFIGS[0]
    save_model(tmp_path, build_model(cfg), cfg)
    write_calibration(tmp_path, {"temperature": 2.0})
    with pytest.raises(FileExistsError, match="already exists"):
        save_model(tmp_path / "", build_model(cfg, seed=3), cfg)
    save_model(tmp_path, build_model(cfg, seed=3), cfg, overwrite=True)
    assert not (tmp_path / CALIBRATION_FILE).exists()
    assert "temperature" not in load_model(tmp_path).extras


def _saved(tmp_path: Path) -> Path:
    cfg = CONFIGS[0]
    save_model(tmp_path, build_model(cfg), cfg)
    return tmp_path


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model folder not found"):
        load_model(tmp_path / "nope")
    folder = _saved(tmp_path)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(InputError, match=r"weights\.safetensors: missing"):
        load_model(folder)
    (folder / "config.json").unlink()
    with pytest.raises(InputError, match=r"config\.json: missing"):
        load_model(folder)


def test_corrupt_weights(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    (folder / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputError, match=r"weights\.safetensors: corrupt"):
        load_model(folder)


def test_truncated_weights(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    data = (folder / "weights.safetensors").read_bytes()
    (folder / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"weights\.safetensors: corrupt"):
        load_model(folder)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"format_version": 7, "model": {}}', "unsupported format_version 7"),
        ('{"format_version": 1}', "has no 'model' entry"),
        ('{"format_version": 1, "model": {"depth": 2, "x": 1}}', r"unknown model config key"),
        ('{"format_version": 1, "model": {"method": "magic"}}', "method must be one of"),
    ],
)
def test_corrupt_config(tmp_path: Path, text: str, message: str) -> None:
    folder = _saved(tmp_path)
    (folder / "config.json").write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_model(folder)
    assert info.value.path.endswith("config.json")


def test_weights_that_do_not_fit_config(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    doc = json.loads((folder / "config.json").read_text())
    doc["model"]["base_channels"] = 8
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"weights\.safetensors: weights do not fit the config"):
        load_model(folder)


def test_saved_model_weights_are_not_private(tmp_path: Path) -> None:
    # safetensors writes its own private file; atomic_path must still give the usual mode
    config = ModelConfig(base_channels=4, depth=2, method="deterministic")
    save_model(tmp_path / "m", build_model(config), config)
    mask = os.umask(0)
    os.umask(mask)
    for name in ("weights.safetensors", "config.json"):
        assert stat.S_IMODE((tmp_path / "m" / name).stat().st_mode) == 0o666 & ~mask


def test_bundled_names_resolve_to_package_folders(tmp_path: Path, monkeypatch) -> None:
    from bayescellseg.model.store import BUNDLED_MODELS, bundled_model_path, bundled_name

    assert bundled_name(None) == "nuclei" and bundled_name("bundled") == "nuclei"
    assert bundled_name("nuclei-nc") == "nuclei-nc"
    assert bundled_name(tmp_path) is None and bundled_name("some/folder") is None
    assert bundled_model_path().name == BUNDLED_MODELS["nuclei"] == "nuclei"
    assert bundled_model_path("bundled") == bundled_model_path("nuclei")
    assert bundled_model_path("nuclei-nc").name == "nuclei_nc"
    assert bundled_model_path("nuclei-nc").parent == bundled_model_path().parent
    with pytest.raises(InputError, match="no bundled model is named 'nucleus'.*nuclei-nc"):
        bundled_model_path("nucleus")
    # a folder in the working directory that has a bundled model's name is that folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nuclei-nc").mkdir()
    assert bundled_name("nuclei-nc") is None
