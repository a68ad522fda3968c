"""Issue 20: bad files become the project's errors at the reader boundary (cases 1, 9, 10),
and a fuzz test of the image, label, RLE and model-config readers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayescellseg.errors import BayesCellSegError, InputError
from bayescellseg.io.images import read_image, read_label_image
from bayescellseg.io.rle import read_rle_csv, rle_decode
from bayescellseg.model.store import read_model_config

READERS = [read_image, read_label_image]


def _zlib_tiff(path: Path) -> bytes:
    data = (np.random.default_rng(0).random((64, 64)) * 65535).astype(np.uint16)
    tifffile.imwrite(path, data, compression="zlib")
    return path.read_bytes()


@pytest.mark.parametrize("reader", READERS)
def test_case1_tiff_header_only(tmp_path: Path, reader) -> None:
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00")  # printf 'II*\x00' > bad.tif: struct.error before the fix
    with pytest.raises(InputError, match=r"bad\.tif: cannot decode TIFF"):
        reader(path)


@pytest.mark.parametrize("reader", READERS)
def test_case1_zlib_tiff_cut_in_half(tmp_path: Path, reader) -> None:
    full = _zlib_tiff(tmp_path / "full.tif")
    path = tmp_path / "half.tif"
    path.write_bytes(full[: len(full) // 2])  # zlib.error before the fix
    with pytest.raises(InputError, match=r"half\.tif: cannot decode TIFF .*truncated"):
        reader(path)


@pytest.mark.parametrize("reader", READERS)
def test_case1_image_width_zero(tmp_path: Path, reader) -> None:
    path = tmp_path / "w0.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].tags["ImageWidth"].valueoffset
    data[offset : offset + 2] = struct.pack("<H", 0)  # ZeroDivisionError before the fix
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"w0\.tif: image has zero size \(0x8\)"):
        reader(path)


@pytest.mark.parametrize(
    ("photometric", "extrasamples"),
    [("minisblack", ["unspecified"] * 3), ("rgb", ["unspecified"])],
)
def test_case10_four_channels_without_alpha_need_a_channel_choice(
    tmp_path: Path, photometric: str, extrasamples: list[str]
) -> None:
    path = tmp_path / "c4.tif"
    data = np.arange(8 * 8 * 4, dtype=np.uint8).reshape(8, 8, 4)
    tifffile.imwrite(path, data, photometric=photometric, extrasamples=extrasamples)
    with pytest.raises(InputError, match=r"c4\.tif: image has 4 channels \(axes 'YXS'\); .*0-3"):
        read_image(path)
    np.testing.assert_allclose(read_image(path, channel=3)[..., 0], data[..., 3] / 255.0)


def test_case10_rgba_tiff_with_marked_alpha_is_read(tmp_path: Path) -> None:
    path = tmp_path / "rgba.tif"
    data = np.zeros((8, 8, 4), np.uint8)
    data[..., 0], data[..., 3] = 255, 7
    tifffile.imwrite(path, data, photometric="rgb", extrasamples=["unassalpha"])
    image = read_image(path)
    assert image.shape == (8, 8, 3) and float(image[..., 0].min()) == 1.0


@pytest.mark.parametrize("token", ["\u00b2", "\u0663", "1\u00b9"])
def test_case9_rle_non_ascii_digits(token: str) -> None:
    # str.isdigit() accepts these, int() does not (or reads another number): ValueError before
    with pytest.raises(InputError, match="is not a non-negative integer"):
        rle_decode(f"1 {token}", (4, 4), "sol.csv, line 2")


def test_case9_rle_csv_non_ascii_height(tmp_path: Path) -> None:
    path = tmp_path / "sol.csv"
    path.write_text("ImageId,EncodedPixels,Height,Width\na,1 2,\u00b2,4\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2: Height '\u00b2' is not a positive integer"):
        read_rle_csv(path)


def test_case9_deeply_nested_model_config(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)  # RecursionError before
    with pytest.raises(InputError, match=r"config\.json: JSON is nested too deeply"):
        read_model_config(folder)


# --- fuzz: the readers raise nothing but the project's own errors --------------------------

_FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _valid_tiff_bytes(tmp_path: Path) -> bytes:
    return _zlib_tiff(tmp_path / "seed.tif")


@st.composite
def _mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed[: draw(st.integers(0, len(seed)))])
    for _ in range(draw(st.integers(0, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def test_fuzz_image_and_label_readers(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "seed.png")
    seeds = {".tif": _valid_tiff_bytes(tmp_path), ".png": (tmp_path / "seed.png").read_bytes()}

    @_FUZZ
    @given(suffix=st.sampled_from(sorted(seeds)), data=st.data())
    def check(suffix: str, data) -> None:
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(data.draw(_mutated(seeds[suffix])))
        for reader in READERS:
            try:
                reader(path)
            except BayesCellSegError:
                pass

    check()


def test_fuzz_rle_reader(tmp_path: Path) -> None:
    alphabet = st.sampled_from(list('0123456789 ,\n"\u00b2\u0663-x\x00ImageIdEncodedPixelsHW'))

    @_FUZZ
    @given(text=st.text(alphabet, max_size=200), rle=st.text(alphabet, max_size=40))
    def check(text: str, rle: str) -> None:
        path = tmp_path / "fuzz.csv"
        path.write_text("ImageId,EncodedPixels,Height,Width\n" + text, encoding="utf-8")
        for call in (lambda: read_rle_csv(path), lambda: rle_decode(rle, (5, 7))):
            try:
                call()
            except BayesCellSegError:
                pass

    check()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_MODEL_KEYS = ["base_channels", "depth", "method", "dropout_rate", "dropout_placement",
               "dropout_last_k", "n_members", "n_samples", "norm", "prior_sigma"]  # fmt: skip


def test_fuzz_model_config_loader(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()

    @_FUZZ
    @given(model=st.dictionaries(st.sampled_from(_MODEL_KEYS), _JSON), raw=st.booleans(),
           noise=st.binary(max_size=40))  # fmt: skip
    def check(model: dict, raw: bool, noise: bytes) -> None:
        doc = {"format_version": 1, "model": model}
        text = json.dumps(doc).encode() if not raw else json.dumps(doc).encode()[:30] + noise
        (folder / "config.json").write_bytes(text)
        try:
            read_model_config(folder)
        except BayesCellSegError:
            pass

    check()
