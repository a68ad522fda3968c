"""ImageJ ROI sets (``.zip``, as Fiji's ROI Manager saves them), written with ``roifile``.

One polygon ROI per nucleus, named by its label, in label order; coordinates are the outlines of
:mod:`~bayescellseg.export.polygons` (pixel corners, sub-pixel), which is ImageJ's convention too.
Open with Fiji's *ROI Manager > More > Open...* or by dropping the zip on Fiji.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import roifile

from bayescellseg.io.atomic import atomic_path


def nucleus_rois(outlines: dict[int, np.ndarray]) -> list[roifile.ImagejRoi]:
    """One polygon ROI per outline, named ``str(label)``, in increasing label order."""
    rois = []
    for label in sorted(outlines):
        roi = roifile.ImagejRoi.frompoints(np.asarray(outlines[label], np.float64), name=str(label))
        roi.roitype = roifile.ROI_TYPE.POLYGON
        rois.append(roi)
    return rois


def write_roi_zip(
    path: str | Path, outlines: dict[int, np.ndarray], overwrite: bool = False
) -> None:
    """Write the ROI set of ``outlines`` as a zip, atomically.

    An image without nuclei gives an empty zip archive (the ROI Manager opens it as no ROIs).
    """
    rois = nucleus_rois(outlines)
    with atomic_path(path, overwrite) as tmp:
        if rois:
            roifile.roiwrite(tmp, rois, mode="w")
        else:
            import zipfile

            with zipfile.ZipFile(tmp, "w"):
                pass
