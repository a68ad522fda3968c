"""The nucleus table: shape and intensity measurements from ``skimage.measure.regionprops_table``,
merged with the per-nucleus uncertainty columns.

Columns added to :data:`~bayescellseg.postprocess.nuclei.NUCLEUS_COLUMNS` (``area`` there is
the pixel count):

* ``perimeter`` (px; scikit-image's perimeter, the 4-connected contour through the centres of the
  boundary pixels: a 4 x 10 rectangle has 24), ``area_um2`` and ``perimeter_um`` (empty when the
  pixel size is unknown);
* ``eccentricity``, ``solidity`` (area / convex area), ``major_axis_length`` and
  ``minor_axis_length`` (px; of the ellipse with the same second moments), and the two lengths in
  um;
* ``mean_intensity`` and ``max_intensity`` of the segmented channel in the file's units (one pair
  per plane, suffixed ``_c0``, ``_red``, ..., when several planes are measured: see
  :func:`~bayescellseg.io.channels.intensity_planes`);
* ``bbox_min_row``, ``bbox_min_col``, ``bbox_max_row``, ``bbox_max_col`` (max exclusive, as
  numpy slices).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from skimage.measure import regionprops_table

_SHAPE = (
    "label",
    "area",
    "perimeter",
    "eccentricity",
    "solidity",
    "axis_major_length",
    "axis_minor_length",
    "bbox",
)
_RENAME = {
    "axis_major_length": "major_axis_length",
    "axis_minor_length": "minor_axis_length",
    "bbox-0": "bbox_min_row",
    "bbox-1": "bbox_min_col",
    "bbox-2": "bbox_max_row",
    "bbox-3": "bbox_max_col",
}
SHAPE_COLUMNS = (
    "perimeter",
    "area_um2",
    "perimeter_um",
    "eccentricity",
    "solidity",
    "major_axis_length",
    "minor_axis_length",
    "major_axis_length_um",
    "minor_axis_length_um",
)
BBOX_COLUMNS = ("bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col")


def intensity_columns(names: Sequence[str]) -> tuple[str, ...]:
    """``mean_intensity`` / ``max_intensity`` columns for planes named ``names``."""
    suffixes = [f"_{n}" if n else "" for n in names]
    return tuple(f"{stat}_intensity{s}" for s in suffixes for stat in ("mean", "max"))


def measurement_columns(names: Sequence[str] = ("",)) -> tuple[str, ...]:
    """The columns :func:`measure_nuclei` returns besides ``label`` and ``area``."""
    return SHAPE_COLUMNS + intensity_columns(names) + BBOX_COLUMNS


def measure_nuclei(
    labels: np.ndarray,
    intensity: np.ndarray | None = None,
    intensity_names: Sequence[str] = ("",),
    pixel_size_um: float | None = None,
) -> dict[int, dict[str, Any]]:
    """Shape and intensity measurements of every nucleus.

    Args:
        labels: (H, W) instance labels, 0 = background.
        intensity: (H, W) or (H, W, K) planes to measure (file units); None: no intensity
            columns (then ``intensity_names`` must be empty).
        intensity_names: Names of the K planes (``""`` for a single one).
        pixel_size_um: Micrometres per pixel; None leaves the um columns empty (NaN).

    Returns:
        Per label, a dict with ``area`` (px) and every column of :func:`measurement_columns`.

    Raises:
        ValueError: ``intensity`` does not match ``labels`` or ``intensity_names``.
    """
    lab = np.asarray(labels)
    planes = None
    if intensity is not None:
        planes = np.asarray(intensity, dtype=np.float64)
        planes = planes[..., None] if planes.ndim == 2 else planes
        if planes.shape[:2] != lab.shape or planes.shape[2] != len(intensity_names):
            raise ValueError(
                f"intensity {planes.shape} does not match labels {lab.shape} and "
                f"{len(intensity_names)} plane names"
            )
    elif intensity_names:
        raise ValueError("intensity_names given without intensity planes")
    props = _SHAPE + (("intensity_mean", "intensity_max") if planes is not None else ())
    table = regionprops_table(lab.astype(np.int64), planes, properties=props)
    for k, name in enumerate(intensity_names):
        suffix = f"_{name}" if name else ""
        for stat in ("mean", "max"):
            key = f"intensity_{stat}-{k}"
            table[f"{stat}_intensity{suffix}"] = table.pop(key)
    table = {_RENAME.get(k, k): v for k, v in table.items()}
    scale = np.nan if pixel_size_um is None else float(pixel_size_um)
    table["area_um2"] = table["area"] * scale**2
    for name in ("perimeter", "major_axis_length", "minor_axis_length"):
        table[f"{name}_um"] = table[name] * scale
    rows: dict[int, dict[str, Any]] = {}
    for i, label in enumerate(table["label"]):
        row = {k: _value(v[i]) for k, v in table.items() if k != "label"}
        row["area"] = int(row["area"])
        rows[int(label)] = row
    return rows


def _value(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def nucleus_table(
    records: Sequence[Any],
    measurements: dict[int, dict[str, Any]],
    columns: Sequence[str],
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per nucleus record: its uncertainty columns, ``extra``, then its measurements.

    Args:
        records: :class:`~bayescellseg.postprocess.nuclei.NucleusRecord` objects (anything with
            ``to_dict()`` and ``label``).
        measurements: :func:`measure_nuclei` output.
        columns: The measurement columns to add (:func:`measurement_columns`).
        extra: Further columns, one value per record in record order (e.g. ``p_correct``).

    Raises:
        ValueError: A record whose label has no measurement (records and labels disagree), or
            an ``extra`` column of another length than ``records``.
    """
    extra = dict(extra or {})
    for name, values in extra.items():
        if len(values) != len(records):
            raise ValueError(f"column {name!r} has {len(values)} values for {len(records)} nuclei")
    rows = []
    for i, record in enumerate(records):
        if record.label not in measurements:
            raise ValueError(f"nucleus {record.label} is not in the label image")
        measured = measurements[record.label]
        added = {name: _value(values[i]) for name, values in extra.items()}
        rows.append({**record.to_dict(), **added, **{c: measured.get(c) for c in columns}})
    return rows


def result_table(
    labels: np.ndarray,
    records: Sequence[Any],
    intensity: np.ndarray | None,
    intensity_names: Sequence[str] = ("",),
    pixel_size_um: float | None = None,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """The full nucleus table of a segmentation: its columns and rows.

    Args:
        labels: The result's labels.
        records: The result's nucleus records.
        intensity: Planes to measure (see :func:`measure_nuclei`).
        intensity_names: Their names.
        pixel_size_um: Micrometres per pixel, if known.
        extra: Further columns, one value per record (see :func:`nucleus_table`).

    Returns:
        (:data:`~bayescellseg.postprocess.nuclei.NUCLEUS_COLUMNS`, the ``extra`` columns and the
        measurement columns; one row per record).
    """
    from bayescellseg.postprocess.nuclei import NUCLEUS_COLUMNS

    columns = measurement_columns(intensity_names)
    measured = measure_nuclei(labels, intensity, intensity_names, pixel_size_um)
    rows = nucleus_table(records, measured, columns, extra)
    return (*NUCLEUS_COLUMNS, *(extra or {}), *columns), rows
