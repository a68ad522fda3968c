"""napari reader for the output folder of ``bayescellseg predict`` (or one ``*_labels.tif``).

For every image ``NAME`` in the folder it adds ``NAME probability`` and ``NAME epistemic``
(Image layers, when written) and ``NAME nuclei`` (a Labels layer, with ``NAME_nuclei.csv`` as
its features and coloured by review flag), scaled by the pixel size of the label TIFF, so that
napari's scale bar shows micrometres.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tifffile

from bayescellseg.io.images import load_image, read_label_image
from bayescellseg.napari.layers import LayerData, segmentation_layers
from bayescellseg.prediction_folder import LABELS_SUFFIX, NUCLEI_SUFFIX, map_path

_LABELS = LABELS_SUFFIX


def _number(text: str) -> Any:
    if text == "":
        return float("nan")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_table(path: Path) -> list[dict[str, Any]]:
    """A nucleus CSV as rows of numbers (strings where not numeric, NaN where empty)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def image_layers(labels_path: Path) -> list[LayerData]:
    """The layers of one image, from its ``NAME_labels.tif`` and the files beside it."""
    stem = labels_path.name[: -len(_LABELS)]
    folder = labels_path.parent
    labels = read_label_image(labels_path)
    pixel = load_image(labels_path).pixel_size
    maps = {}
    for key in ("probability", "epistemic"):
        path = map_path(folder, stem, key)
        if path.is_file():
            maps[key] = tifffile.imread(path)
    placement = {"scale": (pixel.y, pixel.x)} if pixel is not None else {}
    rows = read_table(folder / f"{stem}{NUCLEI_SUFFIX}")
    layers = segmentation_layers(labels, rows, maps, stem, placement)
    for _, meta, _ in layers:
        meta["metadata"] = {"pixel_size_um": None if pixel is None else pixel.x}
    return layers


def _label_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.name.endswith(_LABELS) and p.is_file())
    return [path] if path.name.endswith(_LABELS) and path.is_file() else []


def read_predict_output(path: str | list[str]) -> list[LayerData]:
    """All layers of a predict output folder (or of the given label files)."""
    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        for labels_path in _label_files(Path(p)):
            layers.extend(image_layers(labels_path))
    return layers


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: :func:`read_predict_output` for a folder holding
    ``*_labels.tif`` files or for label files themselves; None for anything else."""
    paths = [path] if isinstance(path, str) else list(path)
    if paths and all(_label_files(Path(p)) for p in paths):
        return read_predict_output
    return None


__all__ = ["get_reader", "image_layers", "read_predict_output", "read_table"]
