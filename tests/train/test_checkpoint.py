"""Checkpoints: RNG capture/restore, atomic save, weights_only loading."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bayescellseg.errors import InputError
from bayescellseg.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _draw() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_survives_a_weights_only_round_trip(tmp_path) -> None:
    state = capture_rng_state()
    expected = _draw()
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"rng": state, "epoch": 3, "hist": [{"a": 1.0}]})
    _draw()  # move every generator on
    loaded = torch.load(path, weights_only=True)  # no pickled objects needed
    restore_rng_state(loaded["rng"])
    assert _draw() == expected
    assert loaded["epoch"] == 3 and loaded["hist"] == [{"a": 1.0}]


def test_save_replaces_atomically_without_leftovers(tmp_path) -> None:
    path = tmp_path / "sub" / "last.pt"
    save_checkpoint(path, {"x": torch.arange(3)})
    save_checkpoint(path, {"x": torch.arange(5)})
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(5))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_missing_and_corrupt_checkpoints(tmp_path) -> None:
    with pytest.raises(
        InputError, match=r"no checkpoint to resume from \(train without resume=True first\)"
    ):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read the checkpoint"):
        load_checkpoint(bad)
