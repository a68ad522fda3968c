"""Kaggle run-length encoding (the DSB2018 ``stage1_solution.csv`` / submission format).

A mask is flattened in column-major (Fortran) order, i.e. pixel ``(row, col)`` of an image of
height ``H`` has index ``col * H + row``; runs of foreground pixels are written as 1-based
``start length`` pairs separated by spaces, in increasing order of ``start``.

The CSV has one row per nucleus with columns ``ImageId,EncodedPixels`` and, optionally,
``Height,Width`` (needed to decode when the image sizes are not given separately) and ``Usage``
(ignored). An image without nuclei is one row with an empty ``EncodedPixels``.

Labels built from RLE rows are numbered 1..N in row order; where two rows claim the same pixel the
earlier row keeps it (as for overlapping DSB mask files).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from bayescellseg.errors import InputError
from bayescellseg.io.atomic import write_text_atomic
from bayescellseg.io.images import MAX_PIXELS

_REQUIRED = ("ImageId", "EncodedPixels")


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, 0-based start, length) of every run of equal values in a 1D array."""
    if flat.size == 0:
        empty = np.zeros(0, np.int64)
        return flat[:0], empty, empty
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [flat.size]])
    return flat[starts], starts, ends - starts


def _format_pairs(starts: np.ndarray, lengths: np.ndarray) -> str:
    pairs = np.stack([starts + 1, lengths], axis=1).ravel()
    return " ".join(map(str, pairs.tolist()))


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2D mask (non-zero = foreground) as Kaggle RLE.

    Args:
        mask: (H, W) array; any non-zero value counts as foreground.

    Returns:
        ``"start length start length ..."`` (1-based, column-major); ``""`` for an empty mask.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"rle_encode expects a 2D mask, got shape {m.shape}")
    values, starts, lengths = _runs((m != 0).ravel(order="F"))
    keep = values.astype(bool)
    return _format_pairs(starts[keep], lengths[keep])


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty string of ASCII digits 0-9 only.

    ``str.isdigit`` also accepts characters such as ``"²"`` or Arabic-Indic digits, which
    ``int`` then rejects (or reads as other numbers); RLE and CSV sizes must be plain ASCII.
    """
    return bool(text) and text.isascii() and text.isdigit()


def _check_shape(shape: tuple[int, int], where: str) -> tuple[int, int]:
    if len(shape) != 2 or min(int(shape[0]), int(shape[1])) <= 0:
        raise InputError(where, f"image shape {tuple(shape)} is not a positive (height, width)")
    height, width = int(shape[0]), int(shape[1])
    if height * width > MAX_PIXELS:
        raise InputError(where, f"image shape {height}x{width} exceeds {MAX_PIXELS:,} pixels")
    return height, width


def rle_decode(rle: str, shape: tuple[int, int], where: str = "<rle>") -> np.ndarray:
    """Decode Kaggle RLE into a boolean mask.

    Args:
        rle: ``"start length ..."`` (1-based, column-major); empty or blank means no pixels.
        shape: (H, W) of the image.
        where: Name used in error messages (e.g. ``"file.csv, line 3"``).

    Returns:
        (H, W) bool array.

    Raises:
        InputError: odd number of values, non-integers, a start or length out of range, or
            overlapping runs.
    """
    height, width = _check_shape(shape, where)
    n = height * width
    tokens = str(rle).split()
    if len(tokens) % 2:
        raise InputError(
            where, f"RLE has an odd number of values ({len(tokens)}); expected start/length pairs"
        )
    bad = [t for t in tokens if not is_ascii_digits(t)]
    if bad:
        shown = bad[0] if len(bad[0]) <= 40 else bad[0][:40] + "..."
        raise InputError(where, f"RLE value {shown!r} is not a non-negative integer")
    huge = [t for t in tokens if len(t) > 18 or int(t) > n]  # int() caps long strings
    if huge:
        raise InputError(
            where,
            f"RLE value {huge[0][:40]} is beyond the image's {n} pixels ({height}x{width})",
        )
    values = np.array([int(t) for t in tokens], dtype=np.int64).reshape(-1, 2)
    starts, lengths = values[:, 0] - 1, values[:, 1]
    if np.any(starts < 0):
        raise InputError(where, "RLE start 0 found; starts are 1-based")
    if np.any(lengths < 1):
        raise InputError(where, "RLE run of length 0 found; lengths must be at least 1")
    ends = starts + lengths
    if np.any(ends > n):
        i = int(np.argmax(ends > n))
        raise InputError(
            where,
            f"RLE run '{starts[i] + 1} {lengths[i]}' ends at pixel {ends[i]}, beyond the image's "
            f"{n} pixels ({height}x{width})",
        )
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    if np.any(starts[1:] < ends[:-1]):
        i = int(np.argmax(starts[1:] < ends[:-1]))
        raise InputError(
            where,
            f"RLE runs overlap (run starting at {starts[i + 1] + 1} begins before pixel {ends[i]})",
        )
    delta = np.zeros(n + 1, np.int32)
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    flat = np.cumsum(delta[:-1]) > 0
    return flat.reshape((height, width), order="F")


def labels_to_rle(labels: np.ndarray) -> list[str]:
    """One RLE string per nucleus, in increasing label order.

    Args:
        labels: (H, W) integer instance labels, 0 = background.

    Returns:
        One non-empty RLE string per distinct non-zero label; ``[]`` for an image without nuclei.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels_to_rle expects 2D labels, got shape {lab.shape}")
    values, starts, lengths = _runs(lab.ravel(order="F"))
    keep = values != 0
    values, starts, lengths = values[keep], starts[keep], lengths[keep]
    order = np.argsort(values, kind="stable")  # stable: runs stay in start order within a label
    values, starts, lengths = values[order], starts[order], lengths[order]
    bounds = np.flatnonzero(np.diff(values)) + 1
    return [
        _format_pairs(s, ln)
        for s, ln in zip(np.split(starts, bounds), np.split(lengths, bounds), strict=True)
        if s.size
    ]


