"""Reading and writing single images and label images (PNG, JPEG, TIFF).

Supported for prediction: 2D images, 8- or 16-bit (float32 TIFF in [0, 1] too), grey, RGB or
RGBA, and multichannel TIFFs (ImageJ hyperstacks, OME-TIFF) with a channel choice
(:mod:`~bayescellseg.io.channels`). TIFFs may be compressed (LZW, deflate, zstd, JPEG, ... through
``imagecodecs``). :func:`read_image` returns (H, W, 3) float32 scaled to [0, 1] by the dtype's
range: grey is replicated to three channels and alpha is dropped; :func:`load_image` returns the
same plus the pixel size, the axes and the intensity planes the nucleus table measures.
Z-stacks and time series are refused with an error that says what is supported, and so is a
multichannel image without a channel choice (the error names its channel count). Any decoder
failure (truncated or corrupt data, impossible header values) becomes an
:class:`~bayescellseg.errors.InputError` naming the file. Images whose declared size exceeds
:data:`MAX_PIXELS` are refused before they are decoded (decompression-bomb protection).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from bayescellseg.errors import InputError, MultichannelError
from bayescellseg.io.atomic import atomic_path
from bayescellseg.io.bioformats import BIOIO_SUFFIXES, read_bioio
from bayescellseg.io.channels import (
    RawImage,
    intensity_planes,
    multichannel_message,
    select_channels,
)
from bayescellseg.io.decoding import MAX_PIXELS, SUPPORTED, bomb_error, check_size, decode_error
from bayescellseg.io.pixelsize import PixelSize
from bayescellseg.io.tiff import read_tiff

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_SUFFIXES",
    "MAX_PIXELS",
    "PREDICT_SUFFIXES",
    "LoadedImage",
    "load_image",
    "read_decoded",
    "read_image",
    "read_label_image",
    "read_raw",
    "to_rgb_float",
    "write_png",
    "write_tiff",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
LABEL_SUFFIXES = (".png", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")
#: What ``predict`` reads: :data:`IMAGE_SUFFIXES` plus CZI / ND2 / LIF (the ``formats`` extra).
PREDICT_SUFFIXES = IMAGE_SUFFIXES + BIOIO_SUFFIXES
_SUPPORTED = SUPPORTED


def _read_pil(path: Path, palette_as_indices: bool = False) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit (~89 Mpx); our limit is checked on the header below.
            # Far beyond it (> 2x Pillow's limit) Pillow raises DecompressionBombError in open().
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                check_size(path, height, width)
                n_frames = getattr(im, "n_frames", 1)
                if n_frames > 1:
                    raise InputError(path, f"image has {n_frames} frames; {_SUPPORTED}")
                if im.mode == "P" and palette_as_indices:
                    pass  # label images: the palette index is the label
                elif im.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "1"):
                    im = im.convert("RGBA" if im.mode in ("P", "PA", "LA") else "RGB")
                array = np.asarray(im)
    except InputError:
        raise
    except Image.DecompressionBombError as err:
        raise bomb_error(path, err) from err
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - the reader boundary: codecs raise any type
        raise decode_error(path, err) from err
    if array.dtype.kind in "ui" and array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))  # e.g. Pillow's big-endian "I;16B"
    if array.dtype == np.int32:  # Pillow's mode "I" (16-bit PNGs may come this way)
        if array.min() < 0 or array.max() > 65535:
            raise InputError(path, "32-bit integer image; " + _SUPPORTED)
        array = array.astype(np.uint16)
    return array


def read_decoded(path: str | Path, palette_as_indices: bool = False) -> RawImage:
    """Decode an image file with its layout and metadata (no scaling, no channel choice).

    Args:
        path: PNG, JPEG or TIFF file.
        palette_as_indices: Return a palette ("P" mode) image's indices instead of its colours
            (used for label images).

    Raises:
        InputError: missing, corrupt, too large or unsupported file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a regular file")
    suffix = path.suffix.lower()
    if suffix not in PREDICT_SUFFIXES:
        raise InputError(
            path, f"unsupported file type {suffix!r}; expected one of {PREDICT_SUFFIXES}"
        )
    if suffix in _TIFF:
        return read_tiff(path)
    if suffix in BIOIO_SUFFIXES:
        return read_bioio(path)
    array = _read_pil(path, palette_as_indices)
    kind = "grey" if array.ndim == 2 else "colour"
    return RawImage(array, kind, "YX" if array.ndim == 2 else "YXS")


