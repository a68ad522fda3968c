"""Pixel size: read from TIFF metadata (ImageJ, OME, resolution tags), parsed from the command
line (``--pixel-size 0.325``, ``--diameter 8um``), always kept in micrometres per pixel.

Where a file carries a pixel size:

* **OME-TIFF**: ``PhysicalSizeX`` / ``PhysicalSizeY`` of the first image (unit
  ``PhysicalSizeXUnit``, micrometres when absent, as the OME schema says);
* **ImageJ TIFF**: the ``XResolution`` / ``YResolution`` tags (pixels per unit) with the unit of
  the ImageJ description (``unit=micron``, ``um``, ``nm``, ...);
* **other TIFFs**: the resolution tags when ``ResolutionUnit`` is centimetre. Inch is ignored: it
  is what scanners and image editors write (72 or 300 dpi), never a microscope's calibration.

A size outside :data:`PLAUSIBLE_UM` is ignored with a logged warning (a 72-dpi default read as
353 um per pixel would silently turn every area into nonsense).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import tifffile

from bayescellseg.errors import InputError

log = logging.getLogger(__name__)

#: Micrometres per unit, by the unit names microscopy software writes.
UNIT_TO_UM: dict[str, float] = {
    "um": 1.0,
    "\u00b5m": 1.0,  # micro sign
    "\u03bcm": 1.0,  # Greek mu
    "\\u00b5m": 1.0,  # ImageJ's escaped form
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
}

#: Pixel sizes (um) accepted from file metadata; anything else is treated as a non-calibration.
PLAUSIBLE_UM = (1e-4, 100.0)

_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\s0-9.]*)\s*$")


@dataclass(frozen=True)
class PixelSize:
    """Physical size of one pixel.

    Attributes:
        x: Micrometres per pixel along the columns.
        y: Micrometres per pixel along the rows.
        source: Where it came from (``OME``, ``ImageJ``, ``TIFF resolution``, ``--pixel-size``).
    """

    x: float
    y: float
    source: str

    @property
    def um(self) -> float:
        """One size for areas and lengths: x (a warning is logged by the reader when y differs)."""
        return self.x


def unit_factor(unit: str | None) -> float | None:
    """Micrometres per ``unit`` (case-insensitive), or None for an unknown or missing unit."""
    if not unit:
        return None
    return UNIT_TO_UM.get(unit.strip().lower())


def _plausible(x: float, y: float, source: str, where: str) -> PixelSize | None:
    low, high = PLAUSIBLE_UM
    if all(math.isfinite(v) and low <= v <= high for v in (x, y)):
        if abs(x - y) > 1e-3 * max(x, y):
            log.warning("%s: non-square pixels (%g x %g um); lengths use %g", where, x, y, x)
        return PixelSize(x, y, source)
    log.warning("%s: ignoring implausible %s pixel size %g x %g um", where, source, x, y)
    return None


def _ome_pixel_size(tif: tifffile.TiffFile, where: str) -> PixelSize | None:
    try:
        images = tifffile.xml2dict(tif.ome_metadata or "")["OME"]["Image"]
        pixels = (images[0] if isinstance(images, list) else images)["Pixels"]
        x = float(pixels["PhysicalSizeX"])
        sizes = [x, float(pixels.get("PhysicalSizeY", x))]  # square pixels when Y is not given
        unit_x = str(pixels.get("PhysicalSizeXUnit", "µm"))
        units = [unit_factor(unit_x), unit_factor(str(pixels.get("PhysicalSizeYUnit", unit_x)))]
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if None in units:
        return None
    return _plausible(sizes[0] * units[0], sizes[1] * units[1], "OME", where)


def _resolution_pixel_size(tif: tifffile.TiffFile, where: str) -> PixelSize | None:
    page = tif.pages[0]
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    if tif.is_imagej:
        factor = unit_factor(str((tif.imagej_metadata or {}).get("unit", "")))
        source = "ImageJ"
    else:
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        factor, source = (1e4 if unit == 3 else None), "TIFF resolution"
    if factor is None:
        return None
    try:
        per_unit = [
            float(n) / float(d) for n, d in (tags[t].value for t in ("XResolution", "YResolution"))
        ]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if min(per_unit) <= 0:
        return None
    return _plausible(factor / per_unit[0], factor / per_unit[1], source, where)


def tiff_pixel_size(tif: tifffile.TiffFile, where: str = "<tiff>") -> PixelSize | None:
    """The pixel size a TIFF's metadata records (OME first, then ImageJ / resolution tags).

    Args:
        tif: An open TIFF.
        where: The file, for log messages.

    Returns:
        The pixel size, or None when the file records none (or an implausible one).
    """
    if tif.is_ome:
        found = _ome_pixel_size(tif, where)
        if found is not None:
            return found
    return _resolution_pixel_size(tif, where)


def parse_length(text: str | float, what: str) -> tuple[float, str | None]:
    """Split ``"8um"``, ``"8 µm"``, ``"325nm"``, ``"45px"`` or ``45`` into (value, unit).

    Args:
        text: The value as typed (or a number).
        what: The parameter's name for errors (e.g. ``diameter``; the CLI shows its flag).

    Returns:
        The positive value and its unit: ``"px"``, a key of :data:`UNIT_TO_UM`, or None
        when no unit was written.

    Raises:
        InputError: Not a positive number with an optional known unit.
    """
    if isinstance(text, bool):
        raise InputError(what, f"expected a positive number, got {text!r}")
    if isinstance(text, int | float):
        value, unit = float(text), None
    else:
        found = _LENGTH.match(str(text))
        if not found:
            raise InputError(what, f"expected a number with an optional unit, got {text!r}")
        value, unit = float(found.group(1)), (found.group(2).lower() or None)
        if unit not in (None, "px", "pixel", "pixels") and unit_factor(unit) is None:
            raise InputError(
                what, f"unknown unit {found.group(2)!r} in {text!r}; use px, um, nm or mm"
            )
        unit = "px" if unit in ("pixel", "pixels") else unit
    if not (math.isfinite(value) and value > 0):
        raise InputError(what, f"must be a positive number, got {text!r}")
    return value, unit


def pixel_size_argument(text: str | float) -> float:
    """``--pixel-size`` in micrometres per pixel: ``0.325``, ``0.325um`` or ``325nm``.

    Raises:
        InputError: Not a positive length, or given in pixels.
    """
    value, unit = parse_length(text, "pixel_size")
    if unit == "px":
        raise InputError("pixel_size", f"is a physical length (um per pixel), got {text!r}")
    return value * (unit_factor(unit) or 1.0)


def diameter_in_pixels(
    diameter: str | float | None, pixel_size_um: float | None, source: str = "image"
) -> float | str | None:
    """Resolve ``--diameter``: None or ``"none"`` (no resizing), ``"auto"``, pixels (``45``,
    ``45px``) or a length (``8um``).

    Args:
        diameter: The value given.
        pixel_size_um: The image's pixel size (from ``--pixel-size`` or its metadata), if known.
        source: The image, named in the error when a length cannot be converted.

    Returns:
        None (no resizing), ``"auto"`` or the diameter in pixels.

    Raises:
        InputError: A malformed value, or a length for an image whose pixel size is unknown.
    """
    if isinstance(diameter, str) and diameter.strip().lower() in ("auto", "none"):
        return None if diameter.strip().lower() == "none" else "auto"
    if diameter is None:
        return None
    value, unit = parse_length(diameter, "diameter")
    if unit in (None, "px"):
        return value
    if pixel_size_um is None:
        raise InputError(
            source,
            f"diameter={diameter!r} is a length, but the image records no pixel size; "
            "give it with pixel_size=MICRONS, or give the diameter in pixels",
        )
    return value * (unit_factor(unit) or 1.0) / pixel_size_um
