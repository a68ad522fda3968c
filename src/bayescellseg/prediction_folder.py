"""The file names of a ``predict`` output folder: the one place that knows them.

Written by :mod:`bayescellseg.pipelines.predict` (through :mod:`~bayescellseg.pipelines.outputs`)
and read back by :mod:`bayescellseg.evaluation.sources`, ``--resume``
(:mod:`~bayescellseg.pipelines.resume`) and the input scan, which skips a folder's own outputs
(:mod:`~bayescellseg.pipelines.inputs`). Per image ``name``::

    name_labels.tif        nuclei, ImageJ TIFF (uint16, or float32 when there are 65535+ labels)
    name_probability.tif   mean foreground probability (ImageJ float32 TIFF)
    name_entropy.tif       predictive entropy, bits (ImageJ float32 TIFF)
    name_aleatoric.tif     expected entropy, bits (ImageJ float32 TIFF)
    name_epistemic.tif     mutual information, bits (ImageJ float32 TIFF)
    name_overlay.png       outlines coloured by nucleus uncertainty, flagged nuclei ringed
    name_nuclei.csv        one row per nucleus (uncertainty, p_correct, measurements)
    name_nuclei.geojson    QuPath detections, one Polygon per nucleus
    name_rois.zip          ImageJ ROI set, one polygon per nucleus
    name_summary.json      per-image summary (always written)

All but the summary are chosen with ``--save`` (:data:`SAVE_SUFFIXES`; every one by default).

and per batch ``summary.csv`` (the review queue) and ``run_config.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

LABELS_SUFFIX = "_labels.tif"
MAP_NAMES = ("probability", "entropy", "aleatoric", "epistemic")
"""The float maps written per image (``name_<map>.tif``)."""
MAP_SUFFIXES = tuple(f"_{name}.tif" for name in MAP_NAMES)
OVERLAY_SUFFIX = "_overlay.png"
NUCLEI_SUFFIX = "_nuclei.csv"
SUMMARY_SUFFIX = "_summary.json"
GEOJSON_SUFFIX = "_nuclei.geojson"
ROIS_SUFFIX = "_rois.zip"
SAVE_SUFFIXES: dict[str, str] = {
    "labels": LABELS_SUFFIX,
    **dict(zip(MAP_NAMES, MAP_SUFFIXES, strict=True)),
    "overlay": OVERLAY_SUFFIX,
    "csv": NUCLEI_SUFFIX,
    "geojson": GEOJSON_SUFFIX,
    "rois": ROIS_SUFFIX,
}
"""The files ``--save`` chooses among, by their ``--save`` name, in the order they are written."""
OUTPUT_SUFFIXES = (*SAVE_SUFFIXES.values(), SUMMARY_SUFFIX)
"""Every per-image output file of a default run, ``name + suffix``."""
SUMMARY_CSV = "summary.csv"
RUN_CONFIG = "run_config.json"


def output_paths(out_dir: Path, name: str, save: Iterable[str] | None = None) -> dict[str, Path]:
    """The output files of image ``name``: the chosen ``--save`` outputs keyed by their
    ``--save`` name (``labels``, ``probability``, ..., ``csv``, ``geojson``, ``rois``; None:
    all), in :data:`SAVE_SUFFIXES` order, then ``summary``."""
    chosen = set(SAVE_SUFFIXES) if save is None else set(save)
    paths = {k: Path(out_dir) / f"{name}{s}" for k, s in SAVE_SUFFIXES.items() if k in chosen}
    paths["summary"] = Path(out_dir) / f"{name}{SUMMARY_SUFFIX}"
    return paths


def map_path(out_dir: Path, name: str, map_name: str) -> Path:
    """``out_dir / name_<map_name>.tif``."""
    return Path(out_dir) / f"{name}_{map_name}.tif"
