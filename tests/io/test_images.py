"""Single-image reading and writing: formats, bit depths, and every bad-input case."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bayescellseg.errors import InputError
from bayescellseg.io.images import (
    MAX_PIXELS,
    read_image,
    read_label_image,
    to_rgb_float,
    write_png,
    write_tiff,
)
from tests.io.build import png_header_only

GREY = np.array([[0, 51, 255], [102, 204, 17]], np.uint8)


def test_grey_png_is_replicated_and_scaled(tmp_path: Path) -> None:
    Image.fromarray(GREY).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (2, 3, 3) and out.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(out[..., c], GREY / 255.0, atol=1e-7)
    assert out[0, 1, 0] == pytest.approx(0.2)


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 255, 51, 0, 7
    Image.fromarray(rgba).save(tmp_path / "c.png")
    out = read_image(tmp_path / "c.png")
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[0, 0], [1.0, 0.2, 0.0], atol=1e-7)


def test_16bit_png_and_tiff_scale_by_65535(tmp_path: Path) -> None:
    a = np.array([[0, 65535], [13107, 1000]], np.uint16)
    Image.fromarray(a).save(tmp_path / "a.png")
    write_tiff(tmp_path / "a.tif", a)
    for name in ("a.png", "a.tif"):
        out = read_image(tmp_path / name)
        np.testing.assert_allclose(out[..., 1], a / 65535.0, atol=1e-7)


def test_float_tiff_in_unit_range_is_kept(tmp_path: Path) -> None:
    a = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    tifffile.imwrite(tmp_path / "f.tif", a)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[..., 2], a)


def test_rgb_tiff_and_jpeg(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    tifffile.imwrite(tmp_path / "c.tiff", rgb, photometric="rgb")
    np.testing.assert_allclose(read_image(tmp_path / "c.tiff")[..., 0], 200 / 255, atol=1e-7)
    Image.fromarray(rgb).save(tmp_path / "c.JPG", quality=95)
    out = read_image(tmp_path / "c.JPG")
    assert out.shape == (8, 8, 3)
    assert abs(out[..., 0].mean() - 200 / 255) < 0.03 and out[..., 2].mean() < 0.05


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((5, 16, 16), r"TIFF has 5 planes \(axes 'QYX'\) .* z-stack .* channel=N \(0-based, 0-4\)"),
        ((16, 16, 5), r"TIFF has 16 planes .* 0-15"),
        ((2, 3, 16, 16), r"TIFF has shape \(2, 3, 16, 16\) .* not supported; supported: 2D grey"),
    ],
)
def test_unnamed_stacks_need_a_channel_choice_and_4d_is_refused(
    tmp_path: Path, shape: tuple[int, ...], expected: str
) -> None:
    tifffile.imwrite(tmp_path / "s.tif", np.zeros(shape, np.uint8), photometric="minisblack")
    with pytest.raises(InputError, match=expected) as err:
        read_image(tmp_path / "s.tif")
    assert str(err.value).startswith(str(tmp_path / "s.tif"))


def test_imagej_z_stack_is_refused_even_with_a_channel(tmp_path: Path) -> None:
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, np.zeros((4, 8, 8), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(
        InputError,
        match=r"z\.tif: TIFF has shape \(4, 8, 8\) \(axes 'ZYX'\): "
        r"z-stacks and time series are not supported",
    ):
        read_image(path, channel=0)


def test_multipage_png_like_animation_is_refused(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="2 frames"):
        read_image(tmp_path / "anim.png")


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (b"not an image at all", ".png", "cannot decode image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", ".png", "cannot decode image"),
        (b"II*\x00garbage", ".tif", "cannot decode TIFF"),
        (b"BM", ".bmp", "unsupported file type '.bmp'"),
    ],
)
def test_corrupt_and_unsupported_files(
    tmp_path: Path, content: bytes, suffix: str, message: str
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        read_image(path)
    assert err.value.path == str(path)


def test_truncated_png_is_an_input_error(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        tmp_path / "t.png"
    )
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="t.png: cannot decode"):
        read_image(tmp_path / "t.png")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.png: file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="not a regular file"):
        read_image(tmp_path)


def test_singleton_axes_are_dropped_but_a_one_row_image_stays_2d(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "row.tif", np.array([[0, 65535, 0]], np.uint16))
    assert read_image(tmp_path / "row.tif").shape == (1, 3, 3)
    tifffile.imwrite(
        tmp_path / "tz.tif", np.full((1, 1, 4, 5), 255, np.uint8), photometric="minisblack"
    )
    out = read_image(tmp_path / "tz.tif")
    assert out.shape == (4, 5, 3) and out.min() == 1.0


def test_planar_rgb_tiff_is_read_as_rgb(tmp_path: Path) -> None:
    planes = np.zeros((3, 4, 5), np.uint8)
    planes[0], planes[2] = 255, 51
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    out = read_image(tmp_path / "planar.tif")
    assert out.shape == (4, 5, 3)
    np.testing.assert_allclose(out[0, 0], [1.0, 0.0, 0.2], atol=1e-7)


def test_nan_out_of_range_and_unsupported_dtypes(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "nan.tif", np.array([[0.0, np.nan], [0.5, 0.5]], np.float32))
    with pytest.raises(InputError, match="NaN"):
        read_image(tmp_path / "nan.tif")
    tifffile.imwrite(tmp_path / "big.tif", np.array([[0.0, 3.5], [0.5, 0.5]], np.float32))
    with pytest.raises(InputError, match=r"span \[0, 3.5\].*\[0, 1\]"):
        read_image(tmp_path / "big.tif")
    tifffile.imwrite(tmp_path / "i32.tif", np.array([[0, 7], [1, 1]], np.int32))
    with pytest.raises(InputError, match="unsupported dtype int32"):
        read_image(tmp_path / "i32.tif")
    with pytest.raises(InputError, match=r"shape \(2, 2, 2\)"):
        to_rgb_float(np.zeros((2, 2, 2), np.uint8), "x")


def test_png_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(50_000, 50_000))
    assert path.stat().st_size < 100
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as err:
            read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000  # decoding would need 2.5 GB
    text = str(err.value)
    assert (
        text.startswith(str(path)) and "2,500,000,000 pixels" in text and f"{MAX_PIXELS:,}" in text
    )


def test_png_just_over_our_limit_names_the_declared_size(tmp_path: Path) -> None:
    # 100.01 Mpx: above MAX_PIXELS but below Pillow's own hard limit, so our header check refuses it.
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(10_001, 10_000))
    with pytest.raises(
        InputError, match=r"declared image size 10001x10000 .*exceeds the limit of 100,000,000"
    ):
        read_image(path)


def test_tiff_decompression_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(50_000)
        tif.pages[0].tags["ImageLength"].overwrite(50_000)
    with pytest.raises(
        InputError, match=r"bomb.tif: declared image size 50000x50000 .*100,000,000"
    ):
        read_image(path)


# ----------------------------------------------------------------------------- label images


def test_label_images_8_16_32_bit(tmp_path: Path) -> None:
    lab = np.array([[0, 1, 1], [2, 0, 300]], np.uint16)
    Image.fromarray(lab).save(tmp_path / "l16.png")
    write_tiff(tmp_path / "l32.tif", lab.astype(np.uint32) * 70_000)
    Image.fromarray((lab % 256).astype(np.uint8)).save(tmp_path / "l8.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "l16.png"), lab)
    np.testing.assert_array_equal(
        read_label_image(tmp_path / "l32.tif"), lab.astype(np.uint32) * 70_000
    )
    out = read_label_image(tmp_path / "l8.png")
    assert out.dtype == np.uint32 and out[1, 2] == 300 % 256


def test_palette_label_png_gives_indices(tmp_path: Path) -> None:
    lab = np.array([[0, 1], [2, 3]], np.uint8)
    im = Image.fromarray(lab, mode="L").convert("P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    im.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(read_label_image(tmp_path / "p.png"), lab)


def test_label_rgb_with_equal_channels_is_accepted_differing_refused(tmp_path: Path) -> None:
    lab = np.array([[0, 5], [9, 5]], np.uint8)
    Image.fromarray(np.dstack([lab, lab, lab])).save(tmp_path / "same.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "same.png"), lab)
    Image.fromarray(np.dstack([lab, lab, lab + 1])).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match="colour.png: label image has colour channels that differ"):
        read_label_image(tmp_path / "colour.png")


def test_bad_label_values(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "frac.tif", np.array([[0, 1.5]], np.float32))
    with pytest.raises(InputError, match="non-integer"):
        read_label_image(tmp_path / "frac.tif")
    tifffile.imwrite(tmp_path / "neg.tif", np.array([[0, -2]], np.int16))
    with pytest.raises(InputError, match="neg.tif: label image has negative values"):
        read_label_image(tmp_path / "neg.tif")
    tifffile.imwrite(tmp_path / "ok.tif", np.array([[0, 2.0]], np.float32))
    np.testing.assert_array_equal(read_label_image(tmp_path / "ok.tif"), [[0, 2]])
    tifffile.imwrite(
        tmp_path / "stack.tif", np.zeros((3, 4, 4), np.uint16), photometric="minisblack"
    )
    with pytest.raises(InputError, match="stack.tif: label image has 3 channels or planes; "):
        read_label_image(tmp_path / "stack.tif")


# ----------------------------------------------------------------------------- writing


def test_write_round_trips_and_refuses_existing(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    write_tiff(tmp_path / "a.tif", a)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), a)
    with pytest.raises(FileExistsError):
        write_tiff(tmp_path / "a.tif", a)
    write_tiff(tmp_path / "a.tif", a + 1, overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), a + 1)
    rgb = np.random.default_rng(0).integers(0, 255, (5, 6, 3), np.uint8)
    write_png(tmp_path / "c.png", rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png")), rgb)
    with pytest.raises(FileExistsError):
        write_png(tmp_path / "c.png", rgb)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        write_png(tmp_path / "f.png", rgb.astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "c.png"]  # no temp files left