def read_raw(path: str | Path, palette_as_indices: bool = False) -> np.ndarray:
    """Decode an image file into its native array (no scaling, no channel changes).

    Args:
        path: PNG, JPEG or TIFF file.
        palette_as_indices: Return a palette ("P" mode) image's indices instead of its colours
            (used for label images).

    Returns:
        (H, W) or (H, W, C) array in the file's dtype.

    Raises:
        InputError: missing, corrupt, too large or unsupported file, or a multichannel image
            (which needs a channel choice: :func:`load_image`).
    """
    raw = read_decoded(path, palette_as_indices)
    if raw.kind == "channels":
        raise MultichannelError(path, multichannel_message(raw), raw.n_channels)
    return raw.array


def to_rgb_float(
    array: np.ndarray, path: str | Path = "<array>", any_float_range: bool = False
) -> np.ndarray:
    """Convert a decoded image to (H, W, 3) float32 in [0, 1].

    Args:
        array: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array; uint8, uint16, bool or float.
        path: Name used in error messages.
        any_float_range: Accept float images outside [0, 1] unchanged (for in-memory arrays
            that are percentile-normalised afterwards anyway).

    Returns:
        A new (H, W, 3) float32 array (in [0, 1] unless ``any_float_range``).

    Raises:
        InputError: unsupported dtype or shape, empty image, NaN/inf values, float values
            outside [0, 1].
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    elif not (a.ndim == 3 and a.shape[2] == 3):
        raise InputError(path, f"image has shape {a.shape}; {_SUPPORTED}")
    if a.size == 0:
        raise InputError(path, f"empty image of shape {np.shape(array)}")
    if a.dtype == np.uint8:
        out = a.astype(np.float32) / np.float32(255)
    elif a.dtype == np.uint16:
        out = a.astype(np.float32) / np.float32(65535)
    elif a.dtype == np.bool_:
        out = a.astype(np.float32)
    elif a.dtype.kind == "f":
        out = a.astype(np.float32)
        if not np.isfinite(out).all():
            raise InputError(path, "image contains NaN or infinite values")
        if not any_float_range and (out.min() < 0 or out.max() > 1):
            raise InputError(
                path,
                f"float image values span [{out.min():g}, {out.max():g}]; float images must be "
                "scaled to [0, 1] (or save as 8/16-bit integers)",
            )
    else:
        raise InputError(path, f"unsupported dtype {a.dtype}; {_SUPPORTED}")
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class LoadedImage:
    """An image read for segmentation, with what the outputs need from its file.

    Attributes:
        image: (H, W, 3) float32 in [0, 1] (what :func:`read_image` returns).
        intensity: (H, W, K) planes in the file's units whose mean / max intensity the nucleus
            table reports (see :func:`~bayescellseg.io.channels.intensity_planes`).
        intensity_names: The K plane names (``""`` for a single plane).
        pixel_size: From the file's metadata, if any.
        axes: The file's axes (``YX``, ``YXS``, ``CYX``, ...).
        n_channels: Channels in the file (1 for grey, 3 or 4 for colour).
        channels: The channel indices used, or None when no choice was made.
        source: The file.
    """

    image: np.ndarray
    intensity: np.ndarray
    intensity_names: tuple[str, ...]
    pixel_size: PixelSize | None
    axes: str
    n_channels: int
    channels: tuple[int, ...] | None
    source: Path


def load_image(
    path: str | Path, *, channel: int | None = None, channels: Sequence[int] | None = None
) -> LoadedImage:
    """Read an image for segmentation, with its pixel size and intensity planes.

    Args:
        path: PNG, JPEG or TIFF file (2D; grey, RGB, RGBA or multichannel).
        channel: The channel holding the nuclei (0-based); needed for multichannel files.
        channels: Several nuclear channels to combine (percentile-rescaled, per-pixel maximum).

    Raises:
        InputError: naming the file and the problem (a multichannel file without a choice: its
            channel count).
    """
    path = Path(path)
    raw = read_decoded(path)
    selected, chosen = select_channels(raw, path, channel, channels)
    planes, names = intensity_planes(raw, selected, chosen)
    return LoadedImage(
        image=to_rgb_float(selected, path),
        intensity=planes,
        intensity_names=names,
        pixel_size=raw.pixel_size,
        axes=raw.axes,
        n_channels=raw.n_channels,
        channels=chosen,
        source=path,
    )


def read_image(
    path: str | Path, *, channel: int | None = None, channels: Sequence[int] | None = None
) -> np.ndarray:
    """Read an image for segmentation.

    Args:
        path: PNG, JPEG or TIFF file (2D; grey, RGB or RGBA; 8/16-bit or float in [0, 1]; a
            multichannel TIFF with ``channel`` or ``channels``).
        channel: The channel holding the nuclei (0-based).
        channels: Several nuclear channels to combine.

    Returns:
        (H, W, 3) float32 array in [0, 1].

    Raises:
        InputError: naming the file and the problem.
    """
    if channel is None and channels is None:
        return to_rgb_float(read_raw(path), path)
    return load_image(path, channel=channel, channels=channels).image


def read_label_image(path: str | Path) -> np.ndarray:
    """Read an instance label image (0 = background).

    Args:
        path: PNG or TIFF file with integer labels (8, 16 or 32-bit). A palette PNG gives its
            palette indices. An RGB(A) file is accepted only when its colour channels are
            identical.

    Returns:
        (H, W) uint32 array.

    Raises:
        InputError: unsupported dtype or shape, negative or non-integer values.
    """
    path = Path(path)
    try:
        a = read_raw(path, palette_as_indices=True)
    except MultichannelError as err:
        raise InputError(
            path,
            f"label image has {err.n_channels} channels or planes; expected one 2-D image with "
            "an integer label per pixel",
        ) from None
    if a.ndim == 3:
        rgb = a[..., :3]
        if not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        ):
            raise InputError(
                path,
                "label image has colour channels that differ; expected one integer label per pixel",
            )
        a = rgb[..., 0]
    if a.ndim != 2:
        raise InputError(path, f"label image has shape {a.shape}; expected a 2D label image")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or not np.array_equal(a, np.round(a)):
            raise InputError(path, "label image has non-integer (or NaN) values")
    elif a.dtype.kind not in "uib":
        raise InputError(path, f"label image has unsupported dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise InputError(path, "label image has negative values")
    if a.size and a.max() > np.iinfo(np.uint32).max:
        raise InputError(path, "label image has values beyond uint32")
    return a.astype(np.uint32)


def write_tiff(path: str | Path, array: np.ndarray, overwrite: bool = False) -> None:
    """Write ``array`` as a zlib-compressed TIFF (level 1), atomically.

    Level 1 instead of zlib's default 6: on 2048x2048 float32 maps it writes about 1.5x faster
    and the files are 2 % larger (float maps barely compress at any level;
    ``benchmarks/bench_predict.py --bundled``).
    """
    with atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(tmp, np.asarray(array), compression="zlib", compressionargs={"level": 1})


def write_png(path: str | Path, array: np.ndarray, overwrite: bool = False) -> None:
    """Write a uint8 (H, W) or (H, W, 3|4) array as PNG, atomically."""
    a = np.asarray(array)
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png expects uint8 or uint16, got {a.dtype}")
    with atomic_path(path, overwrite) as tmp:
        Image.fromarray(a).save(tmp, format="PNG")
