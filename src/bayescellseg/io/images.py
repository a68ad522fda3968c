"""Reading and writing single images and label images (PNG, JPEG, TIFF).

Supported for prediction: 2D images, 8- or 16-bit (float32 TIFF in [0, 1] too), grey, RGB or
RGBA. Everything is returned as (H, W, 3) float32 scaled to [0, 1] by the dtype's range:
grey is replicated to three channels and alpha is dropped. Z-stacks, time series and
multichannel TIFFs (more than 4 channels, or several pages) are refused with an error that says
what is supported, and so is a 4-channel TIFF whose header does not mark the 4th channel as
alpha (which channels hold the image would be a guess). Any decoder failure (truncated or
corrupt data, impossible header values) becomes an :class:`~bayescellseg.errors.InputError`
naming the file. Images whose declared size exceeds :data:`MAX_PIXELS` are refused before
they are decoded (decompression-bomb protection).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from bayescellseg.errors import InputError
from bayescellseg.io.atomic import atomic_path

MAX_PIXELS = 100_000_000
"""Largest image (height x width) accepted; anything larger is treated as a decompression bomb."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
LABEL_SUFFIXES = (".png", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")
_SUPPORTED = "supported: 2D grey, RGB or RGBA images, 8- or 16-bit (PNG, JPEG, TIFF)"


def _check_size(path: Path, height: int, width: int) -> None:
    if height * width > MAX_PIXELS:
        raise InputError(
            path,
            f"declared image size {width}x{height} ({height * width:,} pixels) exceeds the limit of "
            f"{MAX_PIXELS:,} pixels; refusing to decode it (possible decompression bomb)",
        )
    if height == 0 or width == 0:
        raise InputError(path, f"image has zero size ({width}x{height})")


def _bomb_error(path: Path, err: Exception) -> InputError:
    """Our own message for Pillow's decompression-bomb refusal (raised before we see the size)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    declared = f"{int(found.group(1)):,} pixels" if found else "unknown size"
    return InputError(
        path,
        f"declared image size ({declared}) exceeds the limit of {MAX_PIXELS:,} pixels; "
        "refusing to decode it (possible decompression bomb)",
    )


def _decode_error(path: Path, err: Exception, what: str = "image") -> InputError:
    """The project's error for a decoder failure (any exception type a codec may raise)."""
    detail = str(err) or type(err).__name__
    return InputError(
        path, f"cannot decode {what} (corrupt, truncated or unsupported file): {detail}"
    )


def _read_pil(path: Path, palette_as_indices: bool = False) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit (~89 Mpx); our limit is checked on the header below.
            # Far beyond it (> 2x Pillow's limit) Pillow raises DecompressionBombError in open().
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                _check_size(path, height, width)
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
        raise _bomb_error(path, err) from err
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - the reader boundary: codecs raise any type
        raise _decode_error(path, err) from err
    if array.dtype.kind in "ui" and array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))  # e.g. Pillow's big-endian "I;16B"
    if array.dtype == np.int32:  # Pillow's mode "I" (16-bit PNGs may come this way)
        if array.min() < 0 or array.max() > 65535:
            raise InputError(path, "32-bit integer image; " + _SUPPORTED)
        array = array.astype(np.uint16)
    return array


_ALPHA = (1, 2)  # TIFF ExtraSamples: associated, unassociated alpha


def _check_four_channels(path: Path, page: tifffile.TiffPage) -> None:
    """Refuse a 4-channel TIFF unless it is RGB plus a channel marked as alpha."""
    extras = tuple(int(e) for e in (page.extrasamples or ()))
    is_rgba = int(page.photometric) == 2 and extras[-1:] and extras[-1] in _ALPHA
    if not is_rgba:
        raise InputError(
            path,
            "TIFF has 4 channels and its header does not mark the 4th as alpha "
            f"(photometric {int(page.photometric)}, ExtraSamples {list(extras)}), so which "
            "channels hold the image is ambiguous; save it as RGB, RGBA (alpha marked) or a "
            "single channel",
        )


def _tiff_plane(path: Path, tif: tifffile.TiffFile) -> tuple[tuple[int, ...], bool]:
    """The 2D(+colour) shape of the first series and whether its colour is in planes."""
    if not tif.pages:
        raise InputError(
            path, "cannot decode TIFF (corrupt, truncated or unsupported file): no image pages"
        )
    first = tif.pages[0]
    _check_size(path, int(first.imagelength), int(first.imagewidth))  # before tifffile divides
    series = tif.series[0]
    shape = tuple(int(s) for s in series.shape)
    plane, axes = shape, str(series.axes)
    while len(plane) > 2 and plane[0] == 1:  # leading singleton axes (e.g. T=1, Z=1)
        plane, axes = plane[1:], axes[1:]
    if len(plane) == 3 and plane[-1] == 1:
        plane, axes = plane[:2], axes[:2]
    planar = len(plane) == 3 and axes[0] == "S" and plane[0] in (3, 4)  # RGB in planes
    colour = len(plane) == 3 and axes[-1] == "S" and plane[-1] in (3, 4)
    if len(plane) == 2 or colour:
        _check_size(path, plane[0], plane[1])
    elif planar:
        _check_size(path, plane[1], plane[2])
    else:
        raise InputError(
            path,
            f"TIFF has shape {shape} (axes {series.axes!r}): z-stacks, time series and "
            f"multichannel images are not supported; {_SUPPORTED}. "
            "Save a single 2D plane (or an RGB image) instead.",
        )
    if (planar and plane[0] == 4) or (colour and plane[-1] == 4):
        _check_four_channels(path, series.keyframe)
    return plane, planar


def _read_tiff(path: Path) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tif:
            plane, planar = _tiff_plane(path, tif)
            array = tif.series[0].asarray()
        array = array.reshape(plane)  # keeps a 1-pixel-high image 2D (np.squeeze would not)
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - the reader boundary: tifffile raises any type
        # (struct.error, zlib.error, ZeroDivisionError, ValueError from reshape, ...)
        raise _decode_error(path, err, "TIFF") from err
    return np.moveaxis(array, 0, -1) if planar else array


def read_raw(path: str | Path, palette_as_indices: bool = False) -> np.ndarray:
    """Decode an image file into its native array (no scaling, no channel changes).

    Args:
        path: PNG, JPEG or TIFF file.
        palette_as_indices: Return a palette ("P" mode) image's indices instead of its colours
            (used for label images).

    Returns:
        (H, W) or (H, W, C) array in the file's dtype.

    Raises:
        InputError: missing, corrupt, too large or unsupported file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a regular file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(
            path, f"unsupported file type {suffix!r}; expected one of {IMAGE_SUFFIXES}"
        )
    return _read_tiff(path) if suffix in _TIFF else _read_pil(path, palette_as_indices)


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


def read_image(path: str | Path) -> np.ndarray:
    """Read an image for segmentation.

    Args:
        path: PNG, JPEG or TIFF file (2D; grey, RGB or RGBA; 8/16-bit or float in [0, 1]).

    Returns:
        (H, W, 3) float32 array in [0, 1].

    Raises:
        InputError: naming the file and the problem.
    """
    return to_rgb_float(read_raw(path), path)


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
    a = read_raw(path, palette_as_indices=True)
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
