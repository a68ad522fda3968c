"""``bayescellseg data check``: summarise dataset folders and list their problems."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bayescellseg.io.check import DatasetReport, check_dataset
from bayescellseg.progress import NoProgress, Progress

__all__ = ["check_datasets"]


def check_datasets(
    paths: Sequence[str | Path], progress: Progress | None = None
) -> list[DatasetReport]:
    """Check every dataset folder (:func:`bayescellseg.io.check.check_dataset`).

    Args:
        paths: Dataset folders (DSB2018 layouts or folders of images with label images).
        progress: Told about every checked folder.

    Returns:
        One report per folder, in order; a folder's problems are in its report, never raised.
    """
    progress = progress or NoProgress()
    progress.start(len(paths), "data check")
    reports = []
    for path in paths:
        reports.append(check_dataset(Path(path)))
        progress.advance(str(path))
    progress.close()
    return reports
