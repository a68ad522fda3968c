"""Decoded images before any scaling, and the choice of the channel(s) that hold the nuclei.

A decoded file is a :class:`RawImage`: grey (H, W), colour (H, W, 3 | 4: RGB or RGB plus a
marked alpha), or ``channels`` (H, W, C), C >= 2 planes of a multichannel file (an ImageJ
hyperstack's C axis, an OME-TIFF's channels, extra samples that are not RGB(A), or unlabelled
pages). Channel indices are 0-based in the file's channel order, as ``channel_axis`` is in
scikit-image and napari.

* ``channel=N`` keeps plane N (of a colour image too: ``channel=2`` is the blue of an RGB file).
* ``channels=(N, M, ...)`` combines several nuclear stains: each plane is rescaled between its
  1st and 99.8th percentiles (the model's own normalisation) and the per-pixel maximum is kept, so
  a nucleus bright in either stain is bright in the result.
* Neither: grey and colour images are used as they are; a multichannel image is refused with a
  message that names its channel count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bayescellseg.errors import InputError, MultichannelError
from bayescellseg.io.pixelsize import PixelSize

Kind = Literal["grey", "colour", "channels"]
_PERCENTILES = (1.0, 99.8)


@dataclass(frozen=True)
class RawImage:
    """A decoded image in its file's dtype.

    Attributes:
        array: (H, W) grey, (H, W, 3 | 4) colour or (H, W, C) channels.
        kind: ``grey``, ``colour`` or ``channels``.
        axes: The file's axes as tifffile names them (``YX``, ``YXS``, ``CYX``, ...).
        pixel_size: From the file's metadata, if any.
    """

    array: np.ndarray
    kind: Kind
    axes: str = "YX"
    pixel_size: PixelSize | None = None

    @property
    def n_channels(self) -> int:
        """Planes of a multichannel or colour image (alpha included), 1 for grey."""
        return 1 if self.array.ndim == 2 else int(self.array.shape[2])


def choice_hint(n: int) -> str:
    """How to choose among ``n`` channels, for error messages."""
    return (
        f"choose the nuclear channel with channel=N (0-based, 0-{n - 1}), or "
        "combine several nuclear stains with channels=(N, M)"
    )


#: Training and ``data check`` read one grey or RGB image per sample: no channel choice there.
ONE_IMAGE_PER_SAMPLE = (
    "training and 'data check' read one grey or RGB image per sample; save the nuclear channel "
    "as an image of its own (in Fiji: Image > Color > Split Channels)"
)


def for_annotated_data(err: InputError) -> InputError:
    """``err`` as told when reading annotated data, where no channel can be chosen: a
    :class:`~bayescellseg.errors.MultichannelError` gets :data:`ONE_IMAGE_PER_SAMPLE` instead
    of a hint at ``channel=N``; any other error is returned unchanged."""
    if not isinstance(err, MultichannelError):
        return err
    return InputError(err.path, f"image has {err.n_channels} channels; {ONE_IMAGE_PER_SAMPLE}")


def multichannel_message(raw: RawImage) -> str:
    """The refusal of a multichannel image without a channel choice (names the channel count)."""
    n = raw.n_channels
    if any(a in raw.axes for a in "IQ"):
        return (
            f"TIFF has {n} planes (axes {raw.axes!r}) and no metadata saying whether they are "
            f"channels or a z-stack / time series (not supported); if they are channels, "
            f"{choice_hint(n)}"
        )
    return f"image has {n} channels (axes {raw.axes!r}); {choice_hint(n)}"


def channel_indices(
    path: str | Path, n: int, channel: int | None, channels: Sequence[int] | None
) -> tuple[int, ...] | None:
    """Validate a channel choice against an image with ``n`` channels.

    Returns:
        The chosen indices, or None when nothing was chosen.

    Raises:
        InputError: Both given, an empty or repeated list, or an index out of range (the
            message names the channel count).
    """
    if channel is not None and channels is not None:
        raise InputError(path, "give either channel or channels, not both")
    if channel is None and channels is None:
        return None
    chosen = (channel,) if channel is not None else tuple(channels or ())
    if not chosen or len(set(chosen)) != len(chosen):
        raise InputError(path, f"channels needs distinct channel indices, got {list(chosen)}")
    for index in chosen:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise InputError(path, f"channel index must be an integer, got {index!r}")
        if not 0 <= index < n:
            have = "1 channel (index 0)" if n == 1 else f"{n} channels (indices 0-{n - 1})"
            raise InputError(path, f"channel {index} requested but the image has {have}")
    return tuple(int(i) for i in chosen)


def channels_argument(text: str) -> tuple[int, ...]:
    """``--channels 0,2`` to ``(0, 2)``.

    Raises:
        InputError: Not a comma-separated list of at least two distinct integers >= 0.
    """
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise InputError("channels", f"expected 0-based channel indices like 0,2, got {text!r}")
    chosen = tuple(int(p) for p in parts)
    if len(chosen) < 2 or len(set(chosen)) != len(chosen):
        raise InputError(
            "channels",
            f"needs two or more distinct channels (use channel=N for one), got {text!r}",
        )
    return chosen


def _rescaled(plane: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(plane.astype(np.float64), _PERCENTILES)
    if hi <= lo:
        return np.zeros(plane.shape, np.float32)
    return np.clip((plane.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def select_channels(
    raw: RawImage,
    path: str | Path,
    channel: int | None = None,
    channels: Sequence[int] | None = None,
) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """The image to segment: the chosen plane(s), or the grey / colour image as it is.

    Args:
        raw: The decoded image.
        path: The file, for errors.
        channel: One plane to keep (0-based).
        channels: Several planes to combine (percentile-rescaled, per-pixel maximum).

    Returns:
        A new array, (H, W) in the file's dtype for one channel, (H, W) float32 in [0, 1] for
        combined channels, or the grey / colour array unchanged in content; and the indices used
        (None when no choice was made).

    Raises:
        InputError: A multichannel image without a choice (naming its channel count), or an
            invalid choice.
    """
    chosen = channel_indices(path, raw.n_channels, channel, channels)
    a = raw.array
    if chosen is None:
        if raw.kind == "channels":
            raise MultichannelError(path, multichannel_message(raw), raw.n_channels)
        return a.copy(), None
    if a.ndim == 2:
        return a.copy(), chosen
    if len(chosen) == 1:
        return np.ascontiguousarray(a[..., chosen[0]]), chosen
    combined = np.maximum.reduce([_rescaled(a[..., i]) for i in chosen])
    return combined.astype(np.float32), chosen


def intensity_planes(
    raw: RawImage, selected: np.ndarray, chosen: tuple[int, ...] | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The planes whose intensities the nucleus table measures, in the file's units.

    Grey or one chosen channel: that plane. Combined channels: each chosen plane. Colour without
    a choice: red, green and blue, or the one grey plane when the three are equal.

    Returns:
        (H, W, K) array (a new one) and the K plane names (``""`` for a single plane, else
        ``c<index>`` or ``red`` / ``green`` / ``blue``).
    """
    a = raw.array
    if chosen is not None and len(chosen) > 1:
        return np.stack([a[..., i] for i in chosen], axis=-1), tuple(f"c{i}" for i in chosen)
    if selected.ndim == 2:
        return selected[..., None].copy(), ("",)
    rgb = selected[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., :1].copy(), ("",)
    return rgb.copy(), ("red", "green", "blue")
