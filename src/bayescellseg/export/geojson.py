"""QuPath-compatible GeoJSON: one ``Polygon`` detection per nucleus.

QuPath (0.4 and later) reads it with *File > Import objects* (or by dragging the file onto the
image): each feature becomes a detection with its ``measurements`` in the measurement table
and its ``classification`` as its class, so the flagged nuclei show in the review colour.
Coordinates are image pixels with the origin at the top-left corner of the image (QuPath's own
convention). Measurements that are unknown (NaN) are left out, since JSON has no NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg.io.atomic import write_text_atomic

#: QuPath classes (name, RGB colour) of flagged and unflagged nuclei.
REVIEW_CLASS = {"name": "Needs review", "color": [255, 0, 255]}
OK_CLASS = {"name": "Nucleus", "color": [0, 200, 0]}


def _ring(points: np.ndarray) -> list[list[float]]:
    """A closed GeoJSON ring (first vertex repeated at the end), rounded to 1/1000 px."""
    ring = [[round(float(x), 3), round(float(y), 3)] for x, y in points]
    return ring + ring[:1]


def _measurements(row: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float) and math.isfinite(value):
            out[key] = float(value)
    return out


def nucleus_feature(
    points: np.ndarray, row: dict[str, Any], flagged: bool, pixel_size_um: float | None = None
) -> dict[str, Any]:
    """One nucleus as a QuPath detection feature.

    Args:
        points: (N, 2) (x, y) outline in pixel-corner coordinates.
        row: The nucleus's table row (``label`` first); numeric values become measurements.
        flagged: Whether the nucleus needs review (its classification).
        pixel_size_um: Recorded as ``pixel_size_um`` in the properties when known.

    Returns:
        A GeoJSON Feature dict.
    """
    label = int(row["label"])
    properties: dict[str, Any] = {
        "objectType": "detection",
        "name": f"Nucleus {label}",
        "classification": dict(REVIEW_CLASS if flagged else OK_CLASS),
        "isLocked": False,
        "measurements": _measurements(row),
        "label": label,
        "needs_review": bool(flagged),
    }
    if pixel_size_um is not None:
        properties["pixel_size_um"] = float(pixel_size_um)
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [_ring(points)]},
        "properties": properties,
    }


def feature_collection(
    outlines: dict[int, np.ndarray],
    rows: Sequence[dict[str, Any]],
    pixel_size_um: float | None = None,
) -> dict[str, Any]:
    """The FeatureCollection of all nuclei, in the order of ``rows``.

    Args:
        outlines: {label: (N, 2) outline} (:func:`~bayescellseg.export.polygons.nucleus_outlines`).
        rows: Table rows with ``label`` and ``needs_review``.
        pixel_size_um: Micrometres per pixel, if known.

    Raises:
        ValueError: A row whose label has no outline.
    """
    features = []
    for row in rows:
        label = int(row["label"])
        if label not in outlines:
            raise ValueError(f"nucleus {label} has no outline in the label image")
        flagged = bool(row.get("needs_review"))
        features.append(nucleus_feature(outlines[label], row, flagged, pixel_size_um))
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, collection: dict[str, Any], overwrite: bool = False) -> None:
    """Write a FeatureCollection as compact JSON, atomically (``allow_nan=False``: strict JSON)."""
    write_text_atomic(path, json.dumps(collection, allow_nan=False) + "\n", overwrite)
