"""``bayescellseg data check`` from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bayescellseg.cli import main
from bayescellseg.samples import sample_root


def test_data_check_on_bundled_samples_returns_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(sample_root())]) == 0
    out = capsys.readouterr().out
    assert "DSB2018 layout" in out and "total 218" in out and "No problems found." in out


def test_data_check_on_broken_folder_lists_all_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"junk")
    (tmp_path / "c_labels.png").write_bytes(b"junk")
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "Problems (4):" in out
    for line in ("a.png: image has no label image", "b.png: image has no label image"):
        assert line in out
    assert out.count("cannot decode image") == 2


def test_data_check_on_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(tmp_path / "nothing")]) == 1
    assert "dataset folder not found" in capsys.readouterr().out
