"""Decoding TIFFs: compressed (through ``imagecodecs``), ImageJ hyperstacks and OME-TIFF.

The first series of the file is read. Singleton axes are dropped; what remains must be the image
plane (``YX``) plus at most one more axis:

* ``S`` with 3 samples, or 4 with the 4th marked as alpha: a colour image;
* ``C`` (ImageJ / OME channels), ``S`` with any other count, or unnamed pages (``I`` / ``Q``):
  a multichannel image, from which :func:`~bayescellseg.io.channels.select_channels` picks;
* ``Z`` or ``T`` (z-stacks, time series) and anything with two extra axes are refused.

The pixel size comes from the metadata (:func:`~bayescellseg.io.pixelsize.tiff_pixel_size`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from bayescellseg.errors import InputError
from bayescellseg.io.channels import RawImage
from bayescellseg.io.decoding import SUPPORTED, check_size, decode_error
from bayescellseg.io.pixelsize import tiff_pixel_size

_ALPHA = (1, 2)  # TIFF ExtraSamples: associated, unassociated alpha
_CHANNEL_AXES = "CSIQ"


def _is_rgba(page: tifffile.TiffPage) -> bool:
    """Whether a 4-sample page is RGB plus a channel marked as alpha."""
    extras = tuple(int(e) for e in (page.extrasamples or ()))
    return int(page.photometric) == 2 and bool(extras[-1:]) and extras[-1] in _ALPHA


def _kept_axes(series: tifffile.TiffPageSeries) -> tuple[tuple[int, ...], str]:
    """Shape and axes without singleton axes (the image plane's Y and X always kept)."""
    kept = [
        (int(s), a) for s, a in zip(series.shape, series.axes, strict=True) if s != 1 or a in "YX"
    ]
    return tuple(s for s, _ in kept), "".join(a for _, a in kept)


def _refuse(path: Path, shape: tuple[int, ...], axes: str, what: str) -> InputError:
    return InputError(
        path,
        f"TIFF has shape {shape} (axes {axes!r}): {what} are not supported; {SUPPORTED}. "
        "Save a single 2D plane (e.g. a maximum projection) or the channels of one plane.",
    )


def _layout(path: Path, tif: tifffile.TiffFile) -> tuple[str, tuple[int, ...], str]:
    """The kind of image (``grey``, ``colour``, ``channels``), and its shape and axes without
    singleton axes."""
    if not tif.pages:
        raise InputError(
            path, "cannot decode TIFF (corrupt, truncated or unsupported file): no image pages"
        )
    first = tif.pages[0]
    check_size(path, int(first.imagelength), int(first.imagewidth))  # before tifffile divides
    series = tif.series[0]
    shape, axes = _kept_axes(series)
    extra = [a for a in axes if a not in "YX"]
    if any(a in "ZT" for a in extra):
        raise _refuse(path, tuple(series.shape), str(series.axes), "z-stacks and time series")
    if len(extra) > 1 or (extra and extra[0] not in _CHANNEL_AXES) or "Y" not in axes:
        raise _refuse(path, tuple(series.shape), str(series.axes), "images of this layout")
    plane = [s for s, a in zip(shape, axes, strict=True) if a in "YX"]
    check_size(path, plane[0], plane[1])
    if not extra:
        return "grey", shape, axes
    n = shape[axes.index(extra[0])]
    colour = extra[0] == "S" and (n == 3 or (n == 4 and _is_rgba(series.keyframe)))
    return ("colour" if colour else "channels"), shape, axes


def read_tiff(path: str | Path) -> RawImage:
    """Decode a TIFF into a :class:`~bayescellseg.io.channels.RawImage` (channels last).

    Args:
        path: A TIFF file (uncompressed, LZW, deflate, zstd, JPEG, ...; ImageJ, OME or plain).

    Raises:
        InputError: Corrupt or undecodable data, a too-large image, a z-stack, a time series or
            another unsupported layout, naming the file.
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            kind, shape, axes = _layout(path, tif)
            array = tif.series[0].asarray().reshape(shape)  # keeps a 1-pixel-high image 2D
            pixel_size = tiff_pixel_size(tif, str(path))
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - the reader boundary: tifffile raises any type
        # (struct.error, zlib.error, ZeroDivisionError, ValueError from reshape, ...)
        raise decode_error(path, err, "TIFF") from err
    extra = [i for i, a in enumerate(axes) if a not in "YX"]
    if extra and extra[0] != array.ndim - 1:
        array = np.moveaxis(array, extra[0], -1)
    return RawImage(np.ascontiguousarray(array), kind, axes, pixel_size)  # type: ignore[arg-type]
