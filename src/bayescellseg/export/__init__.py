"""Per-image outputs for the lab's tools: calibrated ImageJ TIFFs, the nucleus table with
measurements, QuPath GeoJSON and ImageJ ROI sets (:func:`write_exports`)."""

from bayescellseg.export.writer import (
    DEFAULT_SAVE,
    SAVE_CHOICES,
    ExportOptions,
    export_paths,
    parse_save,
    write_exports,
)

__all__ = [
    "DEFAULT_SAVE",
    "SAVE_CHOICES",
    "ExportOptions",
    "export_paths",
    "parse_save",
    "write_exports",
]
