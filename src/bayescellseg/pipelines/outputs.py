"""Writing the per-image output files of ``predict`` (named in
:mod:`~bayescellseg.prediction_folder`) and the cells of its tables.

:func:`write_image_outputs` writes the ``--save`` choice through
:func:`~bayescellseg.export.write_exports` plus ``name_summary.json``; everything it writes is
moved into the output folder together (:mod:`~bayescellseg.pipelines.outdir`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayescellseg.errors import OutputError
from bayescellseg.export import ExportOptions, write_exports
from bayescellseg.export.writer import ResultLike
from bayescellseg.io.atomic import write_json_atomic
from bayescellseg.io.images import LoadedImage
from bayescellseg.prediction_folder import SUMMARY_SUFFIX


def write_image_outputs(
    folder: Path,
    name: str,
    image: LoadedImage,
    result: ResultLike,
    summary: dict[str, Any],
    options: ExportOptions,
) -> list[Path]:
    """Write the chosen outputs of one image and its ``name_summary.json`` into ``folder``.

    Args:
        folder: Where to write (the image's staging folder).
        name: The image's name (the files' stem).
        image: The image as read (its intensity planes are measured).
        result: The segmentation (with the review flags to show).
        summary: The content of ``name_summary.json``.
        options: What to write (:class:`~bayescellseg.export.ExportOptions`); its
            ``shown_dir`` is the folder named in errors.

    Returns:
        The files written, the summary last.

    Raises:
        OutputError: A file cannot be written; names it (in ``options.shown_dir``).
    """
    written = write_exports(result, image, name, folder, options)
    path = Path(folder) / f"{name}{SUMMARY_SUFFIX}"
    try:
        write_json_atomic(path, summary, options.overwrite)
    except OSError as err:
        shown = path if options.shown_dir is None else Path(options.shown_dir) / path.name
        raise OutputError(shown, f"cannot write ({err.strerror or err})") from err
    return [*written, path]
