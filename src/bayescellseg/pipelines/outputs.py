"""Writing the per-image output files of ``predict`` (named in
:mod:`~bayescellseg.prediction_folder`).

:func:`write_outputs` is where a further per-image export belongs: it receives the image, its
:class:`~bayescellseg.Result` and the staged paths, and everything it writes is moved into the
output folder together (:mod:`~bayescellseg.pipelines.outdir`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg.errors import OutputError
from bayescellseg.inference.result import Result
from bayescellseg.io.atomic import write_json_atomic, write_text_atomic
from bayescellseg.io.images import write_png, write_tiff
from bayescellseg.postprocess.nuclei import NUCLEUS_COLUMNS, records_to_rows
from bayescellseg.prediction_folder import MAP_NAMES
from bayescellseg.report.overlay import make_overlay, uncertainty_vmax


def fmt(value: Any) -> Any:
    """A CSV cell: floats with 6 significant digits, NaN and None empty."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if value is None:
        return ""
    return value


def csv_text(columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> str:
    """CSV text of ``rows`` (dicts) with a header of ``columns`` (cells by :func:`fmt`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: fmt(row.get(k)) for k in columns})
    return buffer.getvalue()


def label_dtype(labels: np.ndarray) -> type[np.unsignedinteger]:
    """uint16 when every label fits, else uint32."""
    return np.uint16 if int(labels.max(initial=0)) < 65536 else np.uint32


def write_outputs(
    paths: dict[str, Path],
    image: np.ndarray,
    result: Result,
    info: dict[str, Any],
    overwrite: bool,
    review_threshold: float = 0.5,
    shown_dir: Path | None = None,
) -> None:
    """Write every per-image output file of one result (each atomically).

    The overlay colours nucleus uncertainty from green (0) through yellow (``review_threshold``,
    where flagging starts) to red (twice the threshold and above).

    Args:
        shown_dir: The folder named in error messages (the final output folder when ``paths``
            point into a staging folder); None names ``paths`` as they are.

    Raises:
        OutputError: A file cannot be written (disk full, permissions); names the file.
    """

    def write(key: str, writer: Callable[[Path, Any, bool], None], data: Any) -> None:
        try:
            writer(paths[key], data, overwrite)
        except OSError as err:
            shown = paths[key] if shown_dir is None else Path(shown_dir) / paths[key].name
            raise OutputError(shown, f"cannot write ({err.strerror or err})") from err

    write("labels", write_tiff, result.labels.astype(label_dtype(result.labels)))
    for name in MAP_NAMES:
        write(name, write_tiff, getattr(result, name).astype(np.float32))
    uncertainty = {r.label: r.uncertainty for r in result.nuclei}
    flagged = {r.label for r in result.nuclei if r.needs_review}
    overlay = make_overlay(
        image, result.labels, uncertainty, flagged, vmax=uncertainty_vmax(review_threshold)
    )
    write("overlay", write_png, overlay)
    write("nuclei", write_text_atomic, csv_text(NUCLEUS_COLUMNS, records_to_rows(result.nuclei)))
    write("summary", write_json_atomic, {**info, **result.summary_dict()})
