"""CZI / ND2 / LIF through bioio (the optional formats extra)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from bayescellseg.errors import InputError
from bayescellseg.io.bioformats import read_bioio
from bayescellseg.io.channels import select_channels
from bayescellseg.io.images import read_image


def test_missing_extra_is_named_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.import_module

    def no_bioio(name: str, *args, **kwargs):
        if name == "bioio":
            raise ImportError("No module named 'bioio'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_bioio)
    path = tmp_path / "scan.czi"
    path.write_bytes(b"ZISRAWFILE")
    with pytest.raises(InputError) as err:
        read_image(path, channel=0)
    assert str(err.value) == (
        f"{path}: reading .czi files needs the optional bioio readers: "
        "pip install 'bayescellseg[formats]'"
    )


def _ome(path: Path, data: np.ndarray, axes: str) -> Path:
    metadata = {"axes": axes, "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3}
    tifffile.imwrite(path, data, ome=True, metadata=metadata)
    return path


def test_bioio_multichannel_plane_with_pixel_size(tmp_path: Path) -> None:
    pytest.importorskip("bioio", reason="bioio is not installed (the optional formats extra)")
    pytest.importorskip("bioio_ome_tiff", reason="bioio-ome-tiff is not installed")
    data = np.arange(2 * 8 * 9, dtype=np.uint16).reshape(2, 8, 9)
    raw = read_bioio(_ome(tmp_path / "two.ome.tif", data, "CYX"))
    assert raw.kind == "channels" and raw.n_channels == 2
    assert raw.pixel_size is not None and raw.pixel_size.x == pytest.approx(0.3)
    plane, chosen = select_channels(raw, "two.ome.tif", channel=1)
    np.testing.assert_array_equal(plane, data[1])
    assert chosen == (1,)


def test_bioio_z_stack_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("bioio", reason="bioio is not installed (the optional formats extra)")
    pytest.importorskip("bioio_ome_tiff", reason="bioio-ome-tiff is not installed")
    path = _ome(tmp_path / "z.ome.tif", np.zeros((3, 8, 9), np.uint8), "ZYX")
    with pytest.raises(InputError, match=r"z\.ome\.tif: file has 3 z-slices and 1 time points"):
        read_bioio(path)
