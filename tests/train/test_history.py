"""The training log: CSV round trip, NaN cells and the curve."""

from __future__ import annotations

import csv
import math

import pytest

from bayescellseg.train.history import LOG_COLUMNS, curve_png, report_epoch, write_log


def _row(member: int, epoch: int, dsb: float) -> dict[str, float]:
    row = {c: 0.5 for c in LOG_COLUMNS}
    row.update(member=member, epoch=epoch, val_dsb=dsb, loss=1.0 / epoch, kl=math.nan)
    return row


def test_write_log_round_trip(tmp_path) -> None:
    history = [_row(0, 1, 0.25), _row(0, 2, 0.5), _row(1, 1, 0.125)]
    original = [dict(r) for r in history]
    write_log(tmp_path, history)

    def without_nan(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "kl"} for r in rows]

    assert without_nan(history) == without_nan(original)  # the input is not modified
    with open(tmp_path / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LOG_COLUMNS
    assert [(r["member"], r["epoch"], r["val_dsb"]) for r in rows] == [
        ("0", "1", "0.25"), ("0", "2", "0.5"), ("1", "1", "0.125")
    ]  # fmt: skip
    assert rows[1]["loss"] == "0.5"
    assert all(r["kl"] == "" for r in rows)  # NaN is an empty cell
    assert (tmp_path / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_log_replaces_the_previous_log(tmp_path) -> None:
    write_log(tmp_path, [_row(0, 1, 0.25), _row(0, 2, 0.5)])
    write_log(tmp_path, [_row(0, 1, 0.75)])
    with open(tmp_path / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["val_dsb"] for r in rows] == ["0.75"]


def test_curve_png_is_png() -> None:
    assert curve_png([_row(0, 1, 0.25)])[:4] == b"\x89PNG"


@pytest.mark.parametrize(("n_members", "prefix"), [(1, "epoch 3:"), (2, "member 2 epoch 3:")])
def test_report_epoch_names_the_member(capsys, n_members, prefix) -> None:
    row = _row(1, 3, 0.5)
    row.update(seconds=12.0, patches_per_s=4.0, lr=1e-3)
    report_epoch(row, n_members)
    out = capsys.readouterr().out
    assert out.startswith(prefix)
    assert "dsb 0.500" in out and "| 12 s" in out
