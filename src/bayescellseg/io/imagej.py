"""ImageJ-compatible TIFFs with the pixel size, so Fiji shows micrometres.

ImageJ stores the calibration in the ``XResolution`` / ``YResolution`` tags (pixels per unit)
and the unit in its image description (``unit=micron``); tifffile writes both with
``imagej=True``. ImageJ's TIFFs hold 8-bit, 16-bit or 32-bit float pixels: labels are written
as uint16 when they fit and otherwise as float32 (exact up to 2**24 = 16.7 million labels), maps
as float32. Compression is deflate (``zlib``), which ImageJ, Fiji, QuPath and napari read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from bayescellseg.io.atomic import atomic_path

#: The unit written; ImageJ shows it as "micron" (and µm in its dialogs).
IMAGEJ_UNIT = "micron"
_EXACT_FLOAT32 = 2**24


def imagej_array(array: np.ndarray, labels: bool = False) -> np.ndarray:
    """``array`` in a dtype ImageJ reads: uint8 / uint16 kept, labels beyond uint16 as float32,
    anything else as float32.

    Raises:
        ValueError: Not 2D, or labels beyond 2**24 (not exact in float32).
    """
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"expected a 2D array, got shape {a.shape}")
    if a.dtype in (np.uint8, np.uint16):
        return a.copy()
    if labels:
        top = int(a.max(initial=0))
        if top >= _EXACT_FLOAT32:
            raise ValueError(f"label {top} is beyond 2**24, not exact in an ImageJ float TIFF")
        return a.astype(np.uint16 if top < 65536 else np.float32)
    return a.astype(np.float32)


def write_imagej_tiff(
    path: str | Path,
    array: np.ndarray,
    pixel_size_um: float | None = None,
    overwrite: bool = False,
    labels: bool = False,
) -> None:
    """Write a 2D image or label image as an ImageJ TIFF, atomically.

    Args:
        path: Destination.
        array: (H, W) array (see :func:`imagej_array` for the dtype written).
        pixel_size_um: Micrometres per pixel; None writes an uncalibrated file (pixels).
        overwrite: Replace an existing file.
        labels: ``array`` holds instance labels (kept exact).
    """
    data = imagej_array(array, labels)
    kwargs: dict = {"metadata": {"axes": "YX"}}
    if pixel_size_um is not None:
        kwargs["resolution"] = (1.0 / pixel_size_um, 1.0 / pixel_size_um)
        kwargs["metadata"]["unit"] = IMAGEJ_UNIT
    if labels:  # Fiji opens it with a label-like display range
        kwargs["metadata"]["min"], kwargs["metadata"]["max"] = 0.0, float(data.max(initial=0))
    with atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(
            tmp, data, imagej=True, compression="zlib", compressionargs={"level": 1}, **kwargs
        )
