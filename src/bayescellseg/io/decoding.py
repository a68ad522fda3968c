"""Limits and error messages shared by the image decoders (:mod:`~bayescellseg.io.images`,
:mod:`~bayescellseg.io.tiff`)."""

from __future__ import annotations

import re
from pathlib import Path

from bayescellseg.errors import InputError

MAX_PIXELS = 100_000_000
"""Largest image (height x width) accepted; anything larger is treated as a decompression bomb."""

SUPPORTED = (
    "supported: 2D grey, RGB or RGBA images, 8- or 16-bit (PNG, JPEG, TIFF), and multichannel "
    "TIFFs with a channel choice"
)


def check_size(path: Path, height: int, width: int) -> None:
    """Refuse empty images and images above :data:`MAX_PIXELS` (before decoding them).

    Raises:
        InputError: naming the file and the declared size.
    """
    if height * width > MAX_PIXELS:
        raise InputError(
            path,
            f"declared image size {width}x{height} ({height * width:,} pixels) exceeds the limit of "
            f"{MAX_PIXELS:,} pixels; refusing to decode it (possible decompression bomb)",
        )
    if height == 0 or width == 0:
        raise InputError(path, f"image has zero size ({width}x{height})")


def bomb_error(path: Path, err: Exception) -> InputError:
    """Our own message for Pillow's decompression-bomb refusal (raised before we see the size)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    declared = f"{int(found.group(1)):,} pixels" if found else "unknown size"
    return InputError(
        path,
        f"declared image size ({declared}) exceeds the limit of {MAX_PIXELS:,} pixels; "
        "refusing to decode it (possible decompression bomb)",
    )


def decode_error(path: Path, err: Exception, what: str = "image") -> InputError:
    """The project's error for a decoder failure (any exception type a codec may raise)."""
    detail = str(err) or type(err).__name__
    return InputError(
        path, f"cannot decode {what} (corrupt, truncated or unsupported file): {detail}"
    )
