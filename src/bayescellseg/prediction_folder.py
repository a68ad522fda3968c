"""The file names of a ``predict`` output folder: the one place that knows them.

Written by :mod:`bayescellseg.pipelines.predict` (through :mod:`~bayescellseg.pipelines.outputs`)
and read back by :mod:`bayescellseg.evaluation.sources`, ``--resume``
(:mod:`~bayescellseg.pipelines.resume`) and the input scan, which skips a folder's own outputs
(:mod:`~bayescellseg.pipelines.inputs`). Per image ``name``::

    name_labels.tif        nuclei (uint16, or uint32 when there are 65535+ labels)
    name_probability.tif   mean foreground probability (float32)
    name_entropy.tif       predictive entropy, bits (float32)
    name_aleatoric.tif     expected entropy, bits (float32)
    name_epistemic.tif     mutual information, bits (float32)
    name_overlay.png       outlines coloured by nucleus uncertainty, flagged nuclei ringed
    name_nuclei.csv        one row per nucleus
    name_summary.json      per-image summary

and per batch ``summary.csv`` (the review queue) and ``run_config.json``.
"""

from __future__ import annotations

from pathlib import Path

LABELS_SUFFIX = "_labels.tif"
MAP_NAMES = ("probability", "entropy", "aleatoric", "epistemic")
"""The float maps written per image (``name_<map>.tif``)."""
MAP_SUFFIXES = tuple(f"_{name}.tif" for name in MAP_NAMES)
OVERLAY_SUFFIX = "_overlay.png"
NUCLEI_SUFFIX = "_nuclei.csv"
SUMMARY_SUFFIX = "_summary.json"
OUTPUT_SUFFIXES = (
    LABELS_SUFFIX,
    *MAP_SUFFIXES,
    OVERLAY_SUFFIX,
    NUCLEI_SUFFIX,
    SUMMARY_SUFFIX,
)
"""Every per-image output file, ``name + suffix``."""
SUMMARY_CSV = "summary.csv"
RUN_CONFIG = "run_config.json"


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """The output files of image ``name``, keyed by their suffix without ``_`` and extension
    (``labels``, ``probability``, ..., ``nuclei``, ``summary``)."""
    return {s.split(".")[0][1:]: Path(out_dir) / f"{name}{s}" for s in OUTPUT_SUFFIXES}


def map_path(out_dir: Path, name: str, map_name: str) -> Path:
    """``out_dir / name_<map_name>.tif``."""
    return Path(out_dir) / f"{name}_{map_name}.tif"
