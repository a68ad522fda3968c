"""Tests of the one CSV/JSON convention: NaN and None as empty cells / null, atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bayescellseg.io.tables import (
    csv_cell,
    csv_text,
    json_safe,
    write_csv_atomic,
    write_json_safe_atomic,
)


def test_csv_cells_and_text() -> None:
    assert [csv_cell(v) for v in (math.nan, None, 1 / 3, 2.0, 7, True, "a")] == [
        "", "", "0.333333", "2", 7, True, "a",
    ]  # fmt: skip
    rows = [{"a": 1, "b": math.nan, "extra": 5}, {"a": 0.5}]
    assert csv_text(["a", "b"], rows) == "a,b\n1,\n0.5,\n"


def test_write_csv_atomic_refuses_existing(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_csv_atomic(path, ["x"], [{"x": 1.25}])
    assert path.read_text() == "x\n1.25\n"
    with pytest.raises(FileExistsError):
        write_csv_atomic(path, ["x"], [])
    write_csv_atomic(path, ["x"], [], overwrite=True)
    assert path.read_text() == "x\n"


def test_json_safe_is_strict_json_and_leaves_input(tmp_path: Path) -> None:
    value = {1: [math.nan, np.float32(0.5), (np.int64(3), math.inf)], "m": np.array([1.0, np.nan])}
    out = json_safe(value)
    assert out == {"1": [None, 0.5, [3, None]], "m": [1.0, None]}
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert math.isnan(value[1][0])  # not modified
    write_json_safe_atomic(tmp_path / "d.json", value)
    assert json.loads((tmp_path / "d.json").read_text()) == out
