"""CSV tables and JSON documents with the package's one convention for missing values.

A missing value (``None`` or a float NaN) is an empty CSV cell and a JSON ``null``; JSON has no
NaN or infinity, so :func:`json_safe` maps every non-finite float to ``null``. Floats in CSV
cells are written with 6 significant digits (``f"{x:.6g}"``). Files are written through
:mod:`bayescellseg.io.atomic`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg.io.atomic import write_json_atomic, write_text_atomic

__all__ = ["csv_cell", "csv_text", "json_safe", "write_csv_atomic", "write_json_safe_atomic"]


def csv_cell(value: Any) -> Any:
    """One CSV cell: ``None`` and NaN -> ``""``, floats with 6 significant digits, else as is.

    Args:
        value: A cell value (``csv`` writes non-strings with ``str``).

    Returns:
        The value to hand to the ``csv`` writer.
    """
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text: a header of ``columns``, then one line per row (``\\n`` line ends).

    Args:
        columns: Column names, in order.
        rows: Mappings from column name to value; a missing key is an empty cell, keys that
            are not columns are left out.

    Returns:
        The text, cells formatted by :func:`csv_cell`.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(columns))
    for row in rows:
        writer.writerow([csv_cell(row.get(name)) for name in columns])
    return buffer.getvalue()


def write_csv_atomic(
    path: str | Path,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    overwrite: bool = False,
) -> None:
    """Write :func:`csv_text` of ``rows`` to ``path`` atomically.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    write_text_atomic(path, csv_text(columns, rows), overwrite)


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts.

    Dicts (keys as strings), lists and tuples (as lists) are converted recursively, numpy
    arrays and scalars become Python lists and numbers, and non-finite floats become ``None``.

    Args:
        value: Any JSON-like value, possibly holding numpy values and NaN.

    Returns:
        The converted value (``value`` itself is not modified).
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_safe_atomic(path: str | Path, obj: Any, overwrite: bool = False) -> None:
    """Write :func:`json_safe` of ``obj`` as indented JSON to ``path`` atomically.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    write_json_atomic(path, json_safe(obj), overwrite)
