"""CZI, ND2 and LIF files through ``bioio`` (the optional ``formats`` extra:
``pip install 'bayescellseg[formats]'``, which brings bioio and its czi / nd2 / lif readers).

The first scene is read. Like TIFFs (:mod:`~bayescellseg.io.tiff`), a file must hold one 2D
plane per channel: more than one time point or z-slice is refused. Several channels become a
multichannel :class:`~bayescellseg.io.channels.RawImage` (choose with ``--channel``); RGB
samples (``S``, as in brightfield CZIs) a colour image. The pixel size is bioio's
``physical_pixel_sizes`` (micrometres).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg.errors import InputError
from bayescellseg.io.channels import RawImage
from bayescellseg.io.decoding import check_size, decode_error
from bayescellseg.io.pixelsize import PLAUSIBLE_UM, PixelSize

#: Suffixes read through bioio.
BIOIO_SUFFIXES = (".czi", ".nd2", ".lif")
_EXTRA = "pip install 'bayescellseg[formats]'"


def _bioimage(path: Path) -> Any:
    try:
        bioio = importlib.import_module("bioio")
    except ImportError as err:
        raise InputError(
            path, f"reading {path.suffix} files needs the optional bioio readers: {_EXTRA}"
        ) from err
    try:
        return bioio.BioImage(path)
    except Exception as err:  # noqa: BLE001 - the reader boundary: plugins raise any type
        raise decode_error(path, err, f"{path.suffix} file") from err


def _pixel_size(image: Any) -> PixelSize | None:
    sizes = image.physical_pixel_sizes
    x, y = sizes.X, sizes.Y
    low, high = PLAUSIBLE_UM
    if x is None or y is None or not all(math.isfinite(v) and low <= v <= high for v in (x, y)):
        return None
    return PixelSize(float(x), float(y), "bioio")


def read_bioio(path: str | Path) -> RawImage:
    """Decode the first scene of a CZI / ND2 / LIF (or any bioio-readable) file.

    Raises:
        InputError: bioio is not installed (the message says how to install it), the file
            cannot be decoded, or it holds a z-stack or time series.
    """
    path = Path(path)
    image = _bioimage(path)
    try:
        order, shape = str(image.dims.order), tuple(int(s) for s in image.dims.shape)
        sizes = dict(zip(order, shape, strict=True))
        if sizes.get("T", 1) > 1 or sizes.get("Z", 1) > 1:
            raise InputError(
                path,
                f"file has {sizes.get('Z', 1)} z-slices and {sizes.get('T', 1)} time points "
                f"(dims {order} {shape}): z-stacks and time series are not supported; save a "
                "single 2D plane (e.g. a maximum projection)",
            )
        check_size(path, sizes["Y"], sizes["X"])
        samples = sizes.get("S", 1)
        channels = sizes.get("C", 1)
        if samples > 1 and channels > 1:
            raise InputError(path, f"file has {channels} channels of {samples} samples each")
        if samples > 1:
            array, kind, axes = image.get_image_data("YXS"), "colour", "YXS"
        elif channels > 1:
            array, kind, axes = image.get_image_data("YXC"), "channels", "CYX"
        else:
            array, kind, axes = image.get_image_data("YX"), "grey", "YX"
        pixel_size = _pixel_size(image)
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - the reader boundary
        raise decode_error(path, err, f"{path.suffix} file") from err
    if kind == "colour" and array.shape[-1] not in (3, 4):
        kind = "channels"
    return RawImage(np.ascontiguousarray(np.asarray(array)), kind, axes, pixel_size)  # type: ignore[arg-type]