def rle_to_labels(rles: Iterable[str], shape: tuple[int, int], where: str = "<rle>") -> np.ndarray:
    """Build instance labels from one RLE string per nucleus.

    Args:
        rles: RLE strings; the ``i``-th non-empty one becomes label ``i``. Empty strings (an image
            without nuclei) are skipped.
        shape: (H, W) of the image.
        where: Name used in error messages.

    Returns:
        (H, W) uint32 labels. Pixels claimed by two strings keep the earlier one's label.
    """
    return _labels_from_rles([(where, str(r)) for r in rles], shape, where)


def _labels_from_rles(
    entries: list[tuple[str, str]], shape: tuple[int, int], where: str
) -> np.ndarray:
    """Labels from ``(where, rle)`` pairs; ``where`` names each string in error messages."""
    height, width = _check_shape(shape, where)
    labels = np.zeros((height, width), np.uint32)
    label = 0
    for entry_where, rle in entries:
        if not rle.strip():
            continue
        label += 1
        mask = rle_decode(rle, (height, width), entry_where) & (labels == 0)
        labels[mask] = label
    return labels


def _int_field(row: dict[str, str], key: str, where: str) -> int | None:
    raw = (row.get(key) or "").strip()
    if not raw:
        return None
    if not is_ascii_digits(raw) or len(raw) > 18 or int(raw) == 0:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise InputError(where, f"{key} {shown!r} is not a positive integer of sensible size")
    return int(raw)


