"""Dataset discovery: which samples a folder holds, with its own or another folder's labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bayescellseg.errors import InputError
from bayescellseg.io.datasets import SampleFiles, find_samples, list_samples
from tests.data.test_sources import write_dsb


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    return path


def test_folder_layout_own_and_other_labels(tmp_path: Path) -> None:
    root = tmp_path / "data"
    a, b = _png(root / "a.png"), _png(root / "b.png")
    a_labels = _png(root / "a_labels.png")
    files = find_samples(root)
    assert files.layout == "folder"
    assert files.samples == [SampleFiles("a", a, a_labels)] and files.unlabelled == ["b"]
    fixed = _png(tmp_path / "fixed" / "b.png")
    other = find_samples(root, tmp_path / "fixed")
    assert other.samples == [SampleFiles("b", b, fixed)] and other.unlabelled == ["a"]
    assert [r.id for r in list_samples(root)] == ["a"]
    with pytest.raises(InputError, match="label folder not found"):
        find_samples(root, tmp_path / "absent")


def test_dsb_layout_masks_or_label_folder(tmp_path: Path) -> None:
    root = write_dsb(tmp_path / "dsb", ["s1", "s2"])
    files = find_samples(root)
    assert files.layout == "dsb" and files.unlabelled == []
    assert files.samples == [
        SampleFiles("s1", root / "s1", None),
        SampleFiles("s2", root / "s2", None),
    ]
    fixed = _png(tmp_path / "fixed" / "s2_labels.png")
    other = find_samples(root, tmp_path / "fixed")
    assert other.samples == [SampleFiles("s2", root / "s2" / "images" / "s2.png", fixed)]
    assert other.unlabelled == ["s1"]
    assert [r.id for r in list_samples(root)] == ["s1", "s2"]
