"""Tiny datasets written to a temporary folder for the io tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_dsb_sample(
    root: Path, sample_id: str, labels: np.ndarray, image: np.ndarray | None = None
) -> Path:
    """Write ``<root>/<id>/images/<id>.png`` (RGBA) and one mask PNG per label value."""
    folder = root / sample_id
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    if image is None:
        grey = np.where(labels > 0, 200, 20).astype(np.uint8)
        image = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    Image.fromarray(image).save(folder / "images" / f"{sample_id}.png")
    for value in np.unique(labels[labels > 0]):
        mask = np.where(labels == value, 255, 0).astype(np.uint8)
        Image.fromarray(mask).save(folder / "masks" / f"m{int(value):03d}.png")
    return folder


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR chunk claiming ``width`` x ``height`` (8-bit grey), then a tiny IDAT
    and IEND. Decoding it would need width*height bytes; reading the header needs nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )
