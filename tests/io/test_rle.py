"""Kaggle RLE: hand-computed cases, round trips, CSV reading/writing and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bayescellseg.errors import InputError
from bayescellseg.io.rle import (
    labels_to_rle,
    read_rle_csv,
    rle_decode,
    rle_encode,
    rle_to_labels,
    write_rle_csv,
)
from tests.synthetic import synthetic_labels

# Column-major, 1-based: pixel (row, col) of a 3-row image is number col * 3 + row + 1.
#   col 0: rows 0,1,2 = 0,0,1 -> pixel 3        col 2: 1,0,0 -> pixel 7
#   col 1: 1,1,1       -> pixels 4,5,6          col 3: 0,0,1 -> pixel 12
MASK_3x4 = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [1, 1, 0, 1]], bool)
RLE_3x4 = "3 5 12 1"


def test_hand_computed_encode_and_decode() -> None:
    assert rle_encode(MASK_3x4) == RLE_3x4
    np.testing.assert_array_equal(rle_decode(RLE_3x4, (3, 4)), MASK_3x4)
    assert rle_encode(np.zeros((3, 4))) == ""
    assert rle_encode(np.ones((2, 2), np.uint8) * 7) == "1 4"
    assert not rle_decode("", (3, 4)).any()


def test_hand_computed_labels() -> None:
    labels = np.array([[0, 2, 2, 0], [0, 2, 0, 0], [1, 2, 0, 5]], np.uint32)
    # label 1: pixel 3; label 2: pixels 4-7; label 5: pixel 12 (increasing label order)
    assert labels_to_rle(labels) == ["3 1", "4 4", "12 1"]
    np.testing.assert_array_equal(
        rle_to_labels(["3 1", "4 4", "", "12 1"], (3, 4)),
        np.array([[0, 2, 2, 0], [0, 2, 0, 0], [1, 2, 0, 3]], np.uint32),
    )
    # a label split into two runs keeps both, in start order
    split = np.array([[4, 0], [0, 4]], np.uint32)
    assert labels_to_rle(split) == ["1 1 4 1"]
    assert labels_to_rle(np.zeros((2, 2), np.uint8)) == []


def test_unsorted_runs_are_accepted_and_overlapping_rles_keep_the_first() -> None:
    np.testing.assert_array_equal(rle_decode("12 1 3 5", (3, 4)), MASK_3x4)
    out = rle_to_labels(["1 3", "2 3"], (3, 2))  # pixels 2-3 claimed twice
    np.testing.assert_array_equal(out.ravel(order="F"), [1, 1, 1, 2, 0, 0])


def test_round_trip_synthetic_labels() -> None:
    labels = synthetic_labels((64, 80), n=10, seed=4)
    assert labels.max() == len(np.unique(labels)) - 1  # consecutive, so the round trip is exact
    np.testing.assert_array_equal(rle_to_labels(labels_to_rle(labels), labels.shape), labels)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.integers(0, 4))
)
def test_round_trip_property(labels: np.ndarray) -> None:
    back = rle_to_labels(labels_to_rle(labels), labels.shape)
    np.testing.assert_array_equal(back > 0, labels > 0)
    # same partition: each original label maps to exactly one new label, in increasing order
    values = [v for v in np.unique(labels) if v]
    assert [int(np.unique(back[labels == v])[0]) for v in values] == list(range(1, len(values) + 1))
    for v in values:
        assert len(np.unique(back[labels == v])) == 1
        np.testing.assert_array_equal(
            rle_decode(rle_encode(labels == v), labels.shape), labels == v
        )


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("3 5 12", "odd number of values (3)"),
        ("3 5 x 1", "'x' is not a non-negative integer"),
        ("3 5 1.5 1", "'1.5' is not a non-negative integer"),
        ("3 -5", "'-5' is not a non-negative integer"),
        ("0 2", "starts are 1-based"),
        ("3 0", "length 0"),
        ("11 3", "ends at pixel 13, beyond the image's 12 pixels (3x4)"),
        ("3 5 6 2", "RLE runs overlap"),
    ],
)
def test_bad_rle(rle: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        rle_decode(rle, (3, 4), where="f.csv, line 7")
    assert str(err.value).startswith("f.csv, line 7: ") and message in str(err.value)


# ----------------------------------------------------------------------------- CSV


def test_csv_round_trip_with_shape_columns(tmp_path: Path) -> None:
    a = synthetic_labels((32, 40), n=4, seed=1)
    b = np.zeros((5, 6), np.uint32)  # no nuclei: one row with empty EncodedPixels
    c = np.array([[0, 2, 2, 0], [0, 2, 0, 0], [1, 2, 0, 3]], np.uint32)
    path = tmp_path / "sol.csv"
    write_rle_csv(path, {"a": a, "b": b, "c": c})
    lines = path.read_text().splitlines()
    assert lines[0] == "ImageId,EncodedPixels,Height,Width"
    assert "b,,5,6" in lines and lines[-3:] == ["c,3 1,3,4", "c,4 4,3,4", "c,12 1,3,4"]
    back = read_rle_csv(path)
    assert list(back) == ["a", "b", "c"]
    for key, lab in {"a": a, "b": b, "c": c}.items():
        np.testing.assert_array_equal(back[key], lab)
        assert back[key].dtype == np.uint32
    with pytest.raises(FileExistsError):
        write_rle_csv(path, {"a": a})


def test_kaggle_submission_format_needs_shapes(tmp_path: Path) -> None:
    path = tmp_path / "sub.csv"
    write_rle_csv(path, {"x": MASK_3x4.astype(np.uint8)}, include_shape=False)
    assert path.read_text() == "ImageId,EncodedPixels\nx,3 5 12 1\n"
    with pytest.raises(InputError, match=r"sub.csv, line 2: no image size for x"):
        read_rle_csv(path)
    np.testing.assert_array_equal(read_rle_csv(path, shapes={"x": (3, 4)})["x"], MASK_3x4)


def test_stage1_solution_layout_with_usage_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "stage1_solution.csv"
    path.write_text(
        "\ufeffImageId,EncodedPixels,Height,Width,Usage\n"
        "img1,3 5 12 1,3,4,Public\n"
        "img1,1 2,3,4,Public\n"
        "img2,,2,2,Private\n",
        encoding="utf-8",
    )
    out = read_rle_csv(path)
    np.testing.assert_array_equal(
        out["img1"], np.array([[2, 1, 1, 0], [2, 1, 0, 0], [1, 1, 0, 1]], np.uint32)
    )
    assert out["img2"].shape == (2, 2) and not out["img2"].any()


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ("a,3 5 12,3,4\n", "line 2", "odd number of values"),
        ("a,1 2,3,4\na,11 3,3,4\n", "line 3", "beyond the image's 12 pixels"),
        ("a,1 2,3,4\na,2 2,3,4.5\n", "line 3", "Width '4.5' is not a positive integer"),
        ("a,1 2,3,4\na,5 1,4,4\n", "line 3", "differs from earlier rows' 3x4"),
        ("a,1 2,3,\n", "line 2", "only one of Height and Width"),
        (",1 2,3,4\n", "line 2", "empty ImageId"),
        ("a,1 2,3,4,extra\n", "line 2", "more fields than the header"),
        ("a,1 2,3,4\na,1 3 2 2,3,4\n", "line 3", "RLE runs overlap"),
    ],
)
def test_bad_csv_rows_name_file_and_line(
    tmp_path: Path, body: str, where: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("ImageId,EncodedPixels,Height,Width\n" + body)
    with pytest.raises(InputError) as err:
        read_rle_csv(path)
    assert str(err.value).startswith(f"{path}, {where}: ") and message in str(err.value)


def test_bad_csv_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="RLE CSV file not found"):
        read_rle_csv(tmp_path / "none.csv")
    (tmp_path / "cols.csv").write_text("Id,Pixels\na,1 2\n")
    with pytest.raises(
        InputError, match=r"cols.csv: CSV lacks column\(s\) \['ImageId', 'EncodedPixels'\]"
    ):
        read_rle_csv(tmp_path / "cols.csv")
    (tmp_path / "empty.csv").write_text("ImageId,EncodedPixels\n")
    with pytest.raises(InputError, match="header but no rows"):
        read_rle_csv(tmp_path / "empty.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="cannot read the CSV"):
        read_rle_csv(tmp_path / "bin.csv")
    (tmp_path / "s.csv").write_text("ImageId,EncodedPixels,Height,Width\na,1 1,3,4\n")
    with pytest.raises(InputError, match="CSV size 3x4 of a differs from the given 4x3"):
        read_rle_csv(tmp_path / "s.csv", shapes={"a": (4, 3)})
