"""Real microscopy TIFFs: compression, ImageJ / OME metadata, channel choice, pixel size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bayescellseg.errors import InputError
from bayescellseg.io.channels import channels_argument
from bayescellseg.io.images import load_image, read_image, read_label_image, read_raw
from bayescellseg.io.pixelsize import diameter_in_pixels, parse_length, pixel_size_argument

RAMP = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 97 % 65536).astype(np.uint16)


def _hyperstack(path: Path) -> np.ndarray:
    """A 3-channel ImageJ hyperstack (CYX), 0.5 um pixels, the nuclei in channel 2."""
    stack = np.stack([RAMP // 4, RAMP // 2, RAMP])
    tifffile.imwrite(
        path,
        stack,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "CYX", "unit": "um"},
        compression="lzw",
    )
    return stack


def test_lzw_16bit_imagej_tiff_gives_image_and_pixel_size(tmp_path: Path) -> None:
    path = tmp_path / "ctc.tif"
    tifffile.imwrite(
        path, RAMP, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "micron"},
        compression="lzw",
    )  # fmt: skip
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
    loaded = load_image(path)
    np.testing.assert_allclose(loaded.image[..., 1], RAMP / 65535.0, atol=1e-7)
    assert loaded.pixel_size is not None and loaded.pixel_size.source == "ImageJ"
    assert loaded.pixel_size.x == pytest.approx(0.65) and loaded.pixel_size.y == pytest.approx(0.65)
    assert loaded.intensity.dtype == np.uint16 and loaded.intensity.shape == (20, 30, 1)
    np.testing.assert_array_equal(loaded.intensity[..., 0], RAMP)
    assert loaded.intensity_names == ("",) and loaded.axes == "YX" and loaded.channels is None


@pytest.mark.parametrize("compression", ["zlib", "zstd", "lzma", "packbits", "jpeg"])
def test_compressed_tiffs_decode(tmp_path: Path, compression: str) -> None:
    grey = (RAMP >> 8).astype(np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", grey, compression=compression)
    out = read_image(tmp_path / "c.tif")
    tolerance = 3 / 255 if compression == "jpeg" else 1e-7  # JPEG is lossy
    np.testing.assert_allclose(out[..., 0], grey / 255.0, atol=tolerance)


def test_hyperstack_without_channel_is_refused_naming_the_count(tmp_path: Path) -> None:
    path = tmp_path / "cyx.tif"
    _hyperstack(path)
    with pytest.raises(InputError) as err:
        read_image(path)
    message = str(err.value)
    assert message.startswith(f"{path}: image has 3 channels (axes 'CYX')")
    assert "channel=N (0-based, 0-2)" in message and "channels=(N, M)" in message


def test_hyperstack_channel_2_is_the_nuclear_plane(tmp_path: Path) -> None:
    path = tmp_path / "cyx.tif"
    stack = _hyperstack(path)
    loaded = load_image(path, channel=2)
    np.testing.assert_allclose(loaded.image[..., 0], stack[2] / 65535.0, atol=1e-7)
    np.testing.assert_array_equal(loaded.intensity[..., 0], stack[2])
    assert loaded.n_channels == 3 and loaded.channels == (2,) and loaded.axes == "CYX"
    assert loaded.pixel_size is not None and loaded.pixel_size.x == pytest.approx(0.5)
    np.testing.assert_array_equal(read_image(path, channel=2), loaded.image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channel": 3}, r"channel 3 requested but the image has 3 channels \(indices 0-2\)"),
        ({"channels": [0, 0]}, r"channels needs distinct channel indices, got \[0, 0\]"),
        ({"channel": 0, "channels": [1]}, "give either channel or channels, not both"),
    ],
)
def test_bad_channel_choices_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = tmp_path / "cyx.tif"
    _hyperstack(path)
    with pytest.raises(InputError, match=rf"cyx\.tif: {message}"):
        load_image(path, **kwargs)


def test_channels_combine_by_maximum_of_percentile_rescaled_planes(tmp_path: Path) -> None:
    # two stains, each 0 except one nucleus (100 px of a 400-px image): rescaled between the
    # 1st and 99.8th percentiles every nucleus pixel becomes 1, so the maximum shows both
    a = np.zeros((2, 20, 20), np.uint16)
    a[0, 2:12, 2:12] = 500
    a[1, 8:18, 8:18] = 40000
    tifffile.imwrite(tmp_path / "two.tif", a, imagej=True, metadata={"axes": "CYX"})
    loaded = load_image(tmp_path / "two.tif", channels=(0, 1))
    expected = ((a[0] > 0) | (a[1] > 0)).astype(np.float32)
    np.testing.assert_array_equal(loaded.image[..., 0], expected)
    assert loaded.intensity_names == ("c0", "c1")
    np.testing.assert_array_equal(np.moveaxis(loaded.intensity, -1, 0), a)


def test_ome_tiff_pixel_size_in_nanometres(tmp_path: Path) -> None:
    path = tmp_path / "cells.ome.tif"
    stack = np.stack([RAMP, RAMP // 3])
    tifffile.imwrite(
        path, stack, ome=True,
        metadata={"axes": "CYX", "PhysicalSizeX": 325.0, "PhysicalSizeXUnit": "nm",
                  "PhysicalSizeY": 325.0, "PhysicalSizeYUnit": "nm"},
    )  # fmt: skip
    loaded = load_image(path, channel=1)
    assert loaded.pixel_size is not None and loaded.pixel_size.source == "OME"
    assert loaded.pixel_size.x == pytest.approx(0.325)
    np.testing.assert_array_equal(loaded.intensity[..., 0], stack[1])


def test_ome_tiff_without_y_size_has_square_pixels(tmp_path: Path) -> None:
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(path, RAMP, ome=True, metadata={"PhysicalSizeX": 0.4})
    size = load_image(path).pixel_size
    assert size is not None and (size.x, size.y) == (pytest.approx(0.4), pytest.approx(0.4))


def test_resolution_tags_count_in_centimetres_not_inches(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "cm.tif", RAMP, resolution=(40000.0, 40000.0), resolutionunit=3)
    tifffile.imwrite(tmp_path / "dpi.tif", RAMP, resolution=(300.0, 300.0), resolutionunit=2)
    cm = load_image(tmp_path / "cm.tif").pixel_size
    assert cm is not None and cm.x == pytest.approx(0.25) and cm.source == "TIFF resolution"
    assert load_image(tmp_path / "dpi.tif").pixel_size is None  # a scanner's 300 dpi


def test_imagej_tiff_in_pixels_or_implausible_size_has_no_pixel_size(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "px.tif", RAMP, imagej=True, resolution=(1.0, 1.0))
    tifffile.imwrite(
        tmp_path / "big.tif",
        RAMP,
        imagej=True,
        resolution=(0.001, 0.001),
        metadata={"unit": "um"},
    )  # fmt: skip: 1000 um per pixel
    assert load_image(tmp_path / "px.tif").pixel_size is None
    assert load_image(tmp_path / "big.tif").pixel_size is None


def test_rgb_png_channel_choice_and_intensity_planes(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 255
    Image.fromarray(rgb).save(tmp_path / "c.png")
    blue = load_image(tmp_path / "c.png", channel=2)
    np.testing.assert_allclose(blue.image, 1.0)
    assert blue.intensity_names == ("",) and int(blue.intensity.max()) == 255
    whole = load_image(tmp_path / "c.png")
    assert whole.intensity_names == ("red", "green", "blue") and whole.pixel_size is None
    grey_rgb = np.repeat(RAMP[..., None] >> 8, 3, axis=2).astype(np.uint8)
    Image.fromarray(grey_rgb).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").intensity_names == ("",)


def test_raw_and_label_readers_still_refuse_multichannel(tmp_path: Path) -> None:
    path = tmp_path / "cyx.tif"
    _hyperstack(path)
    for reader in (read_raw, read_label_image):
        with pytest.raises(InputError, match="image has 3 channels"):
            reader(path)


def test_length_parsing() -> None:
    assert parse_length("8um", "diameter") == (8.0, "um")
    assert parse_length(" 8 µm ", "diameter") == (8.0, "µm")
    assert parse_length("45px", "diameter") == (45.0, "px")
    assert parse_length(45, "diameter") == (45.0, None)
    assert pixel_size_argument("325nm") == pytest.approx(0.325)
    assert pixel_size_argument("0.65") == pytest.approx(0.65)
    assert diameter_in_pixels("8um", 0.5) == pytest.approx(16.0)
    assert diameter_in_pixels("0.008mm", 0.5) == pytest.approx(16.0)
    assert diameter_in_pixels("45", None) == 45.0 and diameter_in_pixels("auto", None) == "auto"
    assert diameter_in_pixels(None, 0.5) is None
    assert diameter_in_pixels("none", 0.5) is None and diameter_in_pixels(" Auto", None) == "auto"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: diameter_in_pixels("8um", None, "a.tif"), "a.tif: diameter='8um' is a length, "
         "but the image records no pixel size; give it with pixel_size=MICRONS"),
        (lambda: parse_length("8 furlongs", "diameter"), "diameter: unknown unit 'furlongs'"),
        (lambda: parse_length("-3", "diameter"), "diameter: expected a number"),
        (lambda: parse_length("0um", "diameter"), "diameter: must be a positive number"),
        (lambda: pixel_size_argument("3px"), "pixel_size: is a physical length"),
    ],
)  # fmt: skip
def test_length_errors(call, message: str) -> None:
    with pytest.raises(InputError) as err:
        call()
    assert str(err.value).startswith(message)


def test_channels_argument() -> None:
    assert channels_argument("0,2") == (0, 2) and channels_argument(" 3, 1 ,") == (3, 1)
    for bad, message in [("0", "two or more"), ("1,1", "distinct"), ("a,b", "like 0,2"),
                         ("-1,2", "like 0,2")]:  # fmt: skip
        with pytest.raises(InputError, match=f"^channels: .*{message}"):
            channels_argument(bad)