def read_rle_csv(
    path: str | Path, shapes: Mapping[str, tuple[int, int]] | None = None
) -> dict[str, np.ndarray]:
    """Read a Kaggle RLE CSV into instance labels per image.

    Args:
        path: CSV with columns ``ImageId,EncodedPixels`` (+ optional ``Height,Width,Usage``).
        shapes: (H, W) per image id; needed for images whose rows have no ``Height``/``Width``.
            When both are given they must agree.

    Returns:
        ``{image_id: (H, W) uint32 labels}`` in the order the ids first appear.

    Raises:
        InputError: naming the file (and line) for a missing file or column, a missing or
            inconsistent image size, or bad RLE.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "RLE CSV file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the CSV as UTF-8 text: {err}") from err
    try:
        return _parse_rle_csv(path, text, shapes)
    except csv.Error as err:
        raise InputError(path, f"not a readable CSV file: {err}") from err


def _parse_rle_csv(
    path: Path, text: str, shapes: Mapping[str, tuple[int, int]] | None
) -> dict[str, np.ndarray]:
    """The body of :func:`read_rle_csv` once the file is read as text."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise InputError(
            path,
            f"CSV lacks column(s) {missing}; expected header ImageId,EncodedPixels[,Height,Width]",
        )
    reader.fieldnames = columns
    rows_by_id: dict[str, list[tuple[str, str]]] = {}
    shape_by_id: dict[str, tuple[int, int]] = {}
    where_by_id: dict[str, str] = {}
    for row in reader:
        where = f"{path}, line {reader.line_num}"
        if None in row:
            raise InputError(where, "row has more fields than the header")
        image_id = (row["ImageId"] or "").strip()
        if not image_id:
            raise InputError(where, "empty ImageId")
        height, width = _int_field(row, "Height", where), _int_field(row, "Width", where)
        if (height is None) != (width is None):
            raise InputError(where, "row has only one of Height and Width")
        if height is not None and width is not None:
            known = shape_by_id.setdefault(image_id, (height, width))
            if known != (height, width):
                raise InputError(
                    where,
                    f"size {height}x{width} of {image_id} differs from earlier rows' {known[0]}x{known[1]}",
                )
        rows_by_id.setdefault(image_id, []).append((where, row["EncodedPixels"] or ""))
        where_by_id.setdefault(image_id, where)
    if not rows_by_id:
        raise InputError(path, "CSV has a header but no rows")
    out: dict[str, np.ndarray] = {}
    for image_id, rles in rows_by_id.items():
        shape = shape_by_id.get(image_id)
        given = None if shapes is None else shapes.get(image_id)
        if given is not None:
            given = (int(given[0]), int(given[1]))
            if shape is not None and shape != given:
                raise InputError(
                    where_by_id[image_id],
                    f"CSV size {shape[0]}x{shape[1]} of {image_id} differs from the given {given[0]}x{given[1]}",
                )
            shape = given
        if shape is None:
            raise InputError(
                where_by_id[image_id],
                f"no image size for {image_id}: the CSV has no Height/Width and none was given",
            )
        out[image_id] = _labels_from_rles(rles, shape, where_by_id[image_id])
    return out


def write_rle_csv(
    path: str | Path,
    labels_by_id: Mapping[str, np.ndarray],
    overwrite: bool = False,
    include_shape: bool = True,
) -> None:
    """Write instance labels as a Kaggle RLE CSV (atomically).

    Args:
        path: Destination CSV.
        labels_by_id: ``{image_id: (H, W) labels}``; written in the mapping's order, one row per
            nucleus in increasing label order, one empty row for an image without nuclei.
        overwrite: Replace an existing file.
        include_shape: Add ``Height,Width`` columns, so the file can be decoded on its own. Set it
            to False for the plain Kaggle submission format ``ImageId,EncodedPixels``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["ImageId", "EncodedPixels", "Height", "Width"] if include_shape else list(_REQUIRED)
    )
    for image_id, labels in labels_by_id.items():
        lab = np.asarray(labels)
        extra = [lab.shape[0], lab.shape[1]] if include_shape else []
        for rle in labels_to_rle(lab) or [""]:
            writer.writerow([image_id, rle, *extra])
    write_text_atomic(path, buffer.getvalue(), overwrite)
