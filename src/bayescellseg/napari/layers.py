"""napari layer-data tuples for a segmentation: nuclei labels with the nucleus table as
features (coloured by review flag), and the probability and epistemic-uncertainty maps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Label colours (RGBA) of nuclei that need review and of the others.
REVIEW_COLOUR = (1.0, 0.0, 1.0, 1.0)
OK_COLOUR = (0.0, 0.8, 0.0, 1.0)

LayerData = tuple[Any, dict[str, Any], str]


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def review_colormap(rows: Sequence[dict[str, Any]]) -> dict[int | None, Any]:
    """A direct label colormap: flagged nuclei magenta, the others green, background clear."""
    colours: dict[int | None, Any] = {None: OK_COLOUR, 0: (0.0, 0.0, 0.0, 0.0)}
    for row in rows:
        flagged = _truthy(row.get("needs_review"))
        colours[int(row["label"])] = REVIEW_COLOUR if flagged else OK_COLOUR
    return colours


def _feature_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    return value


def features(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The nucleus table as a napari features table (``index`` = the label, as napari's Labels
    layer expects; ``needs_review`` as booleans; missing values NaN)."""
    if not rows:
        return {}
    columns = list(rows[0])
    table: dict[str, list[Any]] = {"index": [int(r["label"]) for r in rows]}
    for column in columns:
        values = [_feature_value(r.get(column)) for r in rows]
        table[column] = [_truthy(v) for v in values] if column == "needs_review" else values
    return table


def segmentation_layers(
    labels: np.ndarray,
    rows: Sequence[dict[str, Any]],
    maps: dict[str, np.ndarray],
    name: str,
    placement: dict[str, Any] | None = None,
) -> list[LayerData]:
    """Layers of one segmentation.

    Args:
        labels: (H, W) nuclei.
        rows: The nucleus table (``label``, ``needs_review``, measurements, ...).
        maps: Per-pixel maps to show (``probability``, ``epistemic``, ...); each becomes an
            Image layer, hidden except the probability, contrast 0-1.
        name: The image's name; layers are ``"<name> nuclei"``, ``"<name> <map>"``.
        placement: ``scale`` / ``translate`` of the input layer, so the outputs overlay it.

    Returns:
        Layer-data tuples, the labels last (on top).
    """
    where = dict(placement or {})
    layers: list[LayerData] = []
    colormaps = {"probability": "magma", "epistemic": "inferno"}
    for key, data in maps.items():
        meta = {
            "name": f"{name} {key}",
            "colormap": colormaps.get(key, "viridis"),
            "contrast_limits": (0.0, 1.0),
            "blending": "additive",
            "visible": key == "probability",
            "opacity": 0.6,
            **where,
        }
        layers.append((np.asarray(data, np.float32), meta, "image"))
    meta = {
        "name": f"{name} nuclei",
        "features": features(rows),
        "colormap": review_colormap(rows),
        "opacity": 0.6,
        **where,
    }
    layers.append((np.asarray(labels), meta, "labels"))
    return layers
