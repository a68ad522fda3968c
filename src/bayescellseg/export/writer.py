"""The per-image output files of ``predict``, chosen with ``--save``; one entry point,
:func:`write_exports`, that the predict pipeline calls per image.

| ``--save`` name | file | contents |
|---|---|---|
| ``labels`` | ``NAME_labels.tif`` | ImageJ TIFF of the nuclei (uint16, float32 beyond 65535), calibrated |
| ``probability``, ``entropy``, ``aleatoric``, ``epistemic`` | ``NAME_<map>.tif`` | ImageJ float32 TIFFs, calibrated |
| ``overlay`` | ``NAME_overlay.png`` | contours coloured by nucleus uncertainty |
| ``csv`` | ``NAME_nuclei.csv`` | uncertainty columns + measurements (:mod:`~bayescellseg.export.measurements`) |
| ``geojson`` | ``NAME_nuclei.geojson`` | QuPath detections (:mod:`~bayescellseg.export.geojson`) |
| ``rois`` | ``NAME_rois.zip`` | ImageJ ROI set (:mod:`~bayescellseg.export.rois`) |

``maps`` stands for the four maps and ``all`` for everything; the default is everything. The
per-image ``NAME_summary.json`` is not part of the choice: the pipeline always writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bayescellseg.errors import InputError, OutputError
from bayescellseg.export.geojson import feature_collection, write_geojson
from bayescellseg.export.measurements import result_table
from bayescellseg.export.polygons import nucleus_outlines
from bayescellseg.export.rois import write_roi_zip
from bayescellseg.io.atomic import write_text_atomic
from bayescellseg.io.channels import RawImage, intensity_planes
from bayescellseg.io.imagej import write_imagej_tiff
from bayescellseg.io.images import LoadedImage, to_rgb_float, write_png
from bayescellseg.io.tables import csv_text
from bayescellseg.prediction_folder import MAP_NAMES, SAVE_SUFFIXES, output_paths

MAPS = MAP_NAMES
SUFFIXES = SAVE_SUFFIXES
"""The file name of each output, ``stem + suffix`` (owned by :mod:`~bayescellseg.prediction_folder`)."""
SAVE_CHOICES = tuple(SUFFIXES)
DEFAULT_SAVE = frozenset(SAVE_CHOICES)
_GROUPS = {"maps": MAPS, "all": SAVE_CHOICES}


class ResultLike(Protocol):
    """What :func:`write_exports` reads from a segmentation result
    (:class:`~bayescellseg.inference.segmenter.Result` has it)."""

    labels: np.ndarray
    nuclei: Sequence[Any]
    probability: np.ndarray
    entropy: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray


@dataclass(frozen=True)
class ExportOptions:
    """How :func:`write_exports` writes.

    Attributes:
        save: Outputs to write (names of :data:`SAVE_CHOICES`; see :func:`parse_save`).
        pixel_size_um: Micrometres per pixel (``--pixel-size`` or the file's), if known.
        overwrite: Replace existing files.
        review_threshold: Nucleus uncertainty where flagging starts (the overlay's yellow).
        shown_dir: The folder named in errors when ``out_dir`` is a staging folder.
        nucleus_columns: Further per-nucleus columns, (name, one value per nucleus record in
            record order), placed after the uncertainty columns in the table and the GeoJSON
            measurements (``predict`` adds ``p_correct`` this way).
    """

    save: frozenset[str] = DEFAULT_SAVE
    pixel_size_um: float | None = None
    overwrite: bool = False
    review_threshold: float = 0.5
    shown_dir: Path | None = None
    nucleus_columns: tuple[tuple[str, tuple[float, ...]], ...] = ()


def parse_save(value: str | Iterable[str]) -> frozenset[str]:
    """``--save labels,csv,geojson`` (or a list of names) to a set of :data:`SAVE_CHOICES`.

    Raises:
        InputError: An unknown name, or nothing chosen; the message lists the choices.
    """
    names = value.split(",") if isinstance(value, str) else list(value)
    chosen: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if name in _GROUPS:
            chosen.update(_GROUPS[name])
        elif name in SUFFIXES:
            chosen.add(name)
        elif name:
            raise InputError(
                "save",
                f"unknown output {raw.strip()!r}; choose from {', '.join(SAVE_CHOICES)}, maps, all",
            )
    if not chosen:
        raise InputError("save", f"choose at least one of {', '.join(SAVE_CHOICES)}")
    return frozenset(chosen)


def export_paths(out_dir: str | Path, stem: str, save: Iterable[str]) -> dict[str, Path]:
    """The files of the chosen outputs of image ``stem``, in :data:`SAVE_CHOICES` order
    (:func:`~bayescellseg.prediction_folder.output_paths` without the summary)."""
    paths = output_paths(Path(out_dir), stem, save)
    paths.pop("summary")
    return paths


def _image_parts(image: LoadedImage | np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(H, W, 3) float image for the overlay, and the intensity planes with their names."""
    if isinstance(image, LoadedImage):
        return image.image, image.intensity, image.intensity_names
    a = np.asarray(image)
    raw = RawImage(a, "grey" if a.ndim == 2 else "colour")
    planes, names = intensity_planes(raw, a, None)
    return to_rgb_float(a, "<image>", any_float_range=True), planes, names


def _overlay(rgb: np.ndarray, result: ResultLike, threshold: float) -> np.ndarray:
    from bayescellseg.report.overlay import make_overlay, uncertainty_vmax

    uncertainty = {r.label: r.uncertainty for r in result.nuclei}
    flagged = {r.label for r in result.nuclei if r.needs_review}
    vmax = uncertainty_vmax(threshold)
    return make_overlay(rgb, result.labels, uncertainty, flagged, vmax=vmax)


def _writers(
    result: ResultLike, image: LoadedImage | np.ndarray, options: ExportOptions
) -> dict[str, Callable[[Path], None]]:
    """A writer per chosen output; each computes its contents when called."""
    rgb, planes, names = _image_parts(image)
    px, over = options.pixel_size_um, options.overwrite
    cache: dict[str, Any] = {}

    def rows() -> list[dict[str, Any]]:
        if "rows" not in cache:
            extra = dict(options.nucleus_columns)
            table = result_table(result.labels, result.nuclei, planes, names, px, extra)
            cache["columns"], cache["rows"] = table
        return cache["rows"]

    def columns() -> tuple[str, ...]:
        rows()
        return cache["columns"]

    def outlines() -> dict[int, np.ndarray]:
        if "outlines" not in cache:
            cache["outlines"] = nucleus_outlines(result.labels)
        return cache["outlines"]

    writers: dict[str, Callable[[Path], None]] = {
        "labels": lambda p: write_imagej_tiff(p, result.labels, px, over, labels=True),
        "overlay": lambda p: write_png(p, _overlay(rgb, result, options.review_threshold), over),
        "csv": lambda p: write_text_atomic(p, csv_text(columns(), rows()), over),
        "geojson": lambda p: write_geojson(p, feature_collection(outlines(), rows(), px), over),
        "rois": lambda p: write_roi_zip(p, outlines(), over),
    }
    for name in MAPS:
        writers[name] = lambda p, n=name: write_imagej_tiff(p, getattr(result, n), px, over)
    return writers


def write_exports(
    result: ResultLike,
    image: LoadedImage | np.ndarray,
    stem: str,
    out_dir: str | Path,
    options: ExportOptions | None = None,
) -> list[Path]:
    """Write the chosen per-image outputs of one segmentation (each file atomically).

    Args:
        result: The segmentation (labels, nucleus records, maps).
        image: The image as read (:func:`~bayescellseg.io.images.load_image`; its intensity
            planes are measured), or the raw array given to the Segmenter.
        stem: The image's name; files are ``stem`` plus the suffixes of :data:`SUFFIXES`.
        out_dir: The folder to write into (created if missing).
        options: What to write and how (defaults: everything, uncalibrated, no overwrite).

    Returns:
        The files written, in :data:`SAVE_CHOICES` order.

    Raises:
        OutputError: A file cannot be written (exists without ``overwrite``, disk full,
            permissions); names the file (in ``options.shown_dir`` when given).
    """
    options = options or ExportOptions()
    paths = export_paths(out_dir, stem, options.save)
    writers = _writers(result, image, options)
    for key, path in paths.items():
        try:
            writers[key](path)
        except OSError as err:
            shown = path if options.shown_dir is None else Path(options.shown_dir) / path.name
            detail = "already exists" if isinstance(err, FileExistsError) else err.strerror
            raise OutputError(shown, f"cannot write ({detail or err})") from err
    return list(paths.values())
