"""Atomic writes: no partial files, no silent overwrite."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bayescellseg.io.atomic import (
    atomic_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_write_and_refuse_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    write_text_atomic(target, "one")
    assert target.read_text() == "one"
    with pytest.raises(
        FileExistsError, match=r"a\.txt: already exists \(pass overwrite=True to replace it\)"
    ):
        write_text_atomic(target, "two")
    assert target.read_text() == "one"
    write_text_atomic(target, "two", overwrite=True)
    assert target.read_text() == "two"


def test_failure_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "b.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed half-way")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_temp_file_keeps_suffix_and_folder(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "map.tif") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".tif"
        tmp.write_bytes(b"x")
    assert (tmp_path / "map.tif").read_bytes() == b"x"


def test_json_and_bytes_and_permissions(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "c.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": [1, 2]}
    write_bytes_atomic(tmp_path / "d.bin", b"\x00\x01")
    assert (tmp_path / "d.bin").read_bytes() == b"\x00\x01"
    mask = os.umask(0)
    os.umask(mask)
    mode = stat.S_IMODE((tmp_path / "d.bin").stat().st_mode)
    assert mode == 0o666 & ~mask  # not mkstemp's private 0600


def test_writer_that_replaces_the_temp_file_still_gets_the_usual_mode(tmp_path: Path) -> None:
    # safetensors.save_file writes a new private file over the path it is given
    import tempfile

    with atomic_path(tmp_path / "w.bin") as tmp:
        fd, other = tempfile.mkstemp(dir=tmp_path)
        os.write(fd, b"weights")
        os.close(fd)
        os.replace(other, tmp)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "w.bin").stat().st_mode) == 0o666 & ~mask
    assert (tmp_path / "w.bin").read_bytes() == b"weights"
