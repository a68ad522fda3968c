"""The ``train`` options that set config fields are generated from the dataclass fields."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from bayescellseg.cli import build_parser
from bayescellseg.model.config import METHODS, PLACEMENTS, ModelConfig
from bayescellseg.train.cli_args import add_config_flags, config_flag_fields, config_overrides
from bayescellseg.train.config import SCHEDULERS, TrainConfig, load_train_config

# The user-visible names: renaming a field must not silently rename a flag.
EXPECTED_FLAGS = {
    "--preset", "--epochs", "--steps-per-epoch", "--batch-size", "--crop", "--lr",
    "--weight-decay", "--scheduler", "--seed", "--device", "--num-threads", "--workers",
    "--cache-dir", "--split", "--val-fraction", "--skip-bad", "--val-limit",
    "--brightfield-share", "--scale-range", "--init-from", "--base-channels", "--depth",
    "--method", "--dropout-rate", "--dropout-placement", "--n-members",
}  # fmt: skip


def _train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_flags_are_the_marked_fields_of_both_configs() -> None:
    marked = {f.name for f, _ in config_flag_fields()}
    assert {"--" + name.replace("_", "-") for name in marked} == EXPECTED_FLAGS
    fields = {f.name for cls in (TrainConfig, ModelConfig) for f in dataclasses.fields(cls)}
    parser = _train_parser()
    field_options = {a.dest: a for a in parser._actions if a.dest in fields}
    assert set(field_options) == marked  # no config flag is written by hand in the CLI
    for name, action in field_options.items():
        assert action.option_strings == ["--" + name.replace("_", "-")]
        assert action.default is None  # unset flags never override the config file
    assert list(field_options["method"].choices) == list(METHODS)
    assert list(field_options["dropout_placement"].choices) == list(PLACEMENTS)
    assert list(field_options["scheduler"].choices) == list(SCHEDULERS)


def test_parsed_flags_become_typed_overrides(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    argv = ["--epochs", "3", "--lr", "0.01", "--scale-range", "0.5", "2", "--skip-bad"]
    argv += ["--cache-dir", str(tmp_path), "--method", "ensemble", "--n-members", "2"]
    overrides = config_overrides(parser.parse_args(argv))
    assert overrides == {
        "epochs": 3, "lr": 0.01, "scale_range": [0.5, 2.0], "skip_bad": True,
        "cache_dir": tmp_path, "method": "ensemble", "n_members": 2,
    }  # fmt: skip
    cfg = load_train_config(None, overrides)
    assert cfg.epochs == 3 and cfg.scale_range == [0.5, 2.0] and cfg.cache_dir == str(tmp_path)
    assert cfg.model.method == "ensemble" and cfg.model.n_members == 2
    assert config_overrides(parser.parse_args([])) == {}
    with pytest.raises(SystemExit):
        parser.parse_args(["--scheduler", "step"])
